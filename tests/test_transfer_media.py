"""Blind transfer between real aiortc peers, by tone, on both media paths: the caller is
handed from an integrator's operator to a queue (its member answers), then from that
member to another operator. Who hears whom in each phase (before, while transferring,
after), the gap the caller hears at each switch (measured and printed, not asserted:
timing), and nothing left behind.

Attended transfer (below): one call goes caller ↔ the integrator's operator → consult bob
(the caller hears the hold audio only, the operator and bob hear each other, nobody hears
the caller) → cancel (caller ↔ operator again, bob's connection closed) → consult bob
again → complete (caller ↔ bob, the operator gone; the gap the caller hears at the switch
measured, printed, and under 300 ms) — and nothing left behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from calls.background import background_tasks
from calls.models import Recording, Transfer
from tests.support.live_call import (
    HOLD_TONE,
    OPERATOR_TONE,
    USER_TONE,
    LiveCall,
    add_to_library,
    end_live_call,
    hears_nothing,
    media_path,
    start_live_call,
)
from tests.support.media_peers import ClientPeer
from tests.support.queues import make_operator, make_queue
from tests.support.resources import Resources, settle_to

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media, pytest.mark.timeout(120)]

BOB_TONE, CAROL_TONE = 1320, 1760
__all__ = ["media_path"]  # the fixture, used by name


async def staff_http(username: str, queue: str | None = None) -> AsyncClient:
    """A logged-in staff operator (available; a member of `queue` if named)."""

    def make() -> Any:
        user = make_operator(username)
        if queue is not None:
            make_queue(queue, [user])
        return user

    client = AsyncClient()
    await client.aforce_login(await sync_to_async(make)())
    return client


async def take_call(http: AsyncClient, call_id: str, tone: float) -> ClientPeer:
    """The operator takes the ringing call by sending its media offer (as the dashboard's
    Answer does)."""
    peer = ClientPeer(tone)
    response = await http.post(
        f"/api/calls/{call_id}/webrtc/offer",
        {"type": "offer", "sdp": await peer.offer()},
        content_type="application/json",
    )
    assert response.status_code == 200, response.json()
    await peer.accept(response.json()["sdp"])
    await peer.wait_connected()
    return peer


async def transferring(call: LiveCall, old: ClientPeer) -> None:
    """The caller hears the hold audio, never the operator who left; that operator's
    connection is closed and hears nothing more."""
    told = await call.user.expect("event", "call.transfer_started")
    assert told["data"]["state"] == "ringing" and "toOperator" not in told["data"]
    await call.user_peer.hears(HOLD_TONE)
    await asyncio.sleep(0.5)
    assert call.user_peer.sink.strength(OPERATOR_TONE) < 0.02
    await hears_nothing(old, 0.5)


async def after_switch(call: LiveCall, new: ClientPeer, tone: float, left: float) -> float:
    """The caller hears the new operator only (no hold audio, not who left), the new
    operator hears the caller; the gap the caller heard between hold audio and voice."""
    await asyncio.gather(call.user_peer.hears(tone), new.hears(USER_TONE))
    await asyncio.sleep(0.5)
    for gone in (HOLD_TONE, left):
        assert call.user_peer.sink.strength(gone, last_seconds=1.0) < 0.02
    gap = call.user_peer.sink.switch_gap(HOLD_TONE, tone)
    assert gap is not None, "the caller never heard hold audio turn into the new voice"
    return gap


async def test_it_hands_the_caller_on_by_tone_with_a_short_gap(
    media_path: str, asgi_app: Any, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path
    await add_to_library(tmp_path, "hold-music", HOLD_TONE, 1.0)
    settings.CALLBRIDGE_HOLD_AUDIO = "hold-music"  # the queues here have no audio of their own
    bob_http = await staff_http("bob", queue="sales")
    carol_http = await staff_http("carol")
    baseline = Resources.now()
    call = await start_live_call(asgi_app)
    calls = f"/api/calls/{call.call_id}"
    peers: list[ClientPeer] = []
    gaps: list[float] = []
    try:
        # A recording running at the switch stops there: bob has not consented to it.
        await call.consent_all()
        recording = await call.post(f"{calls}/record", call.operator_token)
        assert recording.status_code == 201, recording.json()

        # 1. The integrator's operator → queue "sales": its member bob answers.
        moved = await call.post(
            f"{calls}/transfer", call.operator_token, {"to": {"queue": "sales"}}
        )
        assert moved.status_code == 200, moved.json()
        await transferring(call, call.operator_peer)
        stopped = await Recording.objects.aget(pk=recording.json()["recordingID"])
        assert (stopped.state, stopped.stop_reason) == ("finished", "transferred")
        call.user_peer.sink.clear()  # from here: hold audio, then bob
        peers.append(await take_call(bob_http, call.call_id, BOB_TONE))
        gaps.append(await after_switch(call, peers[0], BOB_TONE, OPERATOR_TONE))

        # 2. Bob → carol (one operator): she answers; bob is gone from the caller's ears.
        moved = await bob_http.post(
            f"{calls}/transfer", {"to": {"operator": "carol"}}, content_type="application/json"
        )
        assert moved.status_code == 200, moved.json()
        await transferring(call, peers[0])
        call.user_peer.sink.clear()
        peers.append(await take_call(carol_http, call.call_id, CAROL_TONE))
        gaps.append(await after_switch(call, peers[1], CAROL_TONE, BOB_TONE))

        outcomes = await sync_to_async(
            lambda: list(Transfer.objects.values_list("outcome", flat=True))
        )()
        assert outcomes == ["completed", "completed"]
        hung_up = await call.post(f"{calls}/hangup", call.user_token)
        assert hung_up.status_code == 200, hung_up.json()
        await call.user.expect("event", "call.ended")
    finally:
        for peer in peers:
            await peer.close()
        await end_live_call(call)
    print(
        f"\ntransfer gaps heard by the caller ({media_path}): "
        + ", ".join(f"{gap * 1000:.0f} ms" for gap in gaps)
    )

    # Nothing left behind: the worker forgot the call, every connection and task is gone.
    worker = background_tasks.get("media-worker")
    assert worker.peer_count == 0 and worker.calls == {}
    assert await settle_to(baseline) == baseline


# --- attended transfer (consult first) -------------------------------------------------
MAX_GAP_S = 0.3  # attended transfer: the gap the caller may hear at completion
QUIET = 0.02  # a tone's share of what an ear hears, below which it is not heard


async def consulting(call: LiveCall, bob: ClientPeer) -> None:
    """The matrix of a consult: the caller hears the hold audio only; the operator and bob
    hear each other; nobody hears the caller."""
    await asyncio.gather(
        call.user_peer.hears(HOLD_TONE),
        call.operator_peer.hears(BOB_TONE),
        bob.hears(OPERATOR_TONE),
    )
    await asyncio.sleep(0.5)
    for tone in (OPERATOR_TONE, BOB_TONE):
        assert call.user_peer.sink.strength(tone) < QUIET, tone
    assert call.operator_peer.sink.strength(USER_TONE) < QUIET
    assert bob.sink.strength(USER_TONE) < QUIET


async def test_it_consults_cancels_and_completes_by_tone(
    media_path: str, asgi_app: Any, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path
    await add_to_library(tmp_path, "hold-music", HOLD_TONE, 1.0)
    settings.CALLBRIDGE_HOLD_AUDIO = "hold-music"
    bob_http = await staff_http("bob")
    baseline = Resources.now()
    call = await start_live_call(asgi_app)
    calls = f"/api/calls/{call.call_id}"
    peers: list[ClientPeer] = []
    gap: float | None = None
    try:
        # A recording running when bob takes the call stops there (as blind transfer's).
        await call.consent_all()
        recording = await call.post(f"{calls}/record", call.operator_token)
        assert recording.status_code == 201, recording.json()

        # 1. Consult bob: he answers with his own leg on the same call.
        consulted = await call.post(
            f"{calls}/consult", call.operator_token, {"to": {"operator": "bob"}}
        )
        assert consulted.status_code == 200, consulted.json()
        held = await call.user.expect("event", "call.held")
        assert "consult" not in str(held["data"])  # the caller is told of a hold, no more
        peers.append(await take_call(bob_http, call.call_id, BOB_TONE))
        # The operator's own socket (/ws/signal) is told each step; the caller is not.
        told = await call.operator.expect("event", "call.consult_answered")
        assert told["data"]["transferID"] and "toOperator" not in told["data"]
        await consulting(call, peers[0])
        running = await Recording.objects.aget(pk=recording.json()["recordingID"])
        assert running.state == "recording"  # a consult is a hold: the recording goes on

        # 2. Cancel: bob's connection closes, the caller and the operator talk again.
        cancelled = await call.post(f"{calls}/consult/cancel", call.operator_token)
        assert cancelled.status_code == 200, cancelled.json()
        await asyncio.gather(
            call.user_peer.hears(OPERATOR_TONE), call.operator_peer.hears(USER_TONE)
        )
        await hears_nothing(peers[0], 0.5)
        assert call.user_peer.sink.strength(HOLD_TONE) < QUIET

        # 3. Consult again, and complete: bob and the caller talk, the operator is gone.
        consulted = await call.post(
            f"{calls}/consult", call.operator_token, {"to": {"operator": "bob"}}
        )
        assert consulted.status_code == 200, consulted.json()
        peers.append(await take_call(bob_http, call.call_id, BOB_TONE))
        await consulting(call, peers[1])
        call.user_peer.sink.clear()  # from here: hold audio, then bob
        completed = await call.post(f"{calls}/consult/complete", call.operator_token)
        assert completed.status_code == 200, completed.json()
        # (hears_in_mix keeps what was heard before: the switch is in it)
        await asyncio.gather(call.user_peer.hears_in_mix(BOB_TONE), peers[1].hears(USER_TONE))
        await asyncio.sleep(1.0)
        for gone in (HOLD_TONE, OPERATOR_TONE):
            assert call.user_peer.sink.strength(gone, last_seconds=1.0) < QUIET, gone
        await hears_nothing(call.operator_peer, 0.5)
        gap = call.user_peer.sink.switch_gap(HOLD_TONE, BOB_TONE)
        assert gap is not None, "the caller never heard hold audio turn into bob's voice"
        assert gap < MAX_GAP_S, f"the caller heard {gap * 1000:.0f} ms of silence"
        stopped = await Recording.objects.aget(pk=recording.json()["recordingID"])
        assert (stopped.state, stopped.stop_reason) == ("finished", "transferred")
        outcomes = await sync_to_async(
            lambda: list(Transfer.objects.order_by("started_at").values_list("outcome", flat=True))
        )()
        assert outcomes == ["cancelled", "completed"]

        hung_up = await call.post(f"{calls}/hangup", call.user_token)
        assert hung_up.status_code == 200, hung_up.json()
        await call.user.expect("event", "call.ended")
    finally:
        for peer in peers:
            await peer.close()
        await end_live_call(call)
    print(
        f"\nconsult completion gap heard by the caller ({media_path}): {(gap or 0) * 1000:.0f} ms"
    )

    # Nothing left behind: the worker forgot the call, every connection and task is gone.
    worker = background_tasks.get("media-worker")
    assert worker.peer_count == 0 and worker.calls == {}
    assert await settle_to(baseline) == baseline
