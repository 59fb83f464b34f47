"""Call events reach sockets even while the shared sync thread is busy with database work
(Channels 4 hops through it before every message a consumer handles)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from calls.models import ApiToken, Call, EndUserSession
from calls.principals import Principal
from tests.support.signal_client import SignalClient

pytestmark = [pytest.mark.django_db(transaction=True)]


def ring_the_operators() -> str:
    session, _ = EndUserSession.create(ttl_seconds=600, display_name="Ada")
    return str(
        Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded").pk
    )


async def test_it_delivers_events_while_the_database_thread_is_busy(asgi_app: Any) -> None:
    _, token = await sync_to_async(ApiToken.create)("console")
    operator = SignalClient(asgi_app)
    await operator.connect()
    try:
        await operator.send({"type": "register", "sessionId": "", "authToken": token})
        await operator.expect("event", "registered")
        # Database work of other sockets occupies the one thread sync code runs in (for
        # up to 3 s: until the event has arrived).
        occupied, release = threading.Event(), threading.Event()

        def occupy() -> None:
            occupied.set()
            release.wait(timeout=3.0)

        busy = asyncio.create_task(sync_to_async(occupy)())
        assert await asyncio.to_thread(occupied.wait, 5.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        call_id = await sync_to_async(ring_the_operators, thread_sensitive=False)()
        incoming = await operator.expect("event", "call.incoming", within=2.5)
        assert incoming["callSid"] == call_id
        assert loop.time() - started < 1.5
        assert not busy.done()
        release.set()
        await asyncio.wait_for(busy, 5)
    finally:
        await operator.close()
