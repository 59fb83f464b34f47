"""Call deadlines: ring timeout (`missed`) and media grace (`media_timeout`), nobody polling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from calls.deadlines import CallDeadlines
from calls.events import EventPublisher
from calls.models import ApiToken, Call, EndUserSession
from calls.principals import Principal

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def ring(name: str = "Ada") -> Call:
    session, _ = EndUserSession.create(ttl_seconds=600, display_name=name)
    return Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")


async def state_of(call: Call) -> Call:
    return await Call.objects.aget(pk=call.pk)


async def wait_for_state(call: Call, state: str, within: float = 5.0) -> Call:
    async def poll() -> Call:
        # The test observes the database the way an API reader would.
        while (current := await state_of(call)).state != state:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return current

    return await asyncio.wait_for(poll(), within)


@pytest.fixture(autouse=True)
async def publisher() -> AsyncIterator[None]:
    """As in a server: call events leave through the event publisher."""
    task = asyncio.create_task(EventPublisher().run())
    await asyncio.sleep(0)
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def ring_timer() -> AsyncIterator[CallDeadlines]:
    # Idle re-check far beyond the test's timeouts: only the deadline/wake-up can fire.
    timer = CallDeadlines(idle_recheck_s=60)
    task = asyncio.create_task(timer.run())
    await asyncio.sleep(0.2)  # first sweep done, now sleeping "forever"
    yield timer
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_it_ends_an_unanswered_call_as_missed_at_its_deadline(
    settings: Any, ring_timer: CallDeadlines
) -> None:
    settings.CALLBRIDGE_RING_TIMEOUT_S = 1
    call = await sync_to_async(ring)()
    missed = await wait_for_state(call, "missed")
    assert missed.end_reason == "missed" and missed.ended_by_role == "system"
    late_by = missed.ended_at - (call.created_at + timedelta(seconds=1))
    assert timedelta(0) <= late_by < timedelta(seconds=1)
    names = [name async for name in missed.events.values_list("name", flat=True)]
    assert names == ["call.created", "queue.joined", "call.ended"]


async def test_it_leaves_answered_calls_alone(settings: Any, ring_timer: CallDeadlines) -> None:
    settings.CALLBRIDGE_RING_TIMEOUT_S = 1
    answered = await sync_to_async(ring)("Ada")
    unanswered = await sync_to_async(ring)("Bob")
    token, _ = await sync_to_async(ApiToken.create)("backend")
    await sync_to_async(answered.answer)(Principal.for_api_token(token))
    await wait_for_state(unanswered, "missed")
    await asyncio.sleep(0.3)
    assert (await state_of(answered)).state == "active"


async def test_it_misses_calls_left_ringing_while_it_was_not_running(settings: Any) -> None:
    settings.CALLBRIDGE_RING_TIMEOUT_S = 1
    call = await sync_to_async(ring)()
    await asyncio.sleep(1.1)  # the deadline passes with no timer running (a restart)
    timer = CallDeadlines(idle_recheck_s=60)
    task = asyncio.create_task(timer.run())
    try:
        assert (await wait_for_state(call, "missed", within=2)).end_reason == "missed"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_it_stops_even_when_cancelled_as_it_is_woken() -> None:
    # A cancel racing a wake-up once left the sweeper hanging (asyncio.wait_for on 3.11).
    for _ in range(30):
        timer = CallDeadlines(idle_recheck_s=60)
        task = asyncio.create_task(timer.run())
        while timer._loop is None:
            assert not task.done(), task
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)  # its first sweep is done; it waits for a wake-up
        timer._wake.set()
        task.cancel()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 2)
