"""A real `manage.py serve` (daphne) process: the README tour, the ring timer, static files,
and two aiortc clients talking through it over real WebSockets and REST."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import sqlite3
import subprocess
import time
import uuid
import wave
from pathlib import Path
from typing import Any

import pytest

from tests.support.live_server import Server, running_server
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.real_socket import RealSocket

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.daphne


def readme_tour() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A 5-minute tour", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README tour has no sh block"
    return match.group(1)


def test_it_runs_the_readme_tour_verbatim(server: Server) -> None:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_tour()],
        cwd=ROOT,
        env={**server.env, "CB": server.url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith(("{", "["))]
    config, queues, session, ringing, answered, ended, stats, refused = lines
    assert config["turn"]["enabled"] is False
    assert [queue["queue"] for queue in queues] == ["default"]
    assert session["url"].startswith(server.url + "/talk/?token=cbs_")
    assert [call["state"] for call in ringing] == ["ringing"]
    assert answered["state"] == "active"
    assert (ended["state"], ended["endReason"], ended["endedBy"]["role"]) == (
        "ended",
        "hangup",
        "user",
    )
    assert (stats["queue"], stats["joined"], stats["answered"], stats["waiting"]) == (
        "default",
        1,
        1,
        0,
    )
    assert stats["averageWaitS"] is not None and stats["averageHandleS"] is not None
    assert refused["code"] == "CALL_STATE"
    page_status, page, _ = server.request("GET", session["url"].removeprefix(server.url))
    assert page_status == 200 and "Ada" in page


def stored_state(database: Path, row_id: str) -> str:
    with contextlib.closing(sqlite3.connect(database, timeout=5)) as db:
        (state,) = db.execute("SELECT state FROM calls_call WHERE id = ?", (row_id,)).fetchone()
    return str(state)


def test_it_misses_unanswered_calls_with_nobody_polling(server: Server) -> None:
    token = server.manage("createapitoken", "ring-test", "--quiet").strip()
    _, session, _ = server.request("POST", "/api/sessions", token, {"displayName": "Bob"})
    status, call, _ = server.request("POST", "/api/calls", session["sessionToken"], {})
    assert (status, call["state"]) == (201, "ringing")
    # The ring timeout is 2 s. Nothing touches the server meanwhile: watch its database.
    database = Path(server.env["CALLBRIDGE_DATA_DIR"]) / "db.sqlite3"
    row_id = uuid.UUID(call["callID"]).hex  # how Django keeps a UUID in SQLite
    deadline = time.monotonic() + 10
    while stored_state(database, row_id) == "ringing":
        assert time.monotonic() < deadline, "the ring timer never fired"
        time.sleep(0.1)
    _, after, _ = server.request("GET", f"/api/calls/{call['callID']}", token)
    assert (after["state"], after["endReason"], after["endedBy"]["role"]) == (
        "missed",
        "missed",
        "system",
    )


def test_it_streams_call_records_and_timelines_from_daphne(server: Server) -> None:
    """Under ASGI the export is streamed (chunked, no length) and complete."""
    token = server.manage("createapitoken", "cdr", "--quiet").strip()
    _, session, _ = server.request("POST", "/api/sessions", token, {"displayName": "Cy"})
    _, call, _ = server.request("POST", "/api/calls", session["sessionToken"], {})
    server.request("POST", f"/api/calls/{call['callID']}/hangup", session["sessionToken"])
    status, body, headers = server.request("GET", "/api/calls/export?format=jsonl", token)
    assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
    assert "Content-Length" not in headers
    records = {json.loads(line)["callID"]: json.loads(line) for line in body.splitlines()}
    assert records[call["callID"]]["endReason"] == "cancelled"
    _, timeline, _ = server.request("GET", f"/api/calls/{call['callID']}/events", token)
    assert [event["record"] for event in timeline][-1] == "call.ended"
    listing, refused, _ = server.request("GET", "/api/recordings", token)
    assert (listing, refused["code"]) == (403, "FORBIDDEN")  # no `can_listen`


def test_it_serves_pages_static_files_and_json_errors(server: Server) -> None:
    status, page, _ = server.request("GET", "/talk/?token=cbs_unknown")
    assert status == 401
    stylesheet = re.search(r'href="(/static/[^"]+\.css)"', page)
    assert stylesheet and re.search(r"app\.[0-9a-f]{12}\.css", stylesheet.group(1))
    css_status, css, headers = server.request("GET", stylesheet.group(1))
    assert css_status == 200 and "font-family" in css
    assert "max-age" in headers.get("Cache-Control", "")
    login_status, login, _ = server.request("GET", "/admin/login/")
    assert login_status == 200 and "callbridge" in login
    missing_status, missing, _ = server.request("GET", "/api/nothing")
    assert (missing_status, missing["code"]) == (404, "NOT_FOUND")


async def test_it_bridges_two_aiortc_clients_through_the_real_server(server: Server) -> None:
    import websockets

    token = (await asyncio.to_thread(server.manage, "createapitoken", "bridge", "--quiet")).strip()
    _, session, _ = await asyncio.to_thread(
        server.request, "POST", "/api/sessions", token, {"displayName": "Ada"}
    )
    ws_url = server.url.replace("http://", "ws://") + "/ws/signal"
    user_peer, operator_peer = ClientPeer(440), ClientPeer(880)
    try:
        async with (
            websockets.connect(ws_url, open_timeout=10) as user_connection,
            websockets.connect(ws_url, open_timeout=10) as operator_connection,
        ):
            user, operator = RealSocket(user_connection), RealSocket(operator_connection)
            await user.send(
                {
                    "type": "offer",
                    "sessionId": "",
                    "authToken": session["sessionToken"],
                    "data": {"type": "offer", "sdp": await user_peer.offer()},
                }
            )
            user_answer = await user.expect("answer")
            await user.expect("event", "call.ringing")
            operator_answer = await operator.offer(
                token, await operator_peer.offer(), callSid=user_answer["callSid"]
            )
            await user_peer.accept(user_answer["data"]["sdp"])
            await operator_peer.accept(operator_answer["data"]["sdp"])
            await user_peer.wait_connected()
            await operator_peer.wait_connected()
            await hear_each_other((user_peer, 880), (operator_peer, 440))
            await user.send({"type": "hangup", "sessionId": user_answer["sessionId"]})
            for socket_ in (user, operator):
                ended = await socket_.expect("event", "call.ended")
                assert ended["data"]["reason"] == "hangup"
    finally:
        await user_peer.close()
        await operator_peer.close()
    # The worker reports the legs closed just after the call.ended it reacts to.
    async with asyncio.timeout(5):
        while True:
            _, call, _ = await asyncio.to_thread(
                server.request, "GET", f"/api/calls/{user_answer['callSid']}", token
            )
            if all(leg["mediaState"] == "closed" for leg in call["legs"]):
                break
            await asyncio.sleep(0.1)
    assert (call["state"], call["endReason"]) == ("ended", "hangup")
    # The worker reports its legs closing after the hang-up: read as an API client would.
    async with asyncio.timeout(5):
        while sorted(leg["mediaState"] for leg in call["legs"]) != ["closed", "closed"]:
            await asyncio.sleep(0.1)
            _, call, _ = await asyncio.to_thread(
                server.request, "GET", f"/api/calls/{user_answer['callSid']}", token
            )


async def test_it_echoes_through_the_real_server_the_wago_way(server: Server) -> None:
    assert "(uvloop loop)" in server.log.read_text()  # the default event loop
    await echo_the_wago_way(server)


async def test_it_also_runs_on_pythons_own_event_loop(tmp_path: Path) -> None:
    with running_server(tmp_path, CALLBRIDGE_EVENT_LOOP="asyncio") as server:
        assert "(asyncio loop)" in server.log.read_text()
        await echo_the_wago_way(server)


async def echo_the_wago_way(server: Server) -> None:
    token = (await asyncio.to_thread(server.manage, "createapitoken", "wago", "--quiet")).strip()

    def wago(method: str, path: str, body: Any = None) -> Any:
        return server.wago(token, method, path, body)

    config = await asyncio.to_thread(wago, "GET", "/call/webrtc/config")
    call = await asyncio.to_thread(wago, "POST", "/call/make", {"mode": "echo"})
    peer = ClientPeer(1000)
    try:
        offer_sdp = await peer.offer()
        answer = await asyncio.to_thread(
            wago,
            "POST",
            "/call/webrtc/offer",
            {"callID": call["callID"], "type": "offer", "sdp": offer_sdp},
        )
        payload = answer.get("data") or answer
        await peer.accept(payload["sdp"])
        await peer.wait_connected()
        assert abs(await peer.hears(1000) - 1000) < 25
        assert config["iceServers"] == []
        await asyncio.to_thread(wago, "POST", "/call/webrtc/close", {"callID": call["callID"]})
        ended = await asyncio.to_thread(wago, "POST", "/call/hangup", {"callID": call["callID"]})
        assert ended["state"] == "ended"
    finally:
        await peer.close()


async def test_it_closes_every_peer_connection_and_recording_when_stopped(
    tmp_path: Path,
) -> None:
    import signal

    import websockets

    with running_server(tmp_path) as server:
        token = (await asyncio.to_thread(server.manage, "createapitoken", "t", "--quiet")).strip()
        peer = ClientPeer(440)
        try:
            ws_url = server.url.replace("http://", "ws://") + "/ws/signal"
            async with websockets.connect(ws_url, open_timeout=10) as connection:
                socket_ = RealSocket(connection)
                answer = await socket_.offer(token, await peer.offer(), mode="echo")
                await peer.accept(answer["data"]["sdp"])
                await peer.wait_connected()
                await socket_.expect("event", "media.connected")
                call = answer["callSid"]
                await asyncio.to_thread(
                    server.request,
                    "POST",
                    f"/api/calls/{call}/consent",
                    token,
                    {"granted": True, "policy": "1"},
                )
                status, recording, _ = await asyncio.to_thread(
                    server.request, "POST", f"/api/calls/{call}/record", token
                )
                assert status == 201, recording
                await asyncio.sleep(1.0)
                assert server.process is not None
                server.process.send_signal(signal.SIGTERM)
                exit_code = await asyncio.to_thread(server.process.wait, 20)
        finally:
            await peer.close()
        assert exit_code == 0, server.log.read_text()
        assert "Traceback" not in server.log.read_text()
        state = await asyncio.to_thread(
            server.manage,
            "shell",
            "-c",
            f"from calls.models import Leg; print(Leg.objects.get(pk='{answer['sessionId']}')"
            ".media_state)",
        )
        assert state.strip().splitlines()[-1] == "closed"  # after the shell's own notices
        facts = await asyncio.to_thread(
            server.manage,
            "shell",
            "-c",
            "from calls.models import Recording; "
            f"r = Recording.objects.get(pk='{recording['recordingID']}'); "
            "print(r.state, r.stop_reason, r.sha256, r.size_bytes)",
        )
        state_, reason, sha256, size = facts.strip().splitlines()[-1].split()
        assert (state_, reason) == ("finished", "shutdown")
        wav = tmp_path / "media" / "recordings" / recording["fileName"]
        content = wav.read_bytes()
        assert hashlib.sha256(content).hexdigest() == sha256 and len(content) == int(size)
        with wave.open(str(wav)) as finished:  # a valid header, about a second of audio
            assert 0.8 < finished.getnframes() / finished.getframerate() < 3.0
