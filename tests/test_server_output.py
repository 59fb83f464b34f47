"""What a real `manage.py serve` prints and writes (issue 12, items 4 and 8).

One real bridged call through the server at its highest verbosity (access log on,
LOG_LEVEL=DEBUG, asyncio debug): the end user's page loaded with `?token=`, TURN
credentials, bad tokens over REST and WebSocket, an admin login with a wrong password,
consents, a recording, a hang-up. Then the process's whole output is read for secrets,
and every file and folder it wrote is checked for group/other permissions.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.admin_form import admin_login, demo_operator_password
from tests.support.live_server import Server, running_server
from tests.support.media_peers import ClientPeer
from tests.support.real_socket import RealSocket

pytestmark = pytest.mark.daphne

TURN_SECRET = "output-test-turn-shared-secret-9f3e"
WRONG_PASSWORD = "Wrong-Password-Zq81xv"
# A token's public part is `cbk_`/`cbs_` + 8 characters; anything longer is secret.
TOKEN_SECRET = re.compile(r"cb[ks]_[A-Za-z0-9]{8}[A-Za-z0-9_\-]")


@dataclass
class Outcome:
    output: str = ""
    secrets: dict[str, str] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)  # path -> st_mode, while and after
    access_ips: list[str] = field(default_factory=list)  # recording access rows


def record_modes(root: Path, outcome: Outcome) -> None:
    for path in [root, *root.rglob("*")]:
        if path.name != "serve.log":  # opened by the test, not the server
            outcome.modes[str(path)] = path.lstat().st_mode


async def wait_until_finished(server: Server, token: str, call_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            _, call, _ = await asyncio.to_thread(
                server.request, "GET", f"/api/calls/{call_id}", token
            )
            if (call.get("recording") or {}).get("state") == "finished":
                return call
            await asyncio.sleep(0.2)


async def a_recorded_call(server: Server, outcome: Outcome, data_dir: Path) -> None:
    api_token = (await asyncio.to_thread(server.manage, "createapitoken", "out", "--quiet")).strip()
    _, session, _ = await asyncio.to_thread(
        server.request, "POST", "/api/sessions", api_token, {"displayName": "Ada"}
    )
    session_token = session["sessionToken"]
    outcome.secrets.update(api_token=api_token, session_token=session_token)
    page_path = session["url"].removeprefix(server.url)
    assert page_path.startswith("/talk/?token=cbs_")
    status, _, _ = await asyncio.to_thread(server.request, "GET", page_path)
    assert status == 200
    status, config, _ = await asyncio.to_thread(
        server.request, "GET", "/api/webrtc/config", session_token
    )
    assert status == 200 and config["turn"]["enabled"] is True, config
    forged = "cbk_AAAAAAAA" + "x" * 43
    status, _, _ = await asyncio.to_thread(server.request, "GET", "/api/calls", forged)
    assert status == 401
    password = await asyncio.to_thread(demo_operator_password, server)
    outcome.secrets.update(password=password)
    refused = await asyncio.to_thread(admin_login, server, "operator", WRONG_PASSWORD)
    assert refused.status_code == 200
    login = await asyncio.to_thread(admin_login, server, "operator", password)
    assert login.status_code == 302
    staff_cookie = f"sessionid={login.cookies['sessionid']}"

    ws_url = server.url.replace("http://", "ws://") + "/ws/signal"
    import websockets

    user_peer, operator_peer = ClientPeer(440), ClientPeer(880)
    try:
        async with (
            # A query string on the socket's URL too: the access log must drop it.
            websockets.connect(f"{ws_url}?token={session_token}", open_timeout=10) as user_ws,
            websockets.connect(ws_url, open_timeout=10) as operator_ws,
            websockets.connect(ws_url, open_timeout=10) as guesser_ws,
        ):
            guesser = RealSocket(guesser_ws)
            await guesser.send({"type": "register", "sessionId": "", "authToken": forged})
            assert (await guesser.expect("error"))["data"]["code"] == "UNAUTHORIZED"
            user, operator = RealSocket(user_ws), RealSocket(operator_ws)
            user_answer = await user.offer(session_token, await user_peer.offer())
            call_id = user_answer["callSid"]
            operator_answer = await operator.offer(
                api_token, await operator_peer.offer(), callSid=call_id
            )
            await user_peer.accept(user_answer["data"]["sdp"])
            await operator_peer.accept(operator_answer["data"]["sdp"])
            await user_peer.wait_connected()
            await operator_peer.wait_connected()
            assert abs(await operator_peer.hears(440) - 440) < 25
            for token in (session_token, api_token):
                status, answer, _ = await asyncio.to_thread(
                    server.request,
                    "POST",
                    f"/api/calls/{call_id}/consent",
                    token,
                    {"granted": True, "policy": "1"},
                )
                assert status == 201, answer
            status, recording, _ = await asyncio.to_thread(
                server.request, "POST", f"/api/calls/{call_id}/record", api_token
            )
            assert status == 201, recording
            await asyncio.sleep(1.0)
            record_modes(data_dir, outcome)  # the packet capture exists now
            status, _, _ = await asyncio.to_thread(
                server.request, "POST", f"/api/calls/{call_id}/record/stop", api_token
            )
            assert status == 200
            await user.send({"type": "hangup", "sessionId": user_answer["sessionId"]})
            await operator.expect("event", "call.ended")
    finally:
        await user_peer.close()
        await operator_peer.close()
    await wait_until_finished(server, api_token, call_id)
    record_modes(data_dir, outcome)  # the rendered WAV
    # An auditor listens through the proxy (127.0.0.1, trusted): the access row keeps the
    # address the proxy saw, not the one the client wrote on the left.
    listened = await asyncio.to_thread(
        requests.get,
        f"{server.url}/admin/calls/recording/{recording['recordingID']}/audio/",
        headers={"Cookie": staff_cookie, "X-Forwarded-For": "198.51.100.1, 203.0.113.40"},
        timeout=10,
    )
    assert listened.status_code == 200 and listened.content.startswith(b"RIFF")
    with sqlite3.connect(data_dir / "db.sqlite3") as database:
        outcome.access_ips = [
            ip for (ip,) in database.execute("SELECT ip FROM calls_recordingaccess")
        ]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    data_dir = tmp_path_factory.mktemp("output") / "data"  # the server creates it
    result = Outcome(secrets={"TURN secret": TURN_SECRET})
    with running_server(
        data_dir,
        # As docs/deploy.md runs it behind nginx on the same host.
        serve_args=("-v", "3", "--access-log", "-", "--proxy-headers"),
        LOG_LEVEL="DEBUG",
        CALLBRIDGE_TURN_URLS="turn:127.0.0.1:3478?transport=udp",
        CALLBRIDGE_TURN_SECRET=TURN_SECRET,
        CALLBRIDGE_RING_TIMEOUT_S="30",
    ) as server:
        asyncio.run(a_recorded_call(server, result, data_dir))
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        result.output = server.log.read_text()
    result.secrets["SECRET_KEY"] = (data_dir / "secret_key").read_text().strip()  # generated
    return result


def test_it_prints_no_secret_at_the_highest_verbosity(outcome: Outcome) -> None:
    assert "GET /api/webrtc/config" in outcome.output  # the log is the whole run's
    assert not TOKEN_SECRET.findall(outcome.output)
    for name, secret in outcome.secrets.items():
        assert secret not in outcome.output, f"the {name} is in the server's output"
    assert WRONG_PASSWORD not in outcome.output


def test_it_logs_paths_without_query_strings(outcome: Outcome) -> None:
    access = [line for line in outcome.output.splitlines() if re.search(r'\] "[A-Z]+ /', line)]
    requests = [line.split('"')[1] for line in access]
    assert "GET /talk/" in requests  # the end-user page, without its ?token=
    assert "WSCONNECT /ws/signal" in requests
    assert "POST /admin/login/" in requests
    assert not [request for request in requests if "?" in request]
    assert "?token=" not in outcome.output


def test_it_keeps_recordings_captures_and_the_database_private(outcome: Outcome) -> None:
    names = [Path(path).name for path in outcome.modes]
    assert {"db.sqlite3", "secret_key", "recordings"} <= set(names)
    assert any(name.endswith(".wav.capture") for name in names)  # seen while recording
    assert any(name.endswith(".wav") for name in names)  # rendered by the child process
    shared = {
        path: oct(stat.S_IMODE(mode))
        for path, mode in outcome.modes.items()
        if stat.S_IMODE(mode) & 0o077
    }
    assert shared == {}


def test_it_logs_recording_access_from_the_address_the_proxy_saw(outcome: Outcome) -> None:
    assert outcome.access_ips == ["203.0.113.40"]


def test_it_masks_secrets_in_anything_logged(tmp_path: Path) -> None:
    """The net under every logger: a token or a configured secret that reaches the console
    (an exception's message, a third-party debug line) is masked."""
    token = "cbs_AbCdEfGh" + "s3cr3t" * 7
    script = (
        "import logging; from django.conf import settings\n"
        "try:\n"
        f"    raise ValueError('bad token {token}')\n"
        "except ValueError:\n"
        "    logging.getLogger('aioice').exception('turn %s key %s',"
        " settings.CALLBRIDGE_TURN_SECRET, settings.SECRET_KEY)\n"
    )
    secret_key = "output-test-secret-key-" + "Zx9" * 15
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CALLBRIDGE_", "DJANGO_"))},
        "CALLBRIDGE_DATA_DIR": str(tmp_path),
        "SECRET_KEY": secret_key,
        "CALLBRIDGE_TURN_URLS": "turn:127.0.0.1:3478",
        "CALLBRIDGE_TURN_SECRET": TURN_SECRET,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    printed = result.stdout + result.stderr
    assert "bad token cbs_AbCdEfGh…" in printed  # the public prefix stays, for support
    for secret in (token, TURN_SECRET, secret_key):
        assert secret not in printed
