"""Throwaway Redis and PostgreSQL servers on 127.0.0.1 (Debian's packages): tests' scale-out
cluster and the benchmark's `cluster` target both start them.

Standard library only, like local_server.py: bench/ imports it without Django or pytest.
A missing package raises MissingBinary; tests/support/real_services.py turns that into a
failure in CI and a skip elsewhere.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from callbridge.local_server import free_port, listening, stop, wait_for_port

# (binary, the Debian package that has it)
REDIS = ("redis-server", "redis-server")
INITDB = ("/usr/lib/postgresql/*/bin/initdb", "postgresql")

NO_DISK = ["--save", "", "--appendonly", "no"]


class MissingBinary(RuntimeError):
    pass


@dataclass(frozen=True)
class RunningService:
    url: str
    process: subprocess.Popen[bytes]  # PostgreSQL's may be `runuser` (as root), its parent


def find_binary(path_or_name: str, package: str) -> str:
    """The binary's path (a name on PATH or a glob); MissingBinary says what to install."""
    found = shutil.which(path_or_name) or next(iter(sorted(glob.glob(path_or_name))), None)
    if found:
        return found
    raise MissingBinary(f"{path_or_name} is missing (apt-get install {package})")


@contextmanager
def running_redis(workdir: Path, prefix: Sequence[str] = ()) -> Iterator[RunningService]:
    """A Redis on 127.0.0.1 without persistence (`prefix`: e.g. `taskset -c 0`)."""
    binary = find_binary(*REDIS)
    port = free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)]
    with listening([*prefix, *command, *NO_DISK], port, workdir / "redis.log") as process:
        yield RunningService(f"redis://127.0.0.1:{port}/0", process)


@contextmanager
def running_postgres(prefix: Sequence[str] = ()) -> Iterator[RunningService]:
    """A PostgreSQL cluster in a temporary directory, on 127.0.0.1, fsync off; its URL is a
    DATABASE_URL (`prefix`: e.g. `taskset -c 0`, for the server processes only).

    PostgreSQL refuses to run as root: as root it runs as the `postgres` user (the Debian
    package creates it), in a directory that user owns."""
    initdb = find_binary(*INITDB)
    postgres = str(Path(initdb).with_name("postgres"))
    workdir = Path(tempfile.mkdtemp(prefix="callbridge-pg-"))
    as_user: list[str] = []
    if os.getuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = workdir / "data", workdir / "postgres.log"
    port = free_port()
    subprocess.run(  # noqa: S603
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # fsync off: a throwaway cluster (tests are about locks, the bench about CPU).
    options = ["-h", "127.0.0.1", "-p", str(port), "-k", str(workdir), "-F", "-c", "fsync=off"]
    with open(os.open(log, os.O_WRONLY | os.O_CREAT, 0o666), "w") as out:
        process = subprocess.Popen(  # noqa: S603
            [*prefix, *as_user, postgres, "-D", str(data), *options],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process, log)
        psql = str(Path(initdb).with_name("psql"))
        create = ["-c", "CREATE DATABASE callbridge"]
        subprocess.run(  # noqa: S603
            [*as_user, psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", *create],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield RunningService(f"postgres://postgres@127.0.0.1:{port}/callbridge", process)
    finally:
        stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
