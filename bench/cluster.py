"""The benchmark's scale-out target (`--targets cluster`): the set-up docs/deploy.md
describes, on one core: Redis, PostgreSQL, one daphne (`manage.py serve` without its
embedded media worker) and one `manage.py mediaworker` process.

Every process runs on the server's core (`prefix`: bench.media's `taskset -c 0`), so the
cluster gets the CPU the embedded target gets and the two are comparable; the generator
reads each process's CPU from its pid (`pids`) to say which one saturates first.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from callbridge.local_server import ROOT, free_port, listening, manage, stop
from callbridge.local_services import running_postgres, running_redis

WORKER = "bench-worker"
WORKER_START_S = 60
# Placement stops at a worker's capacity (`mediaworker --capacity`, default 50): the bench
# finds the limit by loss and latency, not by that cap.
WORKER_CAPACITY = 100_000


@dataclass
class RunningCluster:
    url: str  # daphne's
    env: dict[str, str]  # what its processes run with (manage.py commands share its database)
    pids: dict[str, int]  # daphne, mediaworker, postgres (its postmaster's parent as root), redis


@contextmanager
def running_cluster(
    data_dir: Path, env: dict[str, str], prefix: Sequence[str] = ()
) -> Iterator[RunningCluster]:
    """Start the cluster with `env` (bench.media's server environment: its loop-lag file is
    the media worker's, where the media runs); migrated, empty; stopped after the block."""
    with ExitStack() as stack:
        redis = stack.enter_context(running_redis(data_dir, prefix))
        postgres = stack.enter_context(running_postgres(prefix))
        env = {
            **env,
            "REDIS_URL": redis.url,
            "DATABASE_URL": postgres.url,
            "CALLBRIDGE_EMBEDDED_MEDIA_WORKER": "false",
        }
        manage(env, "migrate", "--noinput")
        port = free_port()
        serve = [*prefix, sys.executable, "manage.py", "serve", "--port", str(port)]
        # daphne samples its own loop into a file of its own (kept in the work dir).
        daphne_env = {**env, "CALLBRIDGE_LOOP_LAG_FILE": str(data_dir / "loop-lag-daphne.txt")}
        daphne = stack.enter_context(
            listening(serve, port, data_dir / "daphne.log", daphne_env, within=60, stop_within=20)
        )
        worker = stack.enter_context(media_worker(data_dir / "mediaworker.log", env, prefix))
        pids = {
            "daphne": daphne.pid,
            "mediaworker": worker.pid,
            "postgres": postgres.process.pid,
            "redis": redis.process.pid,
        }
        yield RunningCluster(f"http://127.0.0.1:{port}", env, pids)


@contextmanager
def media_worker(
    log: Path, env: dict[str, str], prefix: Sequence[str]
) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py mediaworker`, once placement can choose it (its heartbeat says running);
    stopped at the end without a drain: the generator has hung its calls up by then."""
    options = ["--name", WORKER, "--ice-host-address", "127.0.0.1"]
    options += ["--capacity", str(WORKER_CAPACITY), "--drain-timeout", "0"]
    command = [*prefix, sys.executable, "manage.py", "mediaworker", *options]
    with log.open("w") as out:
        process = subprocess.Popen(  # noqa: S603
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_placeable(process, env["DATABASE_URL"], log)
        yield process
    finally:
        stop(process, within=20)


def wait_until_placeable(process: subprocess.Popen[bytes], database_url: str, log: Path) -> None:
    """Wait for the worker's first heartbeat (its row, `running`): from then on daphne
    places calls on it. (Its "running" log line is INFO; the bench's servers log WARNING.)"""
    import psycopg  # the cluster's own dependency (callbridge[postgres]), not every bench's

    deadline = time.monotonic() + WORKER_START_S
    query = "SELECT 1 FROM calls_mediaworkerstatus WHERE name = %s AND state = 'running'"
    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1)) as db:
        db.autocommit = True  # each poll sees the latest beat
        while not db.execute(query, (WORKER,)).fetchone():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-5000:]
                raise RuntimeError(f"media worker {WORKER} did not start:\n{tail}")
            time.sleep(0.2)
