"""A supervisor whose browser offers two audio m-lines (the dashboard's): each party on its
own track, forwarded; by tone in one real call through monitor, whisper, barge (and a hold
in it), with a recording started while barging (the supervisor's consent counted) that
holds the supervisor's voice in the operator's channel while barging only; what is decoded
in each mode; nothing left behind after."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from django.test import AsyncClient

from calls.background import background_tasks
from calls.models import Recording
from tests.support.live_call import (
    USER_TONE,
    LiveCall,
    end_live_call,
    media_path,  # noqa: F401  (both media paths, a shared fixture)
    start_live_call,
)
from tests.support.media_peers import TwoTrackPeer, ears_are
from tests.support.resources import Resources, settle_to
from tests.support.wav import read_wav, strength

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media, pytest.mark.timeout(150)]

# No tone a harmonic (or a mixing product) of another: with the operator at 880 Hz, a
# 440 Hz tone decoded and encoded again under load carried 2-3 % of 880 Hz into an ear
# that must not hear the operator (the NOT_HEARD bound is 2 %).
OPERATOR_TONE = 660
SUPERVISOR_TONE = 1250
TONES = (USER_TONE, OPERATOR_TONE, SUPERVISOR_TONE)


async def finished(recording_id: str) -> Recording:
    for _ in range(200):  # the worker reports asynchronously (10 s)
        recording = await Recording.objects.aget(pk=recording_id)
        if recording.state != "recording":
            return recording
        await asyncio.sleep(0.05)
    raise AssertionError("the recording never finished")


def decoding(legs: dict[str, Any]) -> set[str]:
    """The legs whose audio the worker decodes now (forwarding path)."""
    return {role for role, leg in legs.items() if leg.tap is not None and leg.tap.decoding}


def encoded(legs: dict[str, Any]) -> tuple[int, ...]:
    """Frames aiortc has encoded for every ear (forwarded packets are not counted)."""
    supervisor = legs["supervisor"]
    ears = [legs[role].outbound for role in ("user", "operator")]
    ears += [supervisor.outbound, *(ear.outbound for ear in supervisor.extra_ears)]
    return tuple(ear.frames_sent for ear in ears)


async def test_it_forwards_each_party_on_its_own_track_and_records_a_barge(
    media_path: str,  # noqa: F811
    asgi_app: Any,
    supervisor_user: Any,
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.MEDIA_ROOT = tmp_path
    baseline = Resources.now()
    call: LiveCall = await start_live_call(asgi_app, operator_tone=OPERATOR_TONE)
    calls = f"/api/calls/{call.call_id}"
    supervisor = AsyncClient()
    await supervisor.aforce_login(supervisor_user)
    peer = TwoTrackPeer(SUPERVISOR_TONE)
    user, operator = call.user_peer.sink, call.operator_peer.sink
    hears_user, hears_operator = peer.sinks

    async def switch(mode: str) -> None:
        switched = await supervisor.post(
            f"{calls}/supervise", {"mode": mode}, content_type="application/json"
        )
        assert switched.status_code == 200, switched.json()

    try:
        await switch("monitor")
        answered = await supervisor.post(
            f"{calls}/webrtc/offer",
            {"type": "offer", "sdp": await peer.offer()},
            content_type="application/json",
        )
        assert answered.status_code == 200, answered.json()
        assert answered.json()["sdp"].count("m=audio ") == 2
        await peer.accept(answered.json()["sdp"])
        await peer.wait_connected()
        legs = background_tasks.get("media-worker").calls[call.call_id].legs
        assert legs["supervisor"].track_count == 2

        # Monitor: each party on its own track; nobody hears the supervisor; all forwarded,
        # nothing decoded, nothing encoded.
        await ears_are(
            [
                (hears_user, (USER_TONE,)),
                (hears_operator, (OPERATOR_TONE,)),
                (user, (OPERATOR_TONE,)),
                (operator, (USER_TONE,)),
            ],
            TONES,
        )
        if media_path == "forward":
            assert decoding(legs) == set()
            before = encoded(legs)
            await asyncio.sleep(0.5)
            assert encoded(legs) == before

        # Whisper: the operator hears the user and the supervisor (mixed: only that ear
        # decodes); the user still only the operator; the supervisor's tracks unchanged.
        await switch("whisper")
        await ears_are(
            [
                (hears_user, (USER_TONE,)),
                (hears_operator, (OPERATOR_TONE,)),
                (user, (OPERATOR_TONE,)),
                (operator, (USER_TONE, SUPERVISOR_TONE)),
            ],
            TONES,
        )
        if media_path == "forward":
            assert decoding(legs) == {"user", "supervisor"}

        # Barge: each party hears both others; the supervisor's tracks are still forwarded.
        await switch("barge")
        barge = [
            (hears_user, (USER_TONE,)),
            (hears_operator, (OPERATOR_TONE,)),
            (user, (OPERATOR_TONE, SUPERVISOR_TONE)),
            (operator, (USER_TONE, SUPERVISOR_TONE)),
        ]
        await ears_are(barge, TONES)
        if media_path == "forward":
            assert decoding(legs) == {"user", "operator", "supervisor"}

        # On hold the caller's track goes quiet and the operator's stays the operator's;
        # the supervisor and the operator still hear each other, the caller neither.
        held = await call.post(f"{calls}/hold", call.operator_token)
        assert held.status_code == 200, held.json()
        await ears_are(
            [
                (hears_user, ()),
                (hears_operator, (OPERATOR_TONE,)),
                (user, ()),
                (operator, (SUPERVISOR_TONE,)),
            ],
            TONES,
        )
        resumed = await call.post(f"{calls}/resume", call.operator_token)
        assert resumed.status_code == 200, resumed.json()
        await ears_are(barge, TONES)

        # A recording started while barging needs the barging supervisor's consent too.
        await call.consent_all()
        refused = await call.post(f"{calls}/record", call.operator_token)
        assert refused.status_code == 409, refused.json()
        assert refused.json()["details"]["missing"] == ["supervisor"]
        given = await supervisor.post(
            f"{calls}/consent",
            {"granted": True, "policy": "1", "via": "dashboard"},
            content_type="application/json",
        )
        assert given.status_code == 201, given.json()
        started = await call.post(f"{calls}/record", call.operator_token)
        assert started.status_code == 201, started.json()
        recording_began = time.monotonic()
        await ears_are(barge, TONES)
        barged_until = time.monotonic()
        # Monitoring again: the supervisor is no longer in what is recorded.
        await switch("monitor")
        await ears_are([(hears_operator, (OPERATOR_TONE,)), (user, (OPERATOR_TONE,))], TONES)
        stopped_at = time.monotonic()
        stopped = await call.post(f"{calls}/record/stop", call.operator_token)
        assert stopped.status_code == 200, stopped.json()
        recording = await finished(stopped.json()["recordingID"])
        assert recording.state == "finished"

        hung_up = await call.post(f"{calls}/hangup", call.user_token)
        assert hung_up.status_code == 200, hung_up.json()
        await call.user.expect("event", "call.ended")
    finally:
        await peer.close()
        await end_live_call(call)

    # Left: the user only, throughout. Right: the operator, with the supervisor mixed in
    # while barging, and without once monitoring.
    left, right, _ = await asyncio.to_thread(
        read_wav, tmp_path / "recordings" / recording.file_name
    )

    def second_before(moment: float) -> slice:
        end = int((moment - recording_began - 0.2) * 48000)
        return slice(end - 48000, end)

    barging, monitoring = second_before(barged_until), second_before(stopped_at)
    for period in (barging, monitoring):
        assert strength(left[period], USER_TONE) > 0.5
        assert strength(left[period], SUPERVISOR_TONE) < 0.02
        assert strength(right[period], OPERATOR_TONE) > 0.5
    assert strength(right[barging], SUPERVISOR_TONE) > 0.5
    assert strength(right[monitoring], SUPERVISOR_TONE) < 0.02

    worker = background_tasks.get("media-worker")
    assert worker.peer_count == 0 and worker.calls == {}
    assert await settle_to(baseline) == baseline
