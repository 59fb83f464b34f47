"""A media worker process's heartbeat: its row in MediaWorkerStatus, written every second.

The row tells daphne processes the worker is alive, how loaded it is, and whether it
takes new calls (running) or only keeps its own (draining). Its last write says `stopped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from calls.media.worker import MediaWorker
from calls.models import MediaWorkerStatus, WorkerState
from calls.workers import placement

logger = logging.getLogger(__name__)


class NameTaken(Exception):
    pass


def _write(name: str, state: str, addresses: list[str], capacity: int, calls: int, legs: int):
    now = timezone.now()
    status = {
        "state": state,
        "addresses": addresses,
        "capacity": capacity,
        "calls": calls,
        "legs": legs,
        "last_seen": now,
    }
    MediaWorkerStatus.objects.update_or_create(
        name=name, defaults=status, create_defaults={**status, "started_at": now}
    )


def claim_name(name: str) -> list:
    """Take over `name`: wait for a previous worker of that name to fall silent, then end
    what it left behind (as the watch in daphne would), before this one beats.
    NameTaken if another live worker keeps beating under that name."""
    patience = time.monotonic() + settings.CALLBRIDGE_MEDIA_WORKER_TIMEOUT_S + 2
    while MediaWorkerStatus.objects.live().filter(name=name).exists():
        if time.monotonic() > patience:
            raise NameTaken(f"another media worker named {name!r} is alive")
        time.sleep(0.5)
    MediaWorkerStatus.objects.filter(name=name).update(started_at=timezone.now())
    return placement.end_calls_of([name])


class Heartbeat:
    def __init__(
        self, worker: MediaWorker, addresses: list[str], capacity: int, interval_s: float = 1.0
    ) -> None:
        self.worker = worker
        self.addresses = addresses
        self.capacity = capacity
        self.interval_s = interval_s
        self.state = WorkerState.RUNNING
        self._beat_now = asyncio.Event()

    async def announce(self) -> None:
        """The first beat: from now on placement may choose this worker."""
        await self._beat(self.state)

    def drain(self) -> None:
        """Say at once that this worker takes no new calls."""
        self.state = WorkerState.DRAINING
        self._beat_now.set()

    async def run(self) -> None:
        try:
            while True:
                self._beat_now.clear()
                try:
                    await self._beat(self.state)
                except Exception:
                    logger.exception("media worker %s: heartbeat failed", self.worker.name)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval_s):
                        await self._beat_now.wait()
        finally:
            # Cancelled (stopping): the last word. Placement then never waits for a timeout.
            await self._beat(WorkerState.STOPPED)

    async def _beat(self, state: str) -> None:
        await database_sync_to_async(_write)(
            self.worker.name,
            state,
            self.addresses,
            self.capacity,
            len(self.worker.calls),
            self.worker.peer_count,
        )
