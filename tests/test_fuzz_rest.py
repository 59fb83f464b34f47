"""Bad input against a real `manage.py serve`.

Schemathesis against /api/schema/: every REST operation, with schema-conforming and
schema-violating inputs, as each kind of caller (API token, end-user session token, staff
cookie + CSRF, nobody).

Every answer must be documented (status, content type, body schema), carry a contract
error code when it is an error (never HANDLER_ERROR, never a traceback), and an error
must change no record. Afterwards the server still answers and its log has no traceback.

Oversize HTTP bodies and WebSocket frames go to the same server.

Example counts are bounded for CI; `CALLBRIDGE_FUZZ_SCALE=N` runs N times as many.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import given
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.fuzzing import CONTRACT_CODES, fuzz_settings, timeout_s
from tests.support.live_server import Server, running_server
from tests.support.resources import open_fds, udp_sockets

pytestmark = [pytest.mark.daphne, pytest.mark.timeout(timeout_s(240))]

RECORD_TABLES = (
    "calls_call",
    "calls_leg",
    "calls_callevent",
    "calls_recording",
    "calls_recordingconsent",
    "calls_endusersession",
    "calls_apitoken",
    "calls_callnotesrevision",
)
KINDS = ("api_token", "session_token", "staff_cookie", "nobody")


@dataclass
class Credentials:
    api_token: str
    session_token: str
    session_id: str
    staff_cookie: str
    csrf_token: str
    call_ids: list[str]

    def headers(self, kind: str) -> dict[str, str]:
        if kind == "api_token":
            return {"Authorization": f"Bearer {self.api_token}"}
        if kind == "session_token":
            return {"Authorization": f"Bearer {self.session_token}"}
        if kind == "staff_cookie":
            return {"Cookie": self.staff_cookie, "X-CSRFToken": self.csrf_token}
        return {}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    fixed = {
        # Floods are tested elsewhere; here every request must reach its handler.
        "CALLBRIDGE_RATE_LIMIT_PRINCIPAL": "100000/min",
        "CALLBRIDGE_RATE_LIMIT_IP": "100000/min",
        # No deadline may end a call mid-run: only requests change records here.
        "CALLBRIDGE_RING_TIMEOUT_S": "3600",
        "CALLBRIDGE_MEDIA_GRACE_S": "3600",
        "CALLBRIDGE_ICE_TIMEOUT_S": "300",
    }
    with running_server(tmp_path_factory.mktemp("fuzz-rest"), **fixed) as server:
        yield server


def staff_login(server: Server) -> tuple[str, str]:
    """Log in through the admin's own form, as a browser does; returns (Cookie, CSRF token)."""
    printed = server.manage("demo_operator")
    password = re.search(r"password\s+(\S+)", printed)
    assert password, printed
    form = requests.get(f"{server.url}/admin/login/", timeout=10)
    csrf = form.cookies["csrftoken"]
    hidden = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert hidden
    login = requests.post(
        f"{server.url}/admin/login/?next=/admin/",
        data={
            "username": "operator",
            "password": password.group(1),
            "csrfmiddlewaretoken": hidden.group(1),
        },
        headers={"Cookie": f"csrftoken={csrf}"},
        allow_redirects=False,
        timeout=10,
    )
    assert login.status_code == 302, login.text[:500]
    return f"csrftoken={csrf}; sessionid={login.cookies['sessionid']}", csrf


@pytest.fixture(scope="module")
def credentials(fuzz_server: Server) -> Credentials:
    api_token = fuzz_server.manage("createapitoken", "fuzz", "--quiet").strip()
    status, session, _ = fuzz_server.request("POST", "/api/sessions", api_token, {})
    assert status == 201, session
    calls = []
    for body in ({}, {"mode": "echo"}):
        status, call, _ = fuzz_server.request("POST", "/api/calls", session["sessionToken"], body)
        assert status == 201, call
        calls.append(call["callID"])
    cookie, csrf = staff_login(fuzz_server)
    return Credentials(
        api_token, session["sessionToken"], session["sessionId"], cookie, csrf, calls
    )


