"""callbridge/http_handler.py: a request's Django part runs in one thread, at most
CALLBRIDGE_HTTP_THREADS at once, and a request waiting on something else gives its turn."""

from __future__ import annotations

import asyncio

from asgiref.sync import async_to_sync, sync_to_async

from callbridge import http_handler


async def test_a_request_waiting_elsewhere_gives_its_turn_back_meanwhile() -> None:
    turns = http_handler.Turns(1)
    await turns.take()  # the request's own turn, as get_response_async holds it
    held = http_handler._turn.set(turns)
    waiting, proceed = asyncio.Event(), asyncio.Event()

    async def wait_on_a_worker() -> None:
        async with http_handler.turn_given_back():
            waiting.set()
            await proceed.wait()

    def view() -> None:  # the request's thread, as a view calling link.request
        async_to_sync(wait_on_a_worker)()

    try:
        request = asyncio.ensure_future(sync_to_async(view, thread_sensitive=False)())
        await asyncio.wait_for(waiting.wait(), 10)
        await asyncio.wait_for(turns.take(), 10)  # another request gets a turn meanwhile
        queued = asyncio.ensure_future(turns.take())  # and a third waits for one
        proceed.set()
        await asyncio.wait_for(request, 10)  # taken back at once, ahead of the third
        assert turns.free == -1 and not queued.done()
        turns.give()  # the second request ends: repays the turn taken back over the count
        await asyncio.sleep(0)
        assert not queued.done() and turns.free == 0
        turns.give()  # the first ends: the third's turn
        await asyncio.wait_for(queued, 10)
        assert turns.free == 0
    finally:
        http_handler._turn.reset(held)


async def test_outside_a_request_nothing_is_given_back() -> None:
    async with asyncio.timeout(10), http_handler.turn_given_back():
        pass  # a socket's or a background task's wait: no turn to give


def test_the_asgi_application_is_the_one_hop_handler_with_its_turns() -> None:
    from django.conf import settings

    from callbridge.asgi import django_asgi_app

    assert isinstance(django_asgi_app, http_handler.OneHopASGIHandler)
    assert django_asgi_app.threads == settings.CALLBRIDGE_HTTP_THREADS


async def test_a_request_that_leaves_while_waiting_for_a_turn_takes_none() -> None:
    turns = http_handler.Turns(1)
    await turns.take()
    waiting = asyncio.ensure_future(turns.take())
    await asyncio.sleep(0)
    waiting.cancel()  # its client went away
    await asyncio.gather(waiting, return_exceptions=True)
    turns.give()
    assert turns.free == 1  # the turn was not handed to the request that left
    await asyncio.wait_for(turns.take(), 10)
