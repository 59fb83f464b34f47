"""callbridge/http_handler.py: a request's Django part runs in one thread, at most
CALLBRIDGE_HTTP_THREADS at once, and a request waiting on something else gives its turn."""

from __future__ import annotations

import asyncio

from asgiref.sync import async_to_sync, sync_to_async

from callbridge import http_handler


async def test_a_request_waiting_elsewhere_gives_its_turn_back_meanwhile() -> None:
    turns = asyncio.Semaphore(1)
    await turns.acquire()  # the request's own turn, as get_response_async holds it
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
        async with asyncio.timeout(10):
            async with turns:  # another request gets a turn while this one waits
                pass
        proceed.set()
        await asyncio.wait_for(request, 10)
        assert turns.locked()  # taken back before its view went on
    finally:
        http_handler._turn.reset(held)
    turns.release()


async def test_outside_a_request_nothing_is_given_back() -> None:
    async with asyncio.timeout(10), http_handler.turn_given_back():
        pass  # a socket's or a background task's wait: no turn to give


def test_the_asgi_application_is_the_one_hop_handler_with_its_turns() -> None:
    from django.conf import settings

    from callbridge.asgi import django_asgi_app

    assert isinstance(django_asgi_app, http_handler.OneHopASGIHandler)
    assert django_asgi_app.threads == settings.CALLBRIDGE_HTTP_THREADS
