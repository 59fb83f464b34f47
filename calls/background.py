"""Background tasks of a serving process: call deadlines and the embedded media worker
(or, when media workers are separate processes, the watch that notices one dying).

Started once per event loop: eagerly by `manage.py serve`, or lazily by the ASGI app on
its first connection when another server runs it (e.g. the plain `daphne` command).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from django.conf import settings

from calls.audit_sealer import AuditSealer
from calls.deadlines import CallDeadlines
from calls.events import EventPublisher
from calls.loop_lag import LoopLagMeter
from calls.transcriber import TranscriptWorker
from calls.webhooks.sender import WebhookSender
from calls.workers.local import build_media_worker
from calls.workers.placement import MediaWorkerWatch
from calls.workers.reconcile import ShutdownReconciler

logger = logging.getLogger(__name__)


class BackgroundTask(Protocol):
    async def run(self) -> None: ...


def default_tasks() -> dict[str, BackgroundTask]:
    # Started in this order, stopped in reverse: the publisher outlives the others, so
    # what they record while stopping (legs closing, calls ending) still reaches the
    # sockets; the shutdown reconciler ends the worker's calls once its media is gone.
    if not settings.CALLBRIDGE_EMBEDDED_MEDIA_WORKER:
        return {
            "event-publisher": EventPublisher(),
            "audit-sealer": AuditSealer(),
            "call-deadlines": CallDeadlines(),
            "media-worker-watch": MediaWorkerWatch(),
            "webhook-sender": WebhookSender(),
            "loop-lag-metrics": _loop_lag_meter(),
        }
    return {
        "event-publisher": EventPublisher(),
        "audit-sealer": AuditSealer(),  # stops after the reconciler: seals what it ended
        "shutdown-reconciler": ShutdownReconciler(settings.CALLBRIDGE_MEDIA_WORKER_NAME),
        "call-deadlines": CallDeadlines(),
        "media-worker": build_media_worker(),
        "webhook-sender": WebhookSender(),
        "loop-lag-metrics": _loop_lag_meter(),
    }


def _loop_lag_meter() -> LoopLagMeter:
    return LoopLagMeter("serve", settings.CALLBRIDGE_METRICS_LOOP_LAG_INTERVAL_MS / 1000)


class BackgroundTasks:
    def __init__(self, make_tasks: Callable[[], dict[str, BackgroundTask]]) -> None:
        self._make_tasks = make_tasks
        self._running: dict[asyncio.AbstractEventLoop, dict[str, tuple[Any, asyncio.Task]]] = {}

    def ensure_started(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()
        if loop in self._running:
            return
        # Forget loops that are gone (tests run one loop per test).
        self._running = {old: run for old, run in self._running.items() if not old.is_closed()}
        running = {}
        for name, service in self._make_tasks().items():
            task = loop.create_task(service.run(), name=f"callbridge:{name}")
            task.add_done_callback(_log_unexpected_exit)
            running[name] = (service, task)
        self._running[loop] = running
        logger.info("background services started: %s", ", ".join(running))

    def get(self, name: str) -> Any:
        """This loop's running instance of a service (None if not running)."""
        running = self._running.get(asyncio.get_running_loop(), {})
        return running[name][0] if name in running else None

    async def stop(self) -> None:
        """Stop this loop's services; the media worker closes every peer connection."""
        running = self._running.pop(asyncio.get_running_loop(), {})
        for _, task in reversed(running.values()):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _log_unexpected_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("background service %s died", task.get_name(), exc_info=task.exception())


def serving_tasks() -> dict[str, BackgroundTask]:
    """The defaults, and the transcripts' worker where transcripts are on (it starts
    last, so stops first: a job it gives up goes back to the queue)."""
    tasks = default_tasks()
    if settings.CALLBRIDGE_TRANSCRIBE:
        tasks["transcripts"] = TranscriptWorker()
    return tasks


background_tasks = BackgroundTasks(serving_tasks)
