"""Background services of a serving process: call deadlines and the embedded media worker
(or, when media workers are separate processes, the watch that notices one dying).

Started once per event loop: eagerly by `manage.py serve`, or lazily by the ASGI app on
its first connection when another server runs it (e.g. the plain `daphne` command).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import RTCIceServer
from channels.layers import get_channel_layer
from django.conf import settings

from calls.deadlines import CallDeadlines
from calls.events import EventPublisher
from calls.media.aiortc_internals import advertise_host_addresses, use_numpy_audio_level
from calls.media.candidates import CandidateRules, parse_networks
from calls.media.peer import PeerSettings
from calls.media.worker import MediaWorker
from calls.media_reporter import DatabaseLegReporter
from calls.placement import MediaWorkerWatch
from calls.reconcile import ShutdownReconciler

logger = logging.getLogger(__name__)


class Service(Protocol):
    async def run(self) -> None: ...


def media_worker(name: str = "", host_addresses: list[str] | None = None) -> MediaWorker:
    """This process's media worker (default: the embedded one, as configured)."""
    addresses = settings.CALLBRIDGE_ICE_HOST_ADDRESSES if host_addresses is None else host_addresses
    advertise_host_addresses(addresses)
    use_numpy_audio_level()
    stun = tuple(RTCIceServer(urls=url) for url in settings.CALLBRIDGE_STUN_URLS)
    return MediaWorker(
        name=name or settings.CALLBRIDGE_MEDIA_WORKER_NAME,
        layer=get_channel_layer(),
        reporter=DatabaseLegReporter(),
        peer_settings=PeerSettings(
            ice_servers=stun,
            ice_timeout_s=settings.CALLBRIDGE_ICE_TIMEOUT_S,
            forwarding=settings.CALLBRIDGE_MEDIA_PATH == "forward",
            candidate_rules=CandidateRules(
                max_remote=settings.CALLBRIDGE_ICE_MAX_REMOTE_CANDIDATES,
                allowed_networks=parse_networks(settings.CALLBRIDGE_ICE_ALLOWED_NETWORKS),
            ),
        ),
    )


def default_services() -> dict[str, Service]:
    # Started in this order, stopped in reverse: the publisher outlives the others, so
    # what they record while stopping (legs closing, calls ending) still reaches the
    # sockets; the shutdown reconciler ends the worker's calls once its media is gone.
    if not settings.CALLBRIDGE_EMBEDDED_MEDIA_WORKER:
        return {
            "event-publisher": EventPublisher(),
            "call-deadlines": CallDeadlines(),
            "media-worker-watch": MediaWorkerWatch(),
        }
    return {
        "event-publisher": EventPublisher(),
        "shutdown-reconciler": ShutdownReconciler(settings.CALLBRIDGE_MEDIA_WORKER_NAME),
        "call-deadlines": CallDeadlines(),
        "media-worker": media_worker(),
    }


class BackgroundServices:
    def __init__(self, make_services: Callable[[], dict[str, Service]]) -> None:
        self._make_services = make_services
        self._running: dict[asyncio.AbstractEventLoop, dict[str, tuple[Any, asyncio.Task]]] = {}

    def ensure_started(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()
        if loop in self._running:
            return
        # Forget loops that are gone (tests run one loop per test).
        self._running = {old: run for old, run in self._running.items() if not old.is_closed()}
        running = {}
        for name, service in self._make_services().items():
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


services = BackgroundServices(default_services)
