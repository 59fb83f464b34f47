"""Real Redis, PostgreSQL and coturn processes for tests, on 127.0.0.1 with throwaway data.

Debian's packages (tools/system-deps installs them). A test that needs one that is not
installed fails in CI and skips on a developer's machine, saying why.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from callbridge.local_server import free_port, listening, stop, wait_for_port


def require_binary(path_or_name: str, package: str) -> str:
    found = shutil.which(path_or_name) or next(iter(sorted(glob.glob(path_or_name))), None)
    if found:
        return found
    message = f"{path_or_name} is missing (apt-get install {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


NO_DISK = ["--save", "", "--appendonly", "no"]


@contextmanager
def running_redis(workdir: Path) -> Iterator[str]:
    """A Redis on 127.0.0.1 without persistence; yields its URL."""
    binary = require_binary("redis-server", "redis-server")
    port = free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)]
    with listening([*command, *NO_DISK], port, workdir / "redis.log"):
        yield f"redis://127.0.0.1:{port}/0"


@contextmanager
def running_postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary directory, on 127.0.0.1; yields a DATABASE_URL.

    PostgreSQL refuses to run as root: as root it runs as the `postgres` user (the Debian
    package creates it), in a directory that user owns."""
    initdb = require_binary("/usr/lib/postgresql/*/bin/initdb", "postgresql")
    postgres = str(Path(initdb).with_name("postgres"))
    workdir = Path(tempfile.mkdtemp(prefix="callbridge-pg-"))
    as_user: list[str] = []
    if os.getuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = workdir / "data", workdir / "postgres.log"
    port = free_port()
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # fsync off: a throwaway cluster; the race tests are about locks, not durability.
    options = ["-h", "127.0.0.1", "-p", str(port), "-k", str(workdir), "-F", "-c", "fsync=off"]
    with open(os.open(log, os.O_WRONLY | os.O_CREAT, 0o666), "w") as out:
        process = subprocess.Popen(
            [*as_user, postgres, "-D", str(data), *options], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, process, log)
        psql = str(Path(initdb).with_name("psql"))
        create = ["-c", "CREATE DATABASE callbridge"]
        subprocess.run(
            [*as_user, psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", *create],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield f"postgres://postgres@127.0.0.1:{port}/callbridge"
    finally:
        stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


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
