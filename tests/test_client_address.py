"""The client address trust model, and admin login lockouts, against a real daphne
(issue 12, items 5 and 8).

The server runs as docs/deploy.md says (`serve --proxy-headers`) with 127.0.0.1 as its
trusted proxy (nginx on the same host). Requests from 127.0.0.1 come "through the proxy";
requests from other loopback addresses (127.0.0.2 …) are clients connecting directly,
whose X-Forwarded-For must be ignored. Each test uses its own source address, so the
per-address limits of one do not touch another.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import websockets

from tests.support.admin_form import admin_login, http_from
from tests.support.live_server import Server, running_server

pytestmark = pytest.mark.daphne

PRIVATE_FOLDERS = ("", "media", "media/recordings")


@dataclass
class Setup:
    server: Server
    data_dir: Path
    api_token: str
    operator_password: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    data_dir = tmp_path_factory.mktemp("trust") / "data"
    for folder in PRIVATE_FOLDERS:  # an install made before: world-readable folders
        (data_dir / folder).mkdir(parents=True, exist_ok=True)
        (data_dir / folder).chmod(0o755)
    with running_server(
        data_dir,
        serve_args=("--proxy-headers",),
        CALLBRIDGE_TRUSTED_PROXIES="127.0.0.1",
        CALLBRIDGE_RATE_LIMIT_IP="20/min",
        CALLBRIDGE_WS_RATE_LIMIT_IP="20/min",
        CALLBRIDGE_LOGIN_FAILURE_LIMIT="3",
    ) as server:
        printed = server.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; from calls.models import ApiToken\n"
            "for name in ('operator', 'second', 'third'):\n"
            "    get_user_model().objects.create_user(\n"
            "        name, password=name + '-Password-1', is_staff=True, is_superuser=True)\n"
            "print(ApiToken.create('trust')[1])",
        )
        yield Setup(server, data_dir, printed.split()[-1], "operator-Password-1")


def api(
    setup: Setup,
    path: str,
    forwarded_for: str,
    source: str,
    token: str = "",
    body: dict | None = None,
) -> requests.Response:
    return http_from(source).request(
        "POST" if body is not None else "GET",
        setup.server.url + path,
        headers={
            "Authorization": f"Bearer {token or setup.api_token}",
            "X-Forwarded-For": forwarded_for,
        },
        json=body,
        timeout=10,
    )


def consent_ip(setup: Setup, forwarded_for: str, source: str) -> str:
    """Place a call as a new end user and consent with `forwarded_for`; the stored ip."""
    server = setup.server
    _, session, _ = server.request("POST", "/api/sessions", setup.api_token, {})
    status, call, _ = server.request("POST", "/api/calls", session["sessionToken"], {})
    assert status == 201, call
    path = f"/api/calls/{call['callID']}/consent"
    body = {"granted": True, "policy": "1"}
    answer = api(setup, path, forwarded_for, source, session["sessionToken"], body)
    assert answer.status_code == 201, answer.text
    with sqlite3.connect(setup.data_dir / "db.sqlite3") as database:
        (ip,) = database.execute(
            "SELECT ip FROM calls_recordingconsent WHERE call_id = ?",
            (call["callID"].replace("-", ""),),
        ).fetchone()
    return ip


def limited_within(setup: Setup, forwarded_fors: list[str], source: str) -> bool:
    """Whether the per-IP REST limit answered 429 to one of these requests."""
    return any(
        api(setup, "/api/webrtc/config", forwarded, source).status_code == 429
        for forwarded in forwarded_fors
    )


async def websocket_limited(server: Server, forwarded_fors: list[str], source: str) -> bool:
    """Open a socket per header value and send one message before signing in (both count
    against the client address): whether one was refused RATE_LIMITED."""
    url = server.url.replace("http://", "ws://") + "/ws/signal"
    for forwarded in forwarded_fors:
        async with websockets.connect(
            url,
            open_timeout=5,
            additional_headers={"X-Forwarded-For": forwarded},
            local_addr=(source, 0),
        ) as connection:
            async with asyncio.timeout(5):
                try:
                    await connection.send(json.dumps({"type": "register", "authToken": "cbk_x"}))
                    reply = json.loads(await connection.recv())
                except websockets.ConnectionClosed as closed:
                    if closed.rcvd and closed.rcvd.code == 4429:  # the handshake was refused
                        return True
                    raise
            if reply["data"]["code"] == "RATE_LIMITED":
                return True
    return False


# --- Clients connecting directly (not a trusted proxy): headers are ignored --------------


def test_it_stores_the_connecting_address_in_consents_whatever_the_header_says(
    setup: Setup,
) -> None:
    assert consent_ip(setup, "203.0.113.7", source="127.0.0.2") == "127.0.0.2"


def test_it_counts_forged_forwarded_for_requests_against_the_real_address(setup: Setup) -> None:
    forged = [f"198.51.100.{n}" for n in range(25)]
    assert limited_within(setup, forged, source="127.0.0.3")


async def test_it_counts_forged_forwarded_for_sockets_against_the_real_address(
    setup: Setup,
) -> None:
    forged = [f"198.51.100.{n}" for n in range(15)]
    assert await websocket_limited(setup.server, forged, source="127.0.0.4")


def test_it_locks_a_username_out_after_repeated_wrong_passwords(setup: Setup) -> None:
    server, client = setup.server, http_from("127.0.0.5")

    def login(username: str, password: str, **headers: str) -> int:
        return admin_login(server, username, password, headers, client).status_code

    assert [login("operator", "wrong") for _ in range(3)] == [200, 200, 429]
    locked = admin_login(server, "operator", setup.operator_password, client=client)
    assert locked.status_code == 429  # even with the right password
    assert "Too many failed sign-ins" in locked.text and "operator" in locked.text
    # A forged address does not escape the lockout.
    forged = {"X-Forwarded-For": "203.0.113.99"}
    assert login("operator", setup.operator_password, **forged) == 429
    # Another username from the same address is not locked (one NAT, many operators).
    assert login("second", "wrong") == 200
    assert login("second", "second-Password-1") == 302


def test_it_forgets_failed_logins_after_a_successful_one(setup: Setup) -> None:
    client = http_from("127.0.0.6")
    for _ in range(2):
        for _ in range(2):
            assert admin_login(setup.server, "third", "wrong", client=client).status_code == 200
        right = admin_login(setup.server, "third", "third-Password-1", client=client)
        assert right.status_code == 302


# --- Through the trusted proxy (127.0.0.1): the right-most address it did not write -----


def test_it_stores_the_right_most_untrusted_address_from_a_trusted_proxy(setup: Setup) -> None:
    # The client wrote "198.51.100.1"; the proxy appended the address it saw.
    assert consent_ip(setup, "198.51.100.1, 203.0.113.9", source="127.0.0.1") == "203.0.113.9"
    # Trusted hops on the right are skipped.
    chain = "198.51.100.1, 203.0.113.10, 127.0.0.1"
    assert consent_ip(setup, chain, source="127.0.0.1") == "203.0.113.10"


def test_it_limits_each_real_client_behind_the_proxy(setup: Setup) -> None:
    forged_left = [f"198.51.100.{n}, 203.0.113.20" for n in range(25)]
    assert limited_within(setup, forged_left, source="127.0.0.1")
    # Another client behind the same proxy has its own allowance.
    other = api(setup, "/api/webrtc/config", "203.0.113.21", source="127.0.0.1")
    assert other.status_code == 200


def test_it_locks_out_per_client_address_behind_the_proxy(setup: Setup) -> None:
    server, password = setup.server, setup.operator_password

    def login(password: str, forwarded_for: str) -> int:
        headers = {"X-Forwarded-For": forwarded_for}
        return admin_login(server, "operator", password, headers).status_code

    assert [login("wrong", "203.0.113.30") for _ in range(3)] == [200, 200, 429]
    assert login(password, "203.0.113.30") == 429
    assert login(password, "198.51.100.1, 203.0.113.30") == 429  # forged left part
    assert login(password, "203.0.113.31") == 302  # the operator from elsewhere


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("127.0.0.1", [], "127.0.0.1"),  # the proxy itself, no header
        ("127.0.0.1", ["198.51.100.1, 203.0.113.9"], "203.0.113.9"),
        ("127.0.0.1", ["198.51.100.1", "203.0.113.9"], "203.0.113.9"),  # two header lines
        ("127.0.0.1", ["10.0.0.5, 127.0.0.1"], "10.0.0.5"),
        ("127.0.0.1", ["not-an-ip, 203.0.113.9"], "203.0.113.9"),
        ("127.0.0.1", ["203.0.113.9, not-an-ip"], "127.0.0.1"),  # garbage: stop at the proxy
        ("127.0.0.1", ["2001:db8::7"], "2001:db8::7"),
        ("::ffff:127.0.0.1", ["203.0.113.9"], "203.0.113.9"),  # IPv4 on a dual-stack socket
        ("192.0.2.50", ["203.0.113.9"], "192.0.2.50"),  # not a trusted proxy
    ],
)
def test_it_reads_forwarded_for_from_the_right(peer: str, header: list[str], client: str) -> None:
    from callbridge.client_address import parse_networks, resolve

    assert resolve(peer, header, parse_networks(["127.0.0.1", "::1"])) == client


# --- Private files ----------------------------------------------------------------------


def test_it_closes_the_folders_of_an_existing_install(setup: Setup) -> None:
    for folder in PRIVATE_FOLDERS:
        mode = stat.S_IMODE((setup.data_dir / folder).stat().st_mode)
        assert mode & 0o077 == 0, (folder, oct(mode))
