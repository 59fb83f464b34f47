"""A real `manage.py serve` (daphne) process on a free loopback port, for tests."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen | None = None

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        token_header: str = "Authorization",
    ) -> tuple[int, Any, dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            bearer = token_header.lower() == "authorization"
            request.add_header(token_header, f"Bearer {token}" if bearer else token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw, status, headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            raw, status, headers = error.read(), error.code, dict(error.headers)
        kind = headers.get("Content-Type", "")
        return status, json.loads(raw) if "json" in kind else raw.decode(), headers

    def wago(self, token: str, method: str, path: str, body: Any = None) -> Any:
        """A WaGo-style call (`token:` header); the JSON body of a successful answer."""
        status, answer, _ = self.request(method, path, token, body, token_header="token")
        assert 200 <= status < 300, answer
        return answer

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


def wait_for_port(port: int, process: subprocess.Popen, log: Path, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{shlex.join(map(str, process.args))} did not start:\n{log.read_text()}"
                ) from None
            time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def outside_environment() -> dict[str, str]:
    """This process's environment without callbridge's own settings (a server's start from
    the defaults plus what the test gives it)."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CALLBRIDGE_", "DJANGO_")) and key not in ("DATABASE_URL", "DEBUG")
    }


@functools.cache
def prepared_data_dir() -> Path:
    """A data folder migrated and with collected static files, made once per test run:
    every server's starts as a copy (migrate + collectstatic cost ~5 s a server)."""
    template = Path(tempfile.mkdtemp(prefix="callbridge-template-"))
    atexit.register(shutil.rmtree, template, ignore_errors=True)
    env = outside_environment()
    env["CALLBRIDGE_DATA_DIR"] = str(template)
    maker = Server(url="", env=env, log=template / "unused.log")
    maker.manage("migrate", "--noinput")
    maker.manage("collectstatic", "--noinput")
    (template / "secret_key").unlink(missing_ok=True)  # each server makes its own
    return template


@contextmanager
def running_server(
    data_dir: Path, migrate: bool = True, serve_args: tuple[str, ...] = (), **extra_env: str
) -> Iterator[Server]:
    """Migrate a fresh database in `data_dir` and serve it until the block ends
    (`serve_args`: more options for `manage.py serve`)."""
    env = outside_environment()
    env.update(
        CALLBRIDGE_DATA_DIR=str(data_dir),
        CALLBRIDGE_RING_TIMEOUT_S="2",
        CALLBRIDGE_ICE_HOST_ADDRESSES="127.0.0.1",
    )
    env.update(extra_env)  # may override the defaults above
    port = free_port()
    running = Server(url=f"http://127.0.0.1:{port}", env=env, log=data_dir / "serve.log")
    template = prepared_data_dir()
    shutil.copytree(template / "static", data_dir / "static", dirs_exist_ok=True)
    fresh_sqlite = "DATABASE_URL" not in env and not (data_dir / "db.sqlite3").exists()
    if migrate and fresh_sqlite:
        shutil.copy2(template / "db.sqlite3", data_dir / "db.sqlite3")
    elif migrate:
        running.manage("migrate", "--noinput")
    with running.log.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), *serve_args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process, running.log, within=30)
        running.process = process
        yield running
    finally:
        stop(process)
