"""Recording a call between real peers: consent first, one channel per party, always valid."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asgiref.sync import sync_to_async

from calls.models import Recording
from tests.support.live_call import OPERATOR_TONE, USER_TONE, LiveCall
from tests.support.media_peers import ClientPeer
from tests.support.wav import dominant, read_wav

pytestmark = [pytest.mark.django_db(transaction=True)]


async def finished(recording_id: str) -> Recording:
    # The worker reports asynchronously: watch the record as an API reader would (10 s).
    for _ in range(200):
        recording = await Recording.objects.aget(pk=recording_id)
        if recording.state != "recording":
            return recording
        await asyncio.sleep(0.05)
    raise AssertionError("the recording never finished")


def check_file(recording: Recording, media_root: Path) -> tuple[np.ndarray, np.ndarray, float]:
    path = media_root / "recordings" / recording.file_name
    content = path.read_bytes()
    assert hashlib.sha256(content).hexdigest() == recording.sha256
    assert len(content) == recording.size_bytes
    return read_wav(path)


async def test_it_records_each_party_on_its_own_channel(live_call: LiveCall, settings: Any) -> None:
    await live_call.consent_all()
    asked = time.monotonic()
    started = await live_call.post(
        f"/api/calls/{live_call.call_id}/record", live_call.operator_token
    )
    began = time.monotonic()
    assert started.status_code == 201, started.json()
    event = await live_call.user.expect("event", "recording.started")
    assert len(event["data"]["consents"]) == 2
    await asyncio.sleep(2.0)
    ended = time.monotonic()
    stopped = await live_call.post(
        f"/api/calls/{live_call.call_id}/record/stop", live_call.operator_token
    )
    assert stopped.status_code == 200, stopped.json()
    body = stopped.json()
    stop_answered = time.monotonic()
    assert (body["state"], body["stopReason"]) == ("finished", "stopped")
    recording = await Recording.objects.aget(pk=body["recordingID"])
    left, right, seconds = await asyncio.to_thread(check_file, recording, Path(settings.MEDIA_ROOT))
    # As long as it ran: at least from the start's answer to the stop's request, at most
    # from the start's request to the stop's answer (one 20 ms frame either way).
    assert ended - began - 0.02 <= seconds <= stop_answered - asked + 0.02, (
        seconds,
        ended - began,
        stop_answered - asked,
    )
    assert abs(recording.duration_s - seconds) < 0.001
    last_second = slice(-48000, None)
    assert abs(dominant(left[last_second]) - USER_TONE) < 10  # left = end user
    assert abs(dominant(right[last_second]) - OPERATOR_TONE) < 10  # right = operator
    consents = await sync_to_async(
        lambda: sorted(recording.consents.values_list("role", flat=True))
    )()
    assert consents == ["operator", "user"]
    assert (await live_call.user.expect("event", "recording.stopped"))["data"][
        "reason"
    ] == "stopped"


async def test_it_refuses_to_record_without_every_consent(
    live_call: LiveCall, settings: Any
) -> None:
    await live_call.consent(live_call.user_token)
    refused = await live_call.post(
        f"/api/calls/{live_call.call_id}/record", live_call.operator_token
    )
    body = refused.json()
    assert (refused.status_code, body["code"]) == (409, "CONSENT_REQUIRED")
    assert body["details"]["missing"] == ["operator"] and "operator" in body["message"]
    assert await Recording.objects.acount() == 0
    assert not (Path(settings.MEDIA_ROOT) / "recordings").exists()


async def test_it_stops_at_once_when_consent_is_withdrawn(
    live_call: LiveCall, settings: Any
) -> None:
    await live_call.consent_all()
    started = (
        await live_call.post(f"/api/calls/{live_call.call_id}/record", live_call.operator_token)
    ).json()
    await asyncio.sleep(0.5)
    withdrawn = await live_call.consent(live_call.user_token, granted=False)
    assert withdrawn.json()["consent"]["missing"] == ["user"]
    recording = await Recording.objects.aget(pk=started["recordingID"])
    assert (recording.state, recording.stop_reason) == ("finished", "consent_withdrawn")
    await asyncio.to_thread(check_file, recording, Path(settings.MEDIA_ROOT))
    stopped = await live_call.user.expect("event", "recording.stopped")
    assert stopped["data"]["reason"] == "consent_withdrawn"


async def test_it_finalizes_the_file_when_the_call_is_hung_up(
    live_call: LiveCall, settings: Any
) -> None:
    await live_call.consent_all()
    started = (
        await live_call.post(f"/api/calls/{live_call.call_id}/record", live_call.operator_token)
    ).json()
    await asyncio.sleep(1.0)
    await live_call.post(f"/api/calls/{live_call.call_id}/hangup", live_call.user_token)
    recording = await finished(started["recordingID"])
    assert recording.stop_reason == "hangup"
    _, _, seconds = await asyncio.to_thread(check_file, recording, Path(settings.MEDIA_ROOT))
    assert 0.9 < seconds < 2.0


# Each must be refused as it is, whatever the folder holds: other folders, climbing out,
# absolute, URL-encoded, backslashes, NUL, look-alike slashes, hidden or non-WAV names.
BAD_WAGO_PATHS = [
    "../escape.wav",
    "files/calls/../escape.wav",
    "files/calls/../../escape.wav",
    "files/calls/sub/escape.wav",
    "files/other/escape.wav",
    "files/calls//escape.wav",
    "/files/calls/escape.wav",
    "./files/calls/escape.wav",
    "/etc/escape.wav",
    "~/escape.wav",
    "%2e%2e%2fescape.wav",
    "files%2Fcalls%2Fescape.wav",
    "files/calls/%2e%2e%2fescape.wav",
    "..\\escape.wav",
    "files\\calls\\escape.wav",
    "escape.wav\x00.wav",
    "files/calls/escape\u2215x.wav",
    "files/calls/.escape.wav",
    "files/calls/escape.mp3",
    "files/calls/escape.wav/",
    "files/calls/",
]


async def wago_record(live_call: LiveCall, path: str | None) -> Any:
    body = {"CallID": live_call.call_id, **({"Path": path} if path is not None else {})}
    return await live_call.http.post(
        "/call/record",
        body,
        content_type="application/json",
        headers={"token": live_call.operator_token},
    )


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


async def test_it_keeps_wagos_path_inside_the_recordings_folder(
    live_call: LiveCall, settings: Any, tmp_path: Path
) -> None:
    await live_call.consent_all()
    everything = tmp_path.parent  # MEDIA_ROOT is tmp_path: climbing out lands here
    before = await asyncio.to_thread(files_under, everything)
    for path in BAD_WAGO_PATHS:
        response = await wago_record(live_call, path)
        assert (response.status_code, response.json()["code"]) == (400, "INVALID_ARGUMENT"), path
        assert "Traceback" not in response.content.decode()
    # A link left in the folder (even one to nowhere) is never written through.
    recordings = Path(settings.MEDIA_ROOT) / "recordings"
    recordings.mkdir(exist_ok=True)
    (recordings / "trap.wav").symlink_to(tmp_path.parent / "outside.wav")
    response = await wago_record(live_call, "files/calls/trap.wav")
    assert (response.status_code, response.json()["code"]) == (400, "INVALID_ARGUMENT")
    assert await Recording.objects.acount() == 0
    after = await asyncio.to_thread(files_under, everything)
    assert after - before == {recordings, recordings / "trap.wav"}
    assert not (tmp_path.parent / "outside.wav").exists()


async def test_it_names_wago_recordings_as_wago_does(live_call: LiveCall, settings: Any) -> None:
    """No Path: `{callID}.wav` (WaGo's files/calls/{callID}.wav); the seed's own Path form
    and a bare name land in the recordings folder; a taken name is refused, and only the
    default one gets a suffix."""
    await live_call.consent_all()
    recordings = Path(settings.MEDIA_ROOT) / "recordings"
    call_id = live_call.call_id
    kept = []
    for path, name in [
        (None, f"{call_id}.wav"),
        (f"files/calls/{call_id}-ada.wav", f"{call_id}-ada.wav"),
        ("ada-call.wav", "ada-call.wav"),
        ("", None),  # {callID}.wav is taken now: {callID}-<8 hex>.wav
    ]:
        response = await wago_record(live_call, path)
        assert response.status_code == 201, (path, response.json())
        recording = await Recording.objects.aget(pk=response.json()["recordingID"])
        if name is None:
            assert recording.file_name.startswith(f"{call_id}-")
            assert len(recording.file_name) == len(f"{call_id}-12345678.wav")
        else:
            assert recording.file_name == name
        await asyncio.sleep(0.5)
        stopped = await live_call.post(
            f"/api/calls/{call_id}/record/stop", live_call.operator_token
        )
        assert stopped.status_code == 200, stopped.json()
        kept.append(recording.file_name)
    taken = await wago_record(live_call, f"files/calls/{call_id}.wav")
    assert (taken.status_code, taken.json()["code"]) == (400, "INVALID_ARGUMENT")
    assert sorted(p.name for p in recordings.iterdir()) == sorted(kept)
    # A purged recording's file is gone, its name stays its own (the database refuses).
    purged = await asyncio.to_thread((recordings / "ada-call.wav").read_bytes)
    await asyncio.to_thread((recordings / "ada-call.wav").unlink)
    reused = await wago_record(live_call, "files/calls/ada-call.wav")
    assert (reused.status_code, reused.json()["code"]) == (400, "INVALID_ARGUMENT")
    assert not (recordings / "ada-call.wav").exists()
    await asyncio.to_thread((recordings / "ada-call.wav").write_bytes, purged)
    assert await Recording.objects.acount() == len(kept)
    for name in kept:
        left, _, _ = await asyncio.to_thread(read_wav, recordings / name)
        assert abs(dominant(left[-12000:]) - USER_TONE) < 20, name


def longest_silence(samples: np.ndarray, threshold: float = 300.0) -> float:
    """Seconds of the longest run of near-silence."""
    quiet = np.abs(samples) < threshold
    longest = current = 0
    for is_quiet in quiet:
        current = current + 1 if is_quiet else 0
        longest = max(longest, current)
    return longest / 48000


async def test_it_records_a_gap_as_silence_without_shifting_the_other_side(
    live_call: LiveCall, settings: Any
) -> None:
    from calls.models import Leg

    await live_call.consent_all()
    started = await live_call.post(
        f"/api/calls/{live_call.call_id}/record", live_call.operator_token
    )
    await asyncio.sleep(1.0)
    leg = await Leg.objects.aget(call_id=live_call.call_id, role="user")
    gap_began = time.monotonic()
    await live_call.user.send({"type": "close", "sessionId": str(leg.pk)})
    await live_call.user.expect("event", "media.disconnected")
    await live_call.user_peer.close()
    await asyncio.sleep(1.0)
    again = ClientPeer(USER_TONE)
    try:
        answer = await live_call.user.offer(
            live_call.user_token, await again.offer(), callSid=live_call.call_id
        )
        await again.accept(answer["data"]["sdp"])
        await again.wait_connected()
        gap = time.monotonic() - gap_began
        await live_call.operator_peer.hears(USER_TONE)  # the user is audible again
        await asyncio.sleep(1.0)
        stopped = await live_call.post(
            f"/api/calls/{live_call.call_id}/record/stop", live_call.operator_token
        )
    finally:
        await again.close()
    recording = await Recording.objects.aget(pk=stopped.json()["recordingID"])
    left, right, seconds = await asyncio.to_thread(check_file, recording, Path(settings.MEDIA_ROOT))
    settle = slice(int(0.3 * 48000), None)  # the first moments may be quiet on both sides
    silence = longest_silence(left[settle])
    print(f"gap {gap:.3f} s, recorded silence {silence:.3f} s, file {seconds:.3f} s")
    assert gap - 0.25 < silence < gap + 0.35, (silence, gap)
    # The operator's side never stopped: no silence near the user's gap (a few lost
    # packets on a loaded machine are a short hole, not a stop).
    assert longest_silence(right[settle]) < min(0.5, gap / 2), gap
    assert abs(dominant(left[-48000:]) - USER_TONE) < 10
    assert started.status_code == 201 and seconds > 3.0
