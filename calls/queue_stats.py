"""Queue statistics over a period: service level, abandoned, waits, handle and talk time.

One module for the REST API and the admin. Every number comes from aggregate queries over
Call, QueueOffer and CallEvent rows (a handful per request, whatever the number of calls):

- a queue's calls in a period are those that *joined* it then (`queued_at`); a call that
  overflowed counts in the queue it moved to (its wait there starts when it moved) and as
  `overflowed` in the one it left (its `queue.overflowed` event);
- the wait of an answered call is `answered_at - queued_at`; the handle time is
  `ended_at - answered_at` of answered calls that ended;
- an operator's numbers are the calls they answered (`answered_at` in the period), the
  offers that rang out on them (`offered_at` in the period) and their talk time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from calls.errors import CallbridgeError, ErrorCode
from calls.models import Call, CallEvent, CallState, EndReason, OfferOutcome, Queue, QueueOffer
from calls.models.operator_status import operator_users

WAIT = ExpressionWrapper(F("answered_at") - F("queued_at"), output_field=DurationField())
HANDLE = ExpressionWrapper(F("ended_at") - F("answered_at"), output_field=DurationField())


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime


@dataclass(frozen=True)
class QueueStats:
    queue: Queue
    period: Period
    service_level_s: int
    waiting: int  # now, whatever the period
    longest_wait_s: float | None  # now
    joined: int
    answered: int
    answered_within_service_level: int
    service_level_pct: float | None  # of answered calls; None when none was answered
    abandoned: int  # the caller hung up while waiting
    missed: int  # rang out (the default queue) or every operator rejected it
    refused: int  # nobody took it within the maximum wait (`no_operator`)
    callbacks_requested: int  # the caller asked to be called back instead of waiting
    overflowed: int  # moved on to the overflow queue
    voicemails: int  # the caller left a message (overflow `voicemail`)
    average_wait_s: float | None  # of answered calls (the average speed of answer)
    average_handle_s: float | None  # answer → end, of answered calls that ended


@dataclass(frozen=True)
class OperatorStats:
    username: str
    name: str
    answered: int
    offers_missed: int
    offers_declined: int
    talk_time_s: float  # of the answered calls that ended


def _instant(raw: str, field: str, end: bool) -> datetime:
    """An ISO 8601 date-time (naive: the server's time zone) or a date (its start; for
    `until`, the end of that day)."""
    try:
        # The date first: parse_datetime takes a bare date as its midnight.
        day = parse_date(raw)
        moment = None if day is not None else parse_datetime(raw)
        if moment is None and day is not None:
            moment = datetime.combine(day + timedelta(days=1) if end else day, time.min)
        if moment is not None and timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        if moment is not None:
            moment.astimezone(UTC)  # representable everywhere (not past year 9999 in UTC)
    except (ValueError, OverflowError):  # well-formed but impossible: month 13, 9999-12-31
        moment = None
    if moment is None:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT,
            f"{field} must be an ISO 8601 date or date-time",
            details={"field": field},
        )
    return moment


def today() -> Period:
    """Today in the server's time zone (TIME_ZONE)."""
    start = timezone.make_aware(datetime.combine(timezone.localdate(), time.min))
    end = timezone.make_aware(datetime.combine(timezone.localdate() + timedelta(days=1), time.min))
    return Period(start, end)


def parse_period(since: str | None, until: str | None) -> Period:
    """The `?since=&until=` of a request; either left out: today's bound. A bad value, or
    `until` not after `since`, is INVALID_ARGUMENT."""
    default = today()
    start = default.since if not since else _instant(since, "since", end=False)
    end = default.until if not until else _instant(until, "until", end=True)
    if end <= start:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, "until must be after since", details={"field": "until"}
        )
    return Period(start, end)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return round(value.total_seconds(), 3)
    return round(float(value) / 1_000_000, 3)  # a backend that returns microseconds


