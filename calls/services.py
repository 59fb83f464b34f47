"""Background services of a serving process (ring timer now; the media worker later).

Started once per event loop: eagerly by `manage.py serve`, or lazily by the ASGI app on
its first connection when another server runs it (e.g. the plain `daphne` command).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from calls.ring_timer import RingTimer

logger = logging.getLogger(__name__)

ServiceFactory = Callable[[], Coroutine[Any, Any, None]]


def default_services() -> dict[str, ServiceFactory]:
    return {"ring-timer": lambda: RingTimer().run()}


class BackgroundServices:
    def __init__(self, factories: Callable[[], dict[str, ServiceFactory]]) -> None:
        self._factories = factories
        self._tasks: dict[asyncio.AbstractEventLoop, list[asyncio.Task[None]]] = {}

    def ensure_started(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()
        if loop in self._tasks:
            return
        # Forget loops that are gone (tests run one loop per test).
        self._tasks = {old: tasks for old, tasks in self._tasks.items() if not old.is_closed()}
        tasks = []
        for name, factory in self._factories().items():
            task = loop.create_task(factory(), name=f"callbridge:{name}")
            task.add_done_callback(_log_unexpected_exit)
            tasks.append(task)
        self._tasks[loop] = tasks
        logger.info("background services started: %s", ", ".join(self._factories()))

    async def stop(self) -> None:
        tasks = self._tasks.pop(asyncio.get_running_loop(), [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _log_unexpected_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("background service %s died", task.get_name(), exc_info=task.exception())


services = BackgroundServices(default_services)
