"""Transfers: the call's operator party hands the caller on to an operator or a queue.

One row per transfer, opened by `Call.transfer` under the call's row lock and ended
exactly once (`outcome` from pending) by whatever settles it: the answer that takes the
call (`completed`; attended: the operator completing the consult), the consult called off
(`cancelled`, attended only), the target letting its ring run out or declining it (`unanswered`:
the call falls back to its queue's line), or the call ending first (`call_ended`). The
database keeps it to one open transfer per call (a partial unique index), whatever the
timing of two transfers at once.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class TransferKind(models.TextChoices):
    BLIND = "blind"
    # Attended: the operator consults the target first (caller held), then completes or
    # cancels (calls/models/consult.py).
    ATTENDED = "attended"


class TransferOutcome(models.TextChoices):
    PENDING = "pending"
    COMPLETED = "completed"  # the target (or the queue's member) answered
    UNANSWERED = "unanswered"  # the operator let it ring out or declined: back to the line
    CALL_ENDED = "call_ended"  # the caller hung up (or the call ended) first
    CANCELLED = "cancelled"  # attended: the consult was called off, back to the caller


class Transfer(models.Model):
    call = models.ForeignKey("calls.Call", on_delete=models.CASCADE, related_name="transfers")
    kind = models.CharField(max_length=16, choices=TransferKind.choices, default="blind")
    # Who transferred: the operator party's label, and their leg (which left the call).
    by = models.CharField(max_length=200)
    from_leg = models.ForeignKey(
        "calls.Leg", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The target: one operator (a staff user) or one queue.
    to_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="transfers_received",
    )
    to_queue = models.ForeignKey(
        "calls.Queue", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=16, choices=TransferOutcome.choices, default=TransferOutcome.PENDING
    )
    # The leg of whoever took the call (completed only; attended: from the target's answer).
    to_leg = models.ForeignKey(
        "calls.Leg", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Attended: when the target answered the consult (None: it rang, or still rings).
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["call"], condition=Q(outcome="pending"), name="one_open_transfer_per_call"
            ),
            models.CheckConstraint(
                name="transfer_ended_unless_pending",
                condition=Q(outcome="pending", ended_at=None)
                | (~Q(outcome="pending") & ~Q(ended_at=None)),
            ),
        ]

    def __str__(self) -> str:
        return f"transfer of {str(self.call_id)[:8]} to {self.target_label} ({self.outcome})"

    @property
    def target_label(self) -> str:
        if self.to_user_id is not None and self.to_user is not None:
            return f"operator {self.to_user.get_username()}"
        if self.to_queue_id is not None and self.to_queue is not None:
            return f"queue {self.to_queue.public_id}"
        return "?"

    @property
    def is_direct(self) -> bool:
        """To one operator: nobody else may take the call while it rings for them."""
        return self.to_user_id is not None