def queue_stats(queues: list[Queue], period: Period) -> list[QueueStats]:
    """The statistics of `queues` over `period`: three queries for any number of queues."""
    level = timedelta(seconds=settings.CALLBRIDGE_SERVICE_LEVEL_S)
    ids = [queue.pk for queue in queues]
    now = timezone.now()
    answered = Q(answered_at__isnull=False)
    rows: dict[Any, Any] = {
        row["queue"]: row
        for row in Call.objects.filter(
            queue__in=ids, queued_at__gte=period.since, queued_at__lt=period.until
        )
        .alias(wait=WAIT, handle=HANDLE)
        .order_by()
        .values("queue")
        .annotate(
            joined=Count("pk"),
            answered=Count("pk", filter=answered),
            within=Count("pk", filter=answered & Q(wait__lte=level)),
            abandoned=Count("pk", filter=Q(answered_at=None, end_reason=EndReason.CANCELLED)),
            missed=Count(
                "pk",
                filter=Q(answered_at=None, end_reason__in=[EndReason.MISSED, EndReason.REJECTED]),
            ),
            refused=Count("pk", filter=Q(end_reason=EndReason.NO_OPERATOR)),
            callbacks=Count("pk", filter=Q(end_reason=EndReason.CALLBACK_REQUESTED)),
            voicemails=Count("pk", filter=Q(end_reason=EndReason.VOICEMAIL)),
            average_wait=Avg("wait", filter=answered),
            average_handle=Avg("handle", filter=answered & Q(ended_at__isnull=False)),
        )
    }
    waiting: dict[Any, Any] = {
        row["queue"]: row
        for row in Call.objects.filter(queue__in=ids, state=CallState.RINGING)
        .order_by()
        .values("queue")
        .annotate(count=Count("pk"), oldest=Min("queued_at"))
    }
    by_public_id = {queue.public_id: queue.pk for queue in queues}
    overflowed: dict[int, int] = {}
    for event_row in (
        CallEvent.objects.filter(
            name="queue.overflowed",
            created_at__gte=period.since,
            created_at__lt=period.until,
            data__from__in=list(by_public_id),
        )
        .order_by()
        .values("data__from")
        .annotate(count=Count("pk"))
    ):
        overflowed[by_public_id[event_row["data__from"]]] = event_row["count"]
    result = []
    for queue in queues:
        row = rows.get(queue.pk, {})
        now_row = waiting.get(queue.pk, {})
        oldest = now_row.get("oldest")
        count_answered = row.get("answered", 0)
        within = row.get("within", 0)
        result.append(
            QueueStats(
                queue=queue,
                period=period,
                service_level_s=settings.CALLBRIDGE_SERVICE_LEVEL_S,
                waiting=now_row.get("count", 0),
                longest_wait_s=None if oldest is None else _seconds(now - oldest),
                joined=row.get("joined", 0),
                answered=count_answered,
                answered_within_service_level=within,
                service_level_pct=(
                    round(100 * within / count_answered, 1) if count_answered else None
                ),
                abandoned=row.get("abandoned", 0),
                missed=row.get("missed", 0),
                refused=row.get("refused", 0),
                callbacks_requested=row.get("callbacks", 0),
                overflowed=overflowed.get(queue.pk, 0),
                voicemails=row.get("voicemails", 0),
                average_wait_s=_seconds(row.get("average_wait")),
                average_handle_s=_seconds(row.get("average_handle")),
            )
        )
    return result


def operator_stats(period: Period, queue: Queue | None = None) -> list[OperatorStats]:
    """Every operator's answered calls, missed and declined offers and talk time over `period` (only
    those of `queue`'s calls if given; its members only then): three queries."""
    users = (queue.member_users() if queue is not None else operator_users()).order_by("username")
    calls = Call.objects.filter(
        operator_user__isnull=False,
        answered_at__gte=period.since,
        answered_at__lt=period.until,
    )
    offers = QueueOffer.objects.filter(
        outcome__in=[OfferOutcome.MISSED, OfferOutcome.DECLINED],
        offered_at__gte=period.since,
        offered_at__lt=period.until,
    )
    if queue is not None:
        calls = calls.filter(queue=queue)
        offers = offers.filter(queue=queue)
    answered: dict[Any, Any] = {
        row["operator_user"]: row
        for row in calls.alias(handle=HANDLE)
        .order_by()
        .values("operator_user")
        .annotate(
            count=Count("pk"),
            talk=Sum("handle", filter=Q(ended_at__isnull=False)),
        )
    }
    settled: dict[tuple[Any, str], int] = {
        (row["operator"], row["outcome"]): row["count"]
        for row in offers.order_by().values("operator", "outcome").annotate(count=Count("pk"))
    }
    return [
        OperatorStats(
            username=user.get_username(),
            name=user.get_full_name(),
            answered=answered.get(user.pk, {}).get("count", 0),
            offers_missed=settled.get((user.pk, OfferOutcome.MISSED), 0),
            offers_declined=settled.get((user.pk, OfferOutcome.DECLINED), 0),
            talk_time_s=_seconds(answered.get(user.pk, {}).get("talk")) or 0.0,
        )
        for user in users
    ]


__all__ = [
    "OperatorStats",
    "Period",
    "QueueStats",
    "operator_stats",
    "parse_period",
    "queue_stats",
    "today",
]
