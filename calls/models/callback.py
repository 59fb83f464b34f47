"""Callback requests: a caller waiting in a queue asks to be called back instead.

One request per call (a unique constraint: the request ends the call it came from, so it
can only be asked once). Its life: `open` → `calling` (an operator's call back rings the
end user: `callback_call`) → `done` when that call is answered, or back to `open` when it
ends unanswered (`attempts` counts the tries); `done` / `cancelled` by hand; `expired`
with the end user's session (it cannot be called back any more). The verbs that move it
live in calls.callbacks (they lock this row, and the call's where a call changes too);
its history is the originating call's timeline (`callback.*` CallEvents).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from calls.models.credentials import EndUserSession
from calls.models.queue import Queue

NOTE_MAX_CHARS = 500


class CallbackState(models.TextChoices):
    OPEN = "open"
    CALLING = "calling"  # an operator's call back rings the end user
    DONE = "done"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # the end user's session expired or was revoked


PENDING_STATES = frozenset({CallbackState.OPEN, CallbackState.CALLING})


class CallbackQuerySet(models.QuerySet["CallbackRequest"]):
    def pending(self) -> CallbackQuerySet:
        return self.filter(state__in=PENDING_STATES)

    def stale(self, now: Any = None) -> CallbackQuerySet:
        """Open requests whose end user can no longer be called back (session expired,
        revoked or deleted). A `calling` one settles with its call instead."""
        now = now or timezone.now()
        return self.filter(state=CallbackState.OPEN).filter(
            Q(session=None) | Q(session__expires_at__lte=now) | Q(session__revoked_at__isnull=False)
        )


class CallbackRequest(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    call = models.ForeignKey(
        "calls.Call", on_delete=models.PROTECT, related_name="callback_requests"
    )
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="callback_requests")
    session = models.ForeignKey(
        EndUserSession,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="callback_requests",
    )
    display_name = models.CharField(max_length=100, blank=True)
    note = models.CharField(max_length=NOTE_MAX_CHARS, blank=True)
    requested_at = models.DateTimeField(default=timezone.now, db_index=True)
    state = models.CharField(
        max_length=16, choices=CallbackState.choices, default=CallbackState.OPEN, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0, help_text="call backs placed so far")
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="the operator who last called back or closed it",
    )
    handled_by_label = models.CharField(
        max_length=200, blank=True, help_text="who, kept if the account goes"
    )
    handled_at = models.DateTimeField(null=True, blank=True)
    callback_call = models.ForeignKey(
        "calls.Call",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="callback_for",
        help_text="the latest call back",
    )

    objects = CallbackQuerySet.as_manager()

    class Meta:
        verbose_name = "callback request"
        ordering = ["requested_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["call"], name="one_callback_request_per_call"),
            models.CheckConstraint(
                name="callback_calling_has_call",
                condition=~Q(state="calling") | Q(callback_call__isnull=False),
            ),
        ]
        indexes = [
            models.Index(
                fields=["queue", "requested_at"],
                condition=Q(state__in=["open", "calling"]),
                name="callback_pending_by_queue",
            ),
        ]

    def __str__(self) -> str:
        return f"callback for {self.display_name or 'anonymous'} ({self.state})"

    @property
    def is_pending(self) -> bool:
        return self.state in PENDING_STATES
