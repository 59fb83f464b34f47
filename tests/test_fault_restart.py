"""A real `manage.py serve` killed (SIGKILL) or stopped (SIGTERM) under live calls: every
call, leg and recording ends with a correct record, and every WAV is valid."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from calls.media.wav import HEADER_BYTES, WavWriter, repair_wav
from tests.support.live_server import Server, running_server
from tests.support.media_peers import ClientPeer
from tests.support.real_socket import RealSocket

pytestmark = pytest.mark.daphne

FACTS = """
import json
import os
from calls.models import Call
calls = []
for call in Call.objects.prefetch_related("legs", "events", "recordings"):
    calls.append({
        "id": str(call.pk), "state": call.state, "reason": call.end_reason,
        "endedBy": call.ended_by_role,
        "legs": sorted(leg.media_state for leg in call.legs.all()),
        "events": [[e.name, e.data] for e in call.events.all()],
        "recordings": [
            {"state": r.state, "reason": r.stop_reason, "file": r.file_name, "sha256": r.sha256,
             "size": r.size_bytes, "duration": r.duration_s}
            for r in call.recordings.all()
        ],
    })
print(json.dumps(calls))
"""


async def stored_calls(server: Server) -> dict[str, dict[str, Any]]:
    """Every call as the database has it (read with the server's own settings)."""
    out = await asyncio.to_thread(server.manage, "shell", "-c", FACTS)
    return {call["id"]: call for call in json.loads(out.strip().splitlines()[-1])}


def assert_valid_recording(recording: dict[str, Any], folder: Path) -> float:
    """The stored facts match the file, whose header matches its length; its duration."""
    content = (folder / recording["file"]).read_bytes()
    assert hashlib.sha256(content).hexdigest() == recording["sha256"]
    assert len(content) == recording["size"]
    with wave.open(str(folder / recording["file"])) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 48000, 2)
        assert HEADER_BYTES + wav.getnframes() * 4 == len(content)
        seconds = wav.getnframes() / wav.getframerate()
    assert abs(seconds - recording["duration"]) < 0.001
    return seconds


async def echo_call(server: Server, token: str, tone: int) -> tuple[RealSocket, ClientPeer, dict]:
    """An operator's echo call with connected media, over a real WebSocket."""
    client, peer = await RealSocket.open(server), ClientPeer(tone)
    answer = await client.offer(token, await peer.offer(), mode="echo")
    await peer.accept(answer["data"]["sdp"])
    await peer.wait_connected()
    await client.expect("event", "media.connected")
    return client, peer, answer


async def start_recording(server: Server, token: str, call_id: str) -> dict[str, Any]:
    for path, body in (
        (f"/api/calls/{call_id}/consent", {"granted": True, "policy": "1"}),
        (f"/api/calls/{call_id}/record", None),
    ):
        status, answer, _ = await asyncio.to_thread(server.request, "POST", path, token, body)
        assert status == 201, answer
    return answer


def test_it_repairs_a_wav_whose_header_lags_its_data(tmp_path: Path) -> None:
    writer = WavWriter(tmp_path / "torn.wav")
    writer.append(b"\x01\x00\x02\x00" * 4800)  # 0.1 s, header patched
    writer.file.write(b"\x03\x00\x04\x00" * 9600 + b"\x05\x00")  # 0.2 s more + a torn frame
    writer.file.close()  # killed before the header caught up
    with wave.open(str(tmp_path / "torn.wav")) as before:
        assert before.getnframes() == 4800
    result = repair_wav(tmp_path / "torn.wav")
    with wave.open(str(tmp_path / "torn.wav")) as after:
        assert after.getnframes() == 14400
        assert after.readframes(14400)[-4:] == b"\x03\x00\x04\x00"
    content = (tmp_path / "torn.wav").read_bytes()
    assert result.size_bytes == len(content) == HEADER_BYTES + 14400 * 4
    assert result.sha256 == hashlib.sha256(content).hexdigest()
    assert result.duration_s == pytest.approx(0.3)
    (tmp_path / "junk.wav").write_bytes(b"not a wav")
    with pytest.raises(ValueError):
        repair_wav(tmp_path / "junk.wav")


