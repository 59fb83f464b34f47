"""An operator's activity, derived: never stored twice.

`ringing` (a pending offer), `busy` (a leg in an open call), `wrap_up` (until the status
row's `wrap_up_until`), else `idle`. One query per kind, whatever the number of operators.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import models
from django.utils import timezone

from calls.models.call import OPEN_STATES, Leg
from calls.models.operator_status import OperatorStatus
from calls.models.queue import OfferOutcome, QueueOffer


class Activity(models.TextChoices):
    RINGING = "ringing"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    IDLE = "idle"


def activities(user_ids: Iterable[Any], now: datetime | None = None) -> dict[Any, Activity]:
    """Each user's activity by id: three queries for any number of users."""
    ids = list(user_ids)
    if not ids:
        return {}
    now = now or timezone.now()
    ringing = set(
        QueueOffer.objects.filter(operator_id__in=ids, outcome=OfferOutcome.PENDING).values_list(
            "operator_id", flat=True
        )
    )
    busy = set(
        Leg.objects.filter(user_id__in=ids, left_at=None, call__state__in=OPEN_STATES).values_list(
            "user_id", flat=True
        )
    )
    wrapping = set(
        OperatorStatus.objects.filter(user_id__in=ids, wrap_up_until__gt=now).values_list(
            "user_id", flat=True
        )
    )

    def one(user_id: Any) -> Activity:
        if user_id in ringing:
            return Activity.RINGING
        if user_id in busy:
            return Activity.BUSY
        if user_id in wrapping:
            return Activity.WRAP_UP
        return Activity.IDLE

    return {user_id: one(user_id) for user_id in ids}


def activity_of(user_id: Any, now: datetime | None = None) -> Activity:
    return activities([user_id], now)[user_id]
