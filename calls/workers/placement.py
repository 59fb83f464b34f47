"""Which media worker a new call goes to, and what happens to calls of a worker that died.

Embedded (the default): every call goes to this process's own worker. Otherwise: to the
live, running `manage.py mediaworker` with the smallest share of its capacity in use,
counted from the open calls in the database (exact at once, unlike a heartbeat's load).
Every later message for the call goes to `Call.media_worker`, whichever daphne sends it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import Count

from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.models import Call, EndReason, MediaWorkerStatus

logger = logging.getLogger(__name__)


def choose_worker() -> str:
    """The name of the media worker a new call should use."""
    if settings.CALLBRIDGE_EMBEDDED_MEDIA_WORKER:
        return settings.CALLBRIDGE_MEDIA_WORKER_NAME
    workers = list(MediaWorkerStatus.objects.accepting())
    open_calls = dict(
        Call.objects.open()
        .filter(media_worker__in=[worker.name for worker in workers])
        .order_by()  # no default ordering in the GROUP BY
        .values("media_worker")
        .annotate(count=Count("pk"))
        .values_list("media_worker", "count")
    )
    candidates = [
        (open_calls.get(worker.name, 0) / worker.capacity, worker.name)
        for worker in workers
        if open_calls.get(worker.name, 0) < worker.capacity
    ]
    if not candidates:
        raise CallbridgeError(
            ErrorCode.MEDIA_BRIDGE_FAILURE, "no media worker can take a call now", recoverable=True
        )
    return min(candidates)[1]


def end_calls_of(
    worker_names: list[str], reason: EndReason = EndReason.MEDIA_FAILURE
) -> list[uuid.UUID]:
    """End the open calls of workers that are gone (their media is lost) or leaving."""
    ended = []
    for call in Call.objects.open().filter(media_worker__in=worker_names):
        try:
            call.terminate(reason)
        except CallStateError:
            continue  # ended meanwhile (another daphne's watch got there first)
        logger.warning("call %s ended (%s): media worker %s", call.pk, reason, call.media_worker)
        ended.append(call.pk)
    return ended


def open_calls_of(worker_name: str) -> int:
    return Call.objects.open().filter(media_worker=worker_name).count()


def end_calls_of_silent_workers() -> list[uuid.UUID]:
    silent = list(MediaWorkerStatus.objects.silent().values_list("name", flat=True))
    return end_calls_of(silent) if silent else []


class MediaWorkerWatch:
    """A service of each serving process (when workers are separate processes): ends the
    calls of a worker that stopped beating within a second of it being declared dead.
    Several daphnes may run it: the endings are locked transitions."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s

    async def run(self) -> None:
        while True:
            try:
                await database_sync_to_async(end_calls_of_silent_workers)()
            except Exception:
                logger.exception("media worker watch failed; retrying")
            await asyncio.sleep(self.interval_s)
