"""A scaled-out callbridge for tests: Redis, PostgreSQL, two daphne processes and media
worker processes, all real, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, LiteralString

import psycopg

from callbridge.local_server import ROOT, stop
from tests.support.live_server import Server, running_server
from tests.support.real_services import running_postgres, running_redis

# Short, so a killed worker is noticed within seconds.
WORKER_TIMEOUT_S = 3
METRICS_TOKEN = "cluster-metrics-token-0123456789"


@dataclass
class MediaWorkerProcess:
    name: str
    process: subprocess.Popen
    log: Path

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    async def exit_code(self, within: float) -> int:
        """Its exit code; still running after `within` s fails with its log's tail (a
        stuck stop logs where it waits: calls/management/commands/mediaworker.py)."""
        try:
            return await asyncio.to_thread(self.process.wait, within)
        except subprocess.TimeoutExpired:
            tail = self.log.read_text(errors="replace")[-6000:]
            raise AssertionError(f"media worker {self.name} still running:\n{tail}") from None


@dataclass
class Cluster:
    daphnes: list[Server]
    database_url: str
    data_dir: Path
    workers: list[MediaWorkerProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return self.daphnes[0].env

    def query(self, sql: LiteralString, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url.replace("postgres://", "postgresql://")) as db:
            return db.execute(sql, params).fetchall()

    def worker_of(self, call_id: str) -> str:
        return self.query("SELECT media_worker FROM calls_call WHERE id = %s", call_id)[0][0]

    def token(self, name: str) -> str:
        return self.daphnes[0].manage("createapitoken", name, "--quiet").strip()

    @contextmanager
    def media_workers(self, *names_and_drain_s: tuple[str, float]) -> Iterator[list]:
        """`manage.py mediaworker` processes (started together), each with its drain
        timeout; stopped with SIGTERM (a drain) at the end."""
        started = [self._start_worker(name, drain_s) for name, drain_s in names_and_drain_s]
        try:
            deadline = time.monotonic() + 30
            for worker in started:
                while "running: capacity" not in worker.log.read_text():
                    if worker.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{worker.name} did not start:\n{worker.log.read_text()}"
                        )
                    time.sleep(0.1)
            yield started
        finally:
            for worker in started:
                if worker.process.poll() is None:
                    worker.signal(signal.SIGTERM)
            for worker, (_, drain_s) in zip(started, names_and_drain_s, strict=True):
                try:
                    worker.process.wait(timeout=drain_s + 10)
                except subprocess.TimeoutExpired:
                    stop(worker.process)

    def _start_worker(self, name: str, drain_timeout_s: float) -> MediaWorkerProcess:
        log = self.data_dir / f"worker-{name}.log"
        options = ["--ice-host-address", "127.0.0.1", "--drain-timeout", str(drain_timeout_s)]
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "mediaworker", "--name", name, *options],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return MediaWorkerProcess(name, process, log)


@contextmanager
def running_cluster(data_dir: Path) -> Iterator[Cluster]:
    """Redis + PostgreSQL + two daphne processes (no embedded media worker) sharing them."""
    with ExitStack() as stack:
        redis_url = stack.enter_context(running_redis(data_dir))
        database_url = stack.enter_context(running_postgres())
        # One host: every process writes its metrics here, either daphne sums them.
        (data_dir / "prometheus").mkdir()
        env = {
            "PROMETHEUS_MULTIPROC_DIR": str(data_dir / "prometheus"),
            "CALLBRIDGE_METRICS_TOKEN": METRICS_TOKEN,
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "CALLBRIDGE_EMBEDDED_MEDIA_WORKER": "false",
            "CALLBRIDGE_MEDIA_WORKER_TIMEOUT_S": str(WORKER_TIMEOUT_S),
            "SECRET_KEY": "cluster-test-secret-key-shared-by-every-process",
            "MEDIA_ROOT": str(data_dir / "media"),  # recordings: shared storage
            "CALLBRIDGE_LIMIT_ECHO_CALLS": "100",  # tests fill workers with one token's echo calls
            "CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE": "true",  # tests' receivers are on 127.0.0.1
            "CALLBRIDGE_WEBHOOK_RECHECK_S": "1",
        }
        daphnes = []
        for name in ("daphne-a", "daphne-b"):
            (data_dir / name).mkdir()
            migrate = not daphnes  # one database: the first migrates it
            daphnes.append(
                stack.enter_context(running_server(data_dir / name, migrate=migrate, **env))
            )
        yield Cluster(daphnes, database_url, data_dir)
