"""Django's ASGI handler, with each request's middleware and view run in one thread hop.

Every view here is synchronous (DRF, the admin, the pages) and so is every middleware's
work. Django's own ASGIHandler builds an asynchronous middleware chain instead: each
`MiddlewareMixin` hops to a thread for `process_request` and again for
`process_response`, and WhiteNoise (synchronous only) hops back to the event loop for the
rest of the chain — some twenty thread/loop switches a request, each waiting its turn on
an event loop that may be busy relaying media (the embedded media worker shares it). A
call set-up is five requests: under load those waits were most of its time
(docs/PERFORMANCE.md, set-up profile). Here the chain is built synchronous and run in a
single hop, as a WSGI server would run it; the request still gets its own thread
(Django's per-request thread-sensitive context), so requests run side by side as before.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase


class OneHopASGIHandler(ASGIHandler):
    """At most `threads` requests run their synchronous part at once; more wait here, on
    the event loop, for a turn. Python threads share one interpreter lock: a hundred
    request threads of a set-up burst each took the lock in turn, and the event loop —
    which relays every call's media and answers every socket — got one turn in a
    hundred (offers waited seconds for the media worker; media fell behind)."""

    def __init__(self, threads: int) -> None:
        super().__init__()
        self.threads = threads
        self._turns: dict[asyncio.AbstractEventLoop, Turns] = {}

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)  # a synchronous chain, whatever is asked

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        loop = asyncio.get_running_loop()
        turns = self._turns.get(loop)
        if turns is None:  # one per event loop (tests run one loop per test)
            self._turns = {old: t for old, t in self._turns.items() if not old.is_closed()}
            turns = self._turns[loop] = Turns(self.threads)
        await turns.take()
        held = _turn.set(turns)  # copied into the request's thread (and back)
        try:
            # get_response: URL conf, the chain, closing and error logging, in one thread.
            response: HttpResponseBase = await sync_to_async(
                self.get_response, thread_sensitive=True
            )(request)
        finally:
            _turn.reset(held)
            turns.give()
        return response


class Turns:
    """A counting semaphore whose turns, once given back by a request that waits on
    something else, are taken back without waiting: a request whose worker has answered
    finishes before new requests start (it may run over the count for a moment; the
    next turns given back repay that first)."""

    def __init__(self, count: int) -> None:
        self.free = count
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def take(self) -> None:
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.give()  # handed a turn as it was cancelled: pass it on
            else:
                self._waiting.remove(turn)
            raise

    def give(self) -> None:
        if self.free < 0:
            self.free += 1  # repays a turn taken back over the count
            return
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.free += 1

    def take_back(self) -> None:
        self.free -= 1


# The turn the current request holds (None outside one: sockets, background tasks).
_turn: ContextVar[Turns | None] = ContextVar("callbridge_http_turn", default=None)


@asynccontextmanager
async def turn_given_back() -> AsyncIterator[None]:
    """While a request waits on something else (a media worker's answer, a recording's
    render: calls/workers/link.py), its turn goes to a waiting request and is taken back
    after: a worker that does not answer must not hold every turn until it times out."""
    turns = _turn.get()
    if turns is None:
        yield
        return
    turns.give()
    try:
        yield
    finally:
        turns.take_back()


def get_one_hop_asgi_application() -> Any:
    """`django.core.asgi.get_asgi_application`, with the handler above."""
    django.setup(set_prefix=False)
    from django.conf import settings  # configured by django.setup

    return OneHopASGIHandler(threads=settings.CALLBRIDGE_HTTP_THREADS)
