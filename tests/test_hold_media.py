"""Hold and resume between real aiortc peers, by tone: who hears whom in each period, in
the peers' ears and in a recording running across it; nothing left behind after."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc.stats import RTCInboundRtpStreamStats
from asgiref.sync import sync_to_async

from calls import hold
from calls.background import background_tasks
from calls.models import AudioFile, Queue, Recording
from tests.support.live_call import (
    HOLD_TONE,
    OPERATOR_TONE,
    SILENT,
    USER_TONE,
    LiveCall,
    add_to_library,
    end_live_call,
    hears_nothing,
    media_path,
    start_live_call,
)
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.resources import Resources, settle_to
from tests.support.wav import dominant, read_wav, rms, strength

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media, pytest.mark.timeout(90)]
__all__ = ["media_path"]  # the fixture (tests/support/live_call.py), used by name


def default_queue_holds_with(name: str) -> None:
    queue = Queue.objects.default()
    queue.hold_audio = AudioFile.objects.get(name=name)
    queue.save()


async def packets_lost(peer: ClientPeer) -> int:
    report = await asyncio.wait_for(peer.pc.getStats(), 5)
    (stream,) = [s for s in report.values() if isinstance(s, RTCInboundRtpStreamStats)]
    return stream.packetsLost


async def finished(recording_id: str) -> Recording:
    for _ in range(200):  # the worker reports asynchronously (10 s)
        recording = await Recording.objects.aget(pk=recording_id)
        if recording.state != "recording":
            return recording
        await asyncio.sleep(0.05)
    raise AssertionError("the recording never finished")


async def test_it_holds_and_resumes_by_tone_in_the_ears_and_the_recording(
    media_path: str, asgi_app: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path
    await add_to_library(tmp_path, "hold-music", HOLD_TONE, 1.0)  # shorter than the hold: loops
    await sync_to_async(default_queue_holds_with)("hold-music")
    baseline = Resources.now()
    call: LiveCall = await start_live_call(asgi_app)
    calls = f"/api/calls/{call.call_id}"
    try:
        await call.consent_all()
        started = await call.post(f"{calls}/record", call.operator_token)
        assert started.status_code == 201, started.json()
        recording_began = time.monotonic()

        # Normal: the user hears the operator (B), the operator hears the user (A).
        await hear_each_other((call.operator_peer, USER_TONE), (call.user_peer, OPERATOR_TONE))
        await asyncio.sleep(1.0)
        held_at = time.monotonic()
        held = await call.post(f"{calls}/hold", call.operator_token)
        assert held.status_code == 200, held.json()
        assert held.json()["heldAt"] is not None
        told = await call.user.expect("event", "call.held")
        assert told["data"]["held"] is True and told["data"]["state"] == "active"

        # Held: the user hears the hold audio (C), never the operator; the operator hears
        # nothing: neither the user nor the hold audio.
        await call.user_peer.hears(HOLD_TONE)
        await asyncio.sleep(1.5)  # past the file's end: still heard, so it loops
        assert call.user_peer.sink.strength(HOLD_TONE) > 0.2
        assert call.user_peer.sink.strength(OPERATOR_TONE) < 0.02
        await hears_nothing(call.operator_peer)
        legs = background_tasks.get("media-worker").calls[call.call_id].legs
        if media_path == "forward":
            # No decoding where nobody needs it: neither voice is decoded (the recording
            # takes the packets the user is sent); only silence and the hold audio are
            # encoded (a browser given no packets would stretch the last sound it heard).
            assert not any(leg.tap is not None and leg.tap.decoding for leg in legs.values())
            operator_ear = legs["operator"].outbound
            assert operator_ear.frames_sent > 0
            assert operator_ear.silent_frames == operator_ear.frames_sent
        resumed_at = time.monotonic()
        resumed = await call.post(f"{calls}/resume", call.operator_token)
        assert resumed.status_code == 200, resumed.json()
        assert resumed.json()["heldAt"] is None
        told = await call.user.expect("event", "call.resumed")
        assert told["data"]["held"] is False and told["data"]["heldS"] > 0

        # Resumed: back to normal, and the hold audio is gone.
        await hear_each_other((call.operator_peer, USER_TONE), (call.user_peer, OPERATOR_TONE))
        await asyncio.sleep(1.2)
        assert call.user_peer.sink.strength(HOLD_TONE) < 0.02
        assert call.operator_peer.sink.strength(HOLD_TONE) < 0.02
        if media_path == "forward":
            encoded = legs["user"].outbound.frames_sent
            await call.user_peer.hears(OPERATOR_TONE)
            assert legs["user"].outbound.frames_sent == encoded  # forwarded again
            # One stream each through the hold: its pause is no gap in the numbering.
            assert await packets_lost(call.user_peer) == 0
            assert await packets_lost(call.operator_peer) == 0
        stopped_at = time.monotonic()
        stopped = await call.post(f"{calls}/record/stop", call.operator_token)
        assert stopped.status_code == 200, stopped.json()
        recording = await finished(stopped.json()["recordingID"])

        hung_up = await call.post(f"{calls}/hangup", call.user_token)
        assert hung_up.status_code == 200, hung_up.json()
        await call.user.expect("event", "call.ended")
    finally:
        await end_live_call(call)

    # The recording shows each period as the parties lived it: left = the user's side
    # (their voice; while held, the hold audio they heard), right = the operator's (their
    # voice; while held, nothing: neither voice reached anyone).
    wav = Path(settings.MEDIA_ROOT) / "recordings" / recording.file_name
    left, right, _ = await asyncio.to_thread(read_wav, wav)

    def second_before(moment: float) -> slice:
        end = int((moment - recording_began - 0.2) * 48000)
        return slice(end - 48000, end)

    normal, on_hold, after = (second_before(t) for t in (held_at, resumed_at, stopped_at))
    for period in (normal, after):
        assert abs(dominant(left[period]) - USER_TONE) < 10
        assert abs(dominant(right[period]) - OPERATOR_TONE) < 10
        assert strength(left[period], HOLD_TONE) < 0.02
    assert abs(dominant(left[on_hold]) - HOLD_TONE) < 10
    assert strength(left[on_hold], USER_TONE) < 0.02
    assert rms(right[on_hold]) < SILENT
    assert rms(left[on_hold]) > 1000 and np.all(np.isfinite(left))
    # Its timeline marks the hold where the file has it (the admin shows these).
    (period,) = await sync_to_async(hold.hold_periods)(recording)
    assert period.to_s is not None
    assert abs(period.from_s - (held_at - recording_began)) < 0.5
    assert abs(period.to_s - (resumed_at - recording_began)) < 0.5

    # Nothing left behind: the worker forgot the call, every connection and task is gone.
    worker = background_tasks.get("media-worker")
    assert worker.peer_count == 0 and worker.calls == {}
    assert await settle_to(baseline) == baseline
