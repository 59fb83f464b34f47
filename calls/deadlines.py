"""Ends calls at their deadlines, with nobody polling the API.

- ring deadline: a ringing call nobody answered ends as `missed` — or, waiting in a queue,
  gets the queue's overflow rule (the ring deadline is its maximum wait);
- the routing engine's own: offers ringing out, wrap-ups ending (calls.routing.deadlines);
- media deadline: an active call that lacked media on a leg for CALLBRIDGE_MEDIA_GRACE_S
  ends with `media_timeout`;
- callback requests expire with their end user's session (calls.callbacks).

Sleeps until the earliest deadline in the database, and is woken by every call event
recorded in this process (a new call, an answer, a leg losing media). Safe with several
processes: the endings are locked transitions that re-check the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

from calls import callbacks
from calls.model_signals import call_event_recorded
from calls.models import Call, CallEvent, CallState
from calls.routing import deadlines as routing_deadlines

logger = logging.getLogger(__name__)


def _earliest(queryset: Any, field: str) -> datetime | None:
    return (
        queryset.filter(**{f"{field}__isnull": False})
        .order_by(field)
        .values_list(field, flat=True)
        .first()
    )


def _expire_and_find_next() -> datetime | None:
    routing_next = routing_deadlines.sweep()  # ring deadlines (maximum waits) too
    for call_id in Call.expire_media_timeouts():
        logger.info("call %s ended: media timeout", call_id)
    callbacks.expire_stale()  # requests whose session expired
    upcoming = [
        callbacks.next_expiry(),
        # Ringing: maximum waits; voicemail: the stage's deadline (calls.voicemail).
        _earliest(
            Call.objects.filter(state__in=(CallState.RINGING, CallState.VOICEMAIL)),
            "ring_deadline",
        ),
        _earliest(Call.objects.filter(state=CallState.ACTIVE), "media_deadline"),
        *routing_next,
    ]
    return min((when for when in upcoming if when is not None), default=None)


class CallDeadlines:
    def __init__(
        self,
        idle_recheck_s: float = 30.0,
        error_backoff_s: float = 1.0,
        coalesce_s: float = 0.2,
    ) -> None:
        # Re-check at least this often even when idle: covers calls created by other
        # processes sharing the database.
        self.idle_recheck_s = idle_recheck_s
        self.error_backoff_s = error_backoff_s
        # Woken by an event, wait this long for the events recorded with it: a call
        # set-up records seven, and each sweep is a dozen queries (issue 18's profile).
        # Deadlines are seconds away; this moves none by more than this.
        self.coalesce_s = coalesce_s
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
                    # asyncio.timeout, not wait_for: on 3.11 a cancel that races the
                    # event being set can leave wait_for's inner task hanging.
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                        await asyncio.sleep(self.coalesce_s)
        finally:
            call_event_recorded.disconnect(dispatch_uid=id(self))

    async def _sweep(self) -> float:
        try:
            upcoming = await database_sync_to_async(_expire_and_find_next)()
        except Exception:
            logger.exception("call deadline sweep failed; retrying")
            return self.error_backoff_s
        if upcoming is None:
            return self.idle_recheck_s
        seconds = (upcoming - timezone.now()).total_seconds()
        return min(max(seconds, 0.0), self.idle_recheck_s)

    def _on_call_event(self, sender: Any, event: CallEvent, **kwargs: Any) -> None:
        # Called on commit, from whatever thread wrote the call: any event may have set
        # or moved a deadline.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)
