"""Start a process on a free 127.0.0.1 port, wait until it listens, stop it afterwards.

Shared by tests/ (`tests.support.live_server`, Redis, PostgreSQL, coturn) and bench/
(the benchmarks' servers), which must not import each other. Standard library only: the
server runs in its own process, so importing this loads neither Django nor pytest.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent  # where manage.py is


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, within: float = 20
) -> None:
    """Return once 127.0.0.1:`port` accepts a connection; fail with the end of the log if
    `process` exits first or `within` seconds pass."""
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                args = process.args
                command = shlex.join(map(str, args)) if isinstance(args, list) else str(args)
                tail = log.read_text(errors="replace")[-5000:]
                raise RuntimeError(f"{command} did not start:\n{tail}") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes], within: float = 10) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if it takes longer than `within` s."""
    process.terminate()
    try:
        process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def listening(
    command: Sequence[str],
    port: int,
    log: Path,
    env: Mapping[str, str] | None = None,
    within: float = 20,
    stop_within: float = 10,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` (output to `log`) until the block ends, once it listens on `port`."""
    with log.open("w") as out:
        process = subprocess.Popen(  # noqa: S603
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, process, log, within)
        yield process
    finally:
        stop(process, stop_within)


def outside_environment() -> dict[str, str]:
    """This process's environment without callbridge's own settings: a server started
    with it runs on the defaults plus what its caller adds."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CALLBRIDGE_", "DJANGO_")) and key not in ("DATABASE_URL", "DEBUG")
    }


def manage(env: Mapping[str, str], *args: str, timeout: float = 120) -> str:
    """Run `manage.py <args>` with `env`; its standard output (fails on a non-zero exit)."""
    return subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout


@dataclass
class LocalServer:
    """A `manage.py serve` process on 127.0.0.1 (`process` is set once it runs)."""

    url: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def on_free_port(cls, env: dict[str, str], log: Path) -> Self:
        return cls(url=f"http://127.0.0.1:{free_port()}", env=env, log=log)

    def manage(self, *args: str) -> str:
        return manage(self.env, *args)


Served = TypeVar("Served", bound=LocalServer)


@contextmanager
def serving(server: Served, serve_args: Sequence[str] = (), within: float = 30) -> Iterator[Served]:
    """Run `manage.py serve` for `server` (its database ready) until the block ends
    (`serve_args`: more options for `manage.py serve`)."""
    port = urlsplit(server.url).port
    assert port is not None, server.url
    command = [sys.executable, "manage.py", "serve", "--port", str(port), *serve_args]
    with listening(command, port, server.log, server.env, within) as process:
        server.process = process
        yield server