@pytest.fixture(scope="module")
def rest_schema(fuzz_server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/api/schema/")


_turn = itertools.count()


def records(server: Server) -> dict[str, int]:
    with sqlite3.connect(
        f"file:{server.env['CALLBRIDGE_DATA_DIR']}/db.sqlite3?mode=ro", uri=True
    ) as db:
        return {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in RECORD_TABLES
        }


def point_at_real_records(case: Any, credentials: Credentials) -> None:
    """Every other example acts on a real call / session, so handlers run past the lookup."""
    turn = next(_turn)
    if turn % 2:
        return
    call_id = credentials.call_ids[turn // 2 % len(credentials.call_ids)]
    if case.path_parameters and "callID" in case.path_parameters:
        case.path_parameters["callID"] = call_id
    if isinstance(case.body, dict):
        for key in ("callID", "CallID"):
            if key in case.body:
                case.body[key] = call_id
        if "sessionId" in case.body:
            case.body["sessionId"] = credentials.session_id


def check_answer(case: Any, server: Server, credentials: Credentials) -> None:
    point_at_real_records(case, credentials)
    for kind in KINDS:  # the same input from each kind of caller
        before = records(server)
        response = case.call(base_url=server.url, headers=credentials.headers(kind), timeout=20)
        where = (kind, case.method, case.formatted_path, response.status_code, case.body)
        assert response.status_code < 500 or response.status_code == 502, (where, response.text)
        assert "Traceback" not in response.text, where
        if response.status_code >= 400:
            body = response.json()
            assert body["code"] in CONTRACT_CODES, (where, body)
            assert isinstance(body["message"], str), (where, body)
            assert isinstance(body["recoverable"], bool), (where, body)
            expected = dict(before)
            if body["code"] == "CONSENT_REQUIRED":  # by design: asks the parties (an event)
                expected["calls_callevent"] += 1
            assert records(server) == expected, (where, body)
        case.validate_response(
            response,
            checks=[
                openapi_checks.status_code_conformance,
                openapi_checks.content_type_conformance,
                openapi_checks.response_schema_conformance,
            ],
        )


@pytest.mark.parametrize(
    ("mode", "examples"), [(GenerationMode.POSITIVE, 3), (GenerationMode.NEGATIVE, 2)]
)
def test_it_answers_every_endpoint_within_the_contract(
    baseline_fds: int,
    rest_schema: Any,
    fuzz_server: Server,
    credentials: Credentials,
    mode: GenerationMode,
    examples: int,
) -> None:
    """Each operation in turn (so every one is covered): inputs that fit the schema
    (positive) and inputs that break it (negative), from every kind of caller."""
    operations = [result.ok() for result in rest_schema.get_all_operations()]
    # Every operation of the schema (its paths are pinned by tests/test_openapi.py).
    methods = {"get", "put", "post", "patch", "delete"}
    in_schema = sum(len(methods & set(item)) for item in rest_schema.raw_schema["paths"].values())
    assert len(operations) == in_schema >= 35

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @fuzz_settings(examples=examples)
        def fuzz(case: Any) -> None:
            check_answer(case, fuzz_server, credentials)

        fuzz()


# --- oversize bodies and frames ----------------------------------------------------------------
@pytest.mark.parametrize("size", [300 * 1024, 8 * 1024 * 1024])
def test_it_refuses_oversize_bodies(
    fuzz_server: Server, credentials: Credentials, size: int
) -> None:
    """Over CALLBRIDGE_MAX_BODY_BYTES (256 KiB): INVALID_MESSAGE, nothing created."""
    before = records(fuzz_server)
    body = '{"displayName": "' + "x" * size + '"}'
    response = requests.post(
        f"{fuzz_server.url}/api/sessions",
        data=body,
        headers={"Content-Type": "application/json", **credentials.headers("api_token")},
        timeout=30,
    )
    assert response.status_code == 400, response.text[:300]
    assert response.json()["code"] == "INVALID_MESSAGE"
    assert records(fuzz_server) == before


async def test_it_refuses_oversize_frames_and_keeps_serving(
    fuzz_server: Server, credentials: Credentials
) -> None:
    """Over CALLBRIDGE_WS_MAX_MESSAGE_BYTES (64 KiB): INVALID_MESSAGE and the socket stays;
    over daphne's own 1 MiB message limit: that socket is dropped, the server stays."""
    url = fuzz_server.url.replace("http", "ws") + "/ws/signal"
    register = json.dumps(
        {"type": "register", "sessionId": "", "authToken": credentials.session_token}
    )
    async with connect(url, max_size=None, open_timeout=10) as socket:
        await socket.send("x" * (100 * 1024))
        async with asyncio.timeout(10):
            reply = json.loads(await socket.recv())
        assert (
            reply["data"]["code"] == "INVALID_MESSAGE" and "too large" in reply["data"]["message"]
        )
        await socket.send(register)
        async with asyncio.timeout(10):
            assert json.loads(await socket.recv())["data"]["name"] == "registered"
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                # The server may drop the socket while the frame is still being sent.
                await socket.send("x" * (2 * 1024 * 1024))
                await socket.recv()
        assert closed.value.rcvd is None or closed.value.rcvd.code == 1009  # dropped or 1009
    async with connect(url, open_timeout=10) as again:
        await again.send(register)
        async with asyncio.timeout(10):
            assert json.loads(await again.recv())["data"]["name"] == "registered"


@pytest.fixture(scope="module")
def baseline_fds(fuzz_server: Server, credentials: Credentials) -> int:
    """The server's open file descriptors once warmed up (before any fuzzing)."""
    assert fuzz_server.process is not None
    return open_fds(fuzz_server.process.pid)


# Daphne runs sync views in a thread pool; each thread may open its own SQLite connection
# (database, WAL and shared-memory files) the first time it is used.
THREAD_POOL_FDS = 8 * 3


def test_it_is_still_serving_and_leaked_nothing(
    fuzz_server: Server, credentials: Credentials, baseline_fds: int
) -> None:
    """Runs last in this module, after every fuzz and oversize test on the same server."""
    status, config, _ = fuzz_server.request("GET", "/api/webrtc/config", credentials.api_token)
    assert status == 200 and "iceServers" in config
    log = Path(fuzz_server.log).read_text()
    assert "Traceback" not in log, log[-3000:]
    assert fuzz_server.process is not None
    assert udp_sockets(fuzz_server.process.pid) == 0  # no peer connection left open
    assert open_fds(fuzz_server.process.pid) <= baseline_fds + THREAD_POOL_FDS
