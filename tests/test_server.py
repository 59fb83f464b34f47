"""A real `manage.py serve` (daphne) process: the README tour, the ring timer, static files."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.daphne


@dataclass
class Server:
    url: str
    env: dict[str, str]
    log: Path

    def request(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any, dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw, status, headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            raw, status, headers = error.read(), error.code, dict(error.headers)
        kind = headers.get("Content-Type", "")
        return status, json.loads(raw) if "json" in kind else raw.decode(), headers

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("callbridge-data")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CALLBRIDGE_", "DJANGO_")) and key not in ("DATABASE_URL", "DEBUG")
    }
    env.update(CALLBRIDGE_DATA_DIR=str(data_dir), CALLBRIDGE_RING_TIMEOUT_S="2")
    port = free_port()
    running = Server(url=f"http://127.0.0.1:{port}", env=env, log=data_dir / "serve.log")
    running.manage("migrate", "--noinput")
    running.manage("collectstatic", "--noinput")
    with running.log.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"serve did not start:\n{running.log.read_text()}")
                time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


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
    config, session, ringing, answered, ended, refused = lines
    assert config["turn"]["enabled"] is False
    assert session["url"].startswith(server.url + "/talk/?token=cbs_")
    assert [call["state"] for call in ringing] == ["ringing"]
    assert answered["state"] == "active"
    assert (ended["state"], ended["endReason"], ended["endedBy"]["role"]) == (
        "ended",
        "hangup",
        "user",
    )
    assert refused["code"] == "CALL_STATE"
    page_status, page, _ = server.request("GET", session["url"].removeprefix(server.url))
    assert page_status == 200 and "Ada" in page


def test_it_misses_unanswered_calls_with_nobody_polling(server: Server) -> None:
    token = server.manage("createapitoken", "ring-test", "--quiet").strip()
    _, session, _ = server.request("POST", "/api/sessions", token, {"displayName": "Bob"})
    status, call, _ = server.request("POST", "/api/calls", session["sessionToken"], {})
    assert (status, call["state"]) == (201, "ringing")
    time.sleep(3.5)  # ring timeout is 2 s; nothing touches the server meanwhile
    _, after, _ = server.request("GET", f"/api/calls/{call['callID']}", token)
    assert (after["state"], after["endReason"], after["endedBy"]["role"]) == (
        "missed",
        "missed",
        "system",
    )


def test_it_serves_pages_static_files_and_json_errors(server: Server) -> None:
    status, page, _ = server.request("GET", "/talk/?token=cbs_unknown")
    assert status == 401
    stylesheet = re.search(r'href="(/static/[^"]+\.css)"', page)
    assert stylesheet and re.search(r"enduser\.[0-9a-f]{12}\.css", stylesheet.group(1))
    css_status, css, headers = server.request("GET", stylesheet.group(1))
    assert css_status == 200 and "font-family" in css
    assert "max-age" in headers.get("Cache-Control", "")
    login_status, login, _ = server.request("GET", "/admin/login/")
    assert login_status == 200 and "callbridge" in login
    missing_status, missing, _ = server.request("GET", "/api/nothing")
    assert (missing_status, missing["code"]) == (404, "NOT_FOUND")
