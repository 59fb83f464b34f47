"""Real Redis, PostgreSQL and coturn processes for tests, on 127.0.0.1 with throwaway data.

Debian's packages (tools/system-deps installs them). A test that needs one that is not
installed fails in CI and skips on a developer's machine, saying why. Redis and
PostgreSQL are started by callbridge/local_services.py (the benchmark starts them too).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from callbridge import local_services
from callbridge.local_server import free_port, listening


def require_binary(path_or_name: str, package: str) -> str:
    try:
        return local_services.find_binary(path_or_name, package)
    except local_services.MissingBinary as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(str(missing))
        pytest.skip(str(missing))


@contextmanager
def running_redis(workdir: Path) -> Iterator[str]:
    """A Redis on 127.0.0.1 without persistence; yields its URL."""
    require_binary(*local_services.REDIS)
    with local_services.running_redis(workdir) as redis:
        yield redis.url


@contextmanager
def running_postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary directory, on 127.0.0.1; yields a DATABASE_URL."""
    require_binary(*local_services.INITDB)
    with local_services.running_postgres() as postgres:
        yield postgres.url


@dataclass(frozen=True)
class Turn:
    url: str
    secret: str
    log: Path


@contextmanager
def running_coturn(workdir: Path) -> Iterator[Turn]:
    """coturn with `use-auth-secret` (TURN REST credentials) on 127.0.0.1, relaying on
    127.0.0.1 (loopback peers allowed: everything here is on loopback)."""
    binary = require_binary("turnserver", "coturn")
    port, secret = free_port(), secrets.token_hex(16)
    relay_low = 40000 + secrets.randbelow(20000)
    log = workdir / "turnserver.log"
    args = [
        binary,
        "-n",  # no configuration file
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--min-port={relay_low}",
        f"--max-port={relay_low + 200}",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        "--realm=callbridge.test",
        "--fingerprint",
        "--allow-loopback-peers",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--no-tcp-relay",
        "--log-file=stdout",
        "--simple-log",
        "--verbose",
    ]
    with listening(args, port, log):  # it listens on TCP too
        yield Turn(f"turn:127.0.0.1:{port}?transport=udp", secret, log)
