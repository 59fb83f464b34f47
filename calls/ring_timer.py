"""Ends ringing calls as `missed` at their ring deadline, with nobody polling the API.

Sleeps until the earliest deadline in the database, and is woken when a ringing call is
created in this process. Safe with several processes: `Call.miss` is a locked transition,
so a call another process already ended is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

from calls.models import Call, CallEvent, CallState
from calls.signals import call_event_recorded

logger = logging.getLogger(__name__)


def _expire_and_find_next() -> tuple[int, datetime | None]:
    missed = Call.expire_overdue()
    for call_id in missed:
        logger.info("call %s missed: ring timeout", call_id)
    upcoming = (
        Call.objects.filter(state=CallState.RINGING, ring_deadline__isnull=False)
        .order_by("ring_deadline")
        .values_list("ring_deadline", flat=True)
        .first()
    )
    return len(missed), upcoming


class RingTimer:
    def __init__(self, idle_recheck_s: float = 30.0, error_backoff_s: float = 1.0) -> None:
        # Re-check at least this often even when idle: covers calls created by other
        # processes sharing the database.
        self.idle_recheck_s = idle_recheck_s
        self.error_backoff_s = error_backoff_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        call_event_recorded.connect(self._on_call_event, weak=False, dispatch_uid=id(self))
        try:
            while True:
                self._wake.clear()
                delay = await self._sweep()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            call_event_recorded.disconnect(dispatch_uid=id(self))

    async def _sweep(self) -> float:
        try:
            _, upcoming = await database_sync_to_async(_expire_and_find_next)()
        except Exception:
            logger.exception("ring timer sweep failed; retrying")
            return self.error_backoff_s
        if upcoming is None:
            return self.idle_recheck_s
        seconds = (upcoming - timezone.now()).total_seconds()
        return min(max(seconds, 0.0), self.idle_recheck_s)

    def _on_call_event(self, sender: Any, event: CallEvent, **kwargs: Any) -> None:
        # Called on commit, from whatever thread wrote the call.
        if event.name == "call.created" and event.data.get("state") == CallState.RINGING:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._wake.set)
