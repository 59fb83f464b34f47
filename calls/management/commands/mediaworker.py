"""Run a media worker as its own process (scale-out; see docs/deploy.md).

It consumes its channel `media.<name>` on the Redis channel layer, beats its heartbeat
every second, and on SIGTERM (or Ctrl-C) drains: no new calls, its calls go on until they
end or the drain timeout ends them (`server_restart`). A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from callbridge.private_files import secure_data_directories
from calls import loop_lag
from calls.events import EventPublisher
from calls.models import EndReason
from calls.workers import placement
from calls.workers.heartbeat import Heartbeat, NameTaken, claim_name
from calls.workers.local import build_media_worker

logger = logging.getLogger("calls.mediaworker")

STOP_STEP_S = 8.0
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")  # a valid channel-name part


class Command(BaseCommand):
    help = "Run a media worker process (needs REDIS_URL; the serving processes place calls on it)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--name",
            default=socket.gethostname(),
            help="unique worker name (default: the host name); its channel is media.<name>",
        )
        parser.add_argument(
            "--ice-host-address",
            action="append",
            dest="addresses",
            help="an address to offer as ICE host candidate (repeatable; default: "
            "CALLBRIDGE_ICE_HOST_ADDRESSES, else every interface but loopback)",
        )
        parser.add_argument("--capacity", type=int, default=50, help="most calls it takes")
        parser.add_argument(
            "--drain-timeout",
            type=float,
            default=300.0,
            help="seconds its calls may go on after SIGTERM before they are ended",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if "RedisChannelLayer" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
            raise CommandError("a media worker process needs the Redis channel layer (REDIS_URL)")
        name = options["name"]
        if not NAME.match(name):
            raise CommandError(f"--name {name!r}: use letters, digits, '.', '_' or '-'")
        if options["capacity"] < 1:
            raise CommandError("--capacity must be at least 1")
        addresses = options["addresses"] or list(settings.CALLBRIDGE_ICE_HOST_ADDRESSES)
        secure_data_directories()  # it writes recordings and captures
        try:
            asyncio.run(serve(name, addresses, options["capacity"], options["drain_timeout"]))
        except NameTaken as error:
            raise CommandError(str(error)) from None


async def serve(name: str, addresses: list[str], capacity: int, drain_timeout_s: float) -> None:
    left_over = await database_sync_to_async(claim_name)(name)
    if left_over:
        logger.warning("media worker %s: ended %d calls of its previous run", name, len(left_over))
    worker = build_media_worker(name, addresses)
    heartbeat = Heartbeat(worker, addresses, capacity)
    publisher = EventPublisher()
    loop = asyncio.get_running_loop()
    publishing = loop.create_task(publisher.run(), name="callbridge:event-publisher")
    working = loop.create_task(worker.run(), name="callbridge:media-worker")
    await heartbeat.announce()  # placeable once this returns (and "running" is logged)
    beating = loop.create_task(heartbeat.run(), name="callbridge:heartbeat")
    lag = loop_lag.LoopLagMeter(
        "mediaworker", settings.CALLBRIDGE_METRICS_LOOP_LAG_INTERVAL_MS / 1000
    )
    metering = loop.create_task(lag.run(), name="callbridge:loop-lag-metrics")
    loop_lag.start_from_env(loop)  # benchmarks only (bench/): off unless its env var is set

    signals = asyncio.Queue[int]()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, signals.put_nowait, number)
    logger.info(
        "media worker %s running: capacity %d calls, ICE host addresses %s",
        name,
        capacity,
        ", ".join(addresses) or "every interface but loopback",
    )
    await signals.get()
    logger.info("media worker %s draining (up to %.0f s)", name, drain_timeout_s)
    worker.accepting_new_calls = False
    heartbeat.drain()
    drained = loop.create_task(_until_idle(worker))
    again = loop.create_task(signals.get())
    await asyncio.wait({drained, again}, timeout=drain_timeout_s, return_when="FIRST_COMPLETED")
    for waiting in (drained, again):
        waiting.cancel()
    ended = await database_sync_to_async(placement.end_calls_of)([name], EndReason.SERVER_RESTART)
    if ended:
        logger.warning("media worker %s: drain ended %d calls", name, len(ended))
    # The heartbeat says `stopped`, the worker closes what is left, and the publisher
    # outlives both so the events they record (calls ended, legs closed) reach the sockets.
    for task in (beating, working):
        await _stop(task)
    try:
        async with asyncio.timeout(5):
            await publisher.flush()
    except TimeoutError:
        logger.warning("media worker %s: some call events were not delivered", name)
    publishing.cancel()
    await asyncio.gather(publishing, return_exceptions=True)
    metering.cancel()
    await asyncio.gather(metering, return_exceptions=True)
    logger.info("media worker %s stopped", name)


async def _stop(task: asyncio.Task[None], within_s: float = STOP_STEP_S) -> None:
    """Cancel a task and wait for it; one still busy after `within_s` is logged with the
    chain of awaits it is stuck in (a stop that hangs must say where), then waited for."""
    task.cancel()
    await asyncio.wait({task}, timeout=within_s)
    if not task.done():
        others = asyncio.all_tasks() - {task, asyncio.current_task()}
        logger.error(
            "%s still stopping after %.0f s, awaiting:\n%s",
            task.get_name(),
            within_s,
            "\n".join(
                f"{each.get_name()}:\n" + "\n".join(_await_chain(each.get_coro()))
                for each in [task, *others]
            ),
        )
        await asyncio.gather(task, return_exceptions=True)


def _await_chain(awaitable: Any) -> list[str]:
    where = []
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            where.append(f"  {awaitable!r}")
            break
        where.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return where


async def _until_idle(worker: Any) -> None:
    """Until no open call is placed on the worker and it holds no media."""
    # Polled: calls end in other processes (a hang-up through any daphne).
    while True:
        if not worker.calls and not await database_sync_to_async(placement.open_calls_of)(
            worker.name
        ):
            return
        await asyncio.sleep(0.5)