async def test_it_reconciles_what_a_killed_server_left_open(tmp_path: Path) -> None:
    env = {"CALLBRIDGE_RING_TIMEOUT_S": "300"}
    with running_server(tmp_path, **env) as server:
        token = (await asyncio.to_thread(server.manage, "createapitoken", "t", "--quiet")).strip()
        _, session, _ = await asyncio.to_thread(
            server.request, "POST", "/api/sessions", token, {"displayName": "Ada"}
        )
        status, ringing, _ = await asyncio.to_thread(
            server.request, "POST", "/api/calls", session["sessionToken"], {}
        )
        assert (status, ringing["state"]) == (201, "ringing")
        client, peer, answer = await echo_call(server, token, 440)
        try:
            recording = await start_recording(server, token, answer["callSid"])
            await asyncio.sleep(1.2)
            assert server.process is not None
            server.process.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(server.process.wait, 10) == -signal.SIGKILL
        finally:
            await peer.close()
            await client.close()
    left = await stored_calls(server)
    assert {c["id"]: c["state"] for c in left.values()} == {
        ringing["callID"]: "ringing",
        answer["callSid"]: "active",
    }
    assert left[answer["callSid"]]["recordings"][0]["state"] == "recording"

    with running_server(tmp_path, **env) as restarted:
        status, user_view, _ = await asyncio.to_thread(
            restarted.request, "GET", f"/api/calls/{ringing['callID']}", token
        )
        assert (status, user_view["state"], user_view["endReason"]) == (
            200,
            "cancelled",
            "server_restart",
        )
        fresh = await RealSocket.open(restarted)
        try:
            assert (await fresh.register(session["sessionToken"]))["data"]["calls"] == []
        finally:
            await fresh.close()
        calls = await stored_calls(restarted)

    for call_id, state in ((ringing["callID"], "cancelled"), (answer["callSid"], "ended")):
        call = calls[call_id]
        assert (call["state"], call["reason"], call["endedBy"]) == (
            state,
            "server_restart",
            "system",
        )
        ended = [data for name, data in call["events"] if name == "call.ended"]
        assert ended == [
            {
                "from": left[call_id]["state"],
                "state": state,
                "reason": "server_restart",
                "at": "startup",
            }
        ]
        assert set(call["legs"]) == {"closed"}
    echo = calls[answer["callSid"]]
    names = [name for name, _ in echo["events"]]
    assert names[-3:] == ["call.ended", "recording.stopped", "media.closed"]
    [stored] = echo["recordings"]
    assert stored["file"] == recording["fileName"]
    assert (stored["state"], stored["reason"]) == ("finished", "server_restart")
    seconds = assert_valid_recording(stored, tmp_path / "media" / "recordings")
    assert 0.5 < seconds < 3.0  # the audio written before the kill is kept


CALLS_AT_SIGTERM = 20
RECORDED = 4


async def test_it_ends_every_call_and_recording_when_stopped_during_20_calls(
    tmp_path: Path,
) -> None:
    # One token holds every echo call here (resource caps, docs/configuration.md).
    with running_server(
        tmp_path, CALLBRIDGE_RING_TIMEOUT_S="300", CALLBRIDGE_LIMIT_ECHO_CALLS="100"
    ) as server:
        token = (await asyncio.to_thread(server.manage, "createapitoken", "t", "--quiet")).strip()
        started = time.monotonic()
        calls = []
        try:
            for first in range(0, CALLS_AT_SIGTERM, 5):  # a few at a time: ICE on 2 cores
                calls += await asyncio.gather(
                    *(echo_call(server, token, 300 + 20 * n) for n in range(first, first + 5))
                )
            print(f"{CALLS_AT_SIGTERM} echo calls connected in {time.monotonic() - started:.1f} s")
            recordings = [
                await start_recording(server, token, answer["callSid"])
                for _, _, answer in calls[:RECORDED]
            ]
            await calls[-1][1].hears(300 + 20 * (CALLS_AT_SIGTERM - 1))  # media really flows
            assert server.process is not None
            cpu_before = server_cpu_s(server)
            await asyncio.sleep(2.0)
            print(
                f"server CPU with {CALLS_AT_SIGTERM} legs: "
                f"{(server_cpu_s(server) - cpu_before) / 2.0:.0%} of a core"
            )
            readers = [
                asyncio.create_task(client.read_until_closed(within=30)) for client, _, _ in calls
            ]
            server.process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            exit_code = await asyncio.to_thread(server.process.wait, 30)
            print(f"stopped in {time.monotonic() - stopping:.1f} s")
            told = [
                [
                    (m["callSid"], m["data"]["reason"])
                    for m in messages
                    if m["type"] == "event" and m["data"]["name"] == "call.ended"
                ]
                for messages in await asyncio.gather(*readers)
            ]
        finally:
            for client, peer, _ in calls:
                await peer.close()
                with contextlib.suppress(Exception):
                    await client.close()
        log = server.log.read_text()
        assert exit_code == 0, log
        assert "Traceback" not in log
        stored = await stored_calls(server)

    assert len(stored) == CALLS_AT_SIGTERM
    # Each client heard why its call ended before the server closed its socket.
    assert told == [[(answer["callSid"], "server_restart")] for _, _, answer in calls]
    for call in stored.values():
        assert (call["state"], call["reason"], call["endedBy"]) == (
            "ended",
            "server_restart",
            "system",
        ), call
        assert [data["at"] for name, data in call["events"] if name == "call.ended"] == ["shutdown"]
        assert call["legs"] == ["closed"]
    folder = tmp_path / "media" / "recordings"
    for started_recording in recordings:
        [row] = [
            r
            for call in stored.values()
            for r in call["recordings"]
            if r["file"] == started_recording["fileName"]
        ]
        assert (row["state"], row["reason"]) == ("finished", "shutdown")
        assert assert_valid_recording(row, folder) > 1.5


def server_cpu_s(server: Server) -> float:
    """User + system CPU seconds the server process has used."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
