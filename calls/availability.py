"""Operators' availability and activity, and queues' waiting callers, as the faces show them.

Only staff operators have a status: an API token is an operator of the default queue (an
integrator's backend), never offered calls, so it has no availability to read or set.
Reading is in bulk: a list of operators costs the same few queries as one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db.models import Count, Min
from django.utils import timezone

from calls.errors import CallbridgeError, ErrorCode
from calls.models import (
    Availability,
    Call,
    CallState,
    OperatorStatus,
    Queue,
    activities,
    operator_users,
)
from calls.operators import is_operator_user
from calls.principals import Principal


@dataclass(frozen=True)
class OperatorView:
    user_id: int
    username: str
    name: str
    availability: str
    activity: str
    changed_at: datetime | None
    changed_by: str
    last_call_ended_at: datetime | None


@dataclass(frozen=True)
class QueueView:
    queue: Queue
    waiting: int
    longest_wait_s: float | None  # of the caller waiting longest, now
    member_count: int
    members: tuple[OperatorView, ...] = ()  # filled by queue_detail only


def require_staff_operator(principal: Principal) -> Any:
    """The staff user behind the principal, if they operate; FORBIDDEN otherwise."""
    if principal.api_token is not None:
        raise CallbridgeError(
            ErrorCode.FORBIDDEN,
            "API tokens have no availability: they answer the default queue only and are"
            " never offered calls; sign in as a staff operator",
        )
    if principal.user is None or not is_operator_user(principal.user):
        raise CallbridgeError(ErrorCode.FORBIDDEN, "Only operators have an availability")
    return principal.user


def views_of(users: Iterable[Any], now: datetime | None = None) -> list[OperatorView]:
    """Each user's status: one query for the rows, three for the activities."""
    users = list(users)
    rows = {row.user_id: row for row in OperatorStatus.objects.filter(user__in=users)}
    doing = activities([user.pk for user in users], now)
    found = []
    for user in users:
        row = rows.get(user.pk)
        found.append(
            OperatorView(
                user_id=user.pk,
                username=user.get_username(),
                name=user.get_full_name().strip(),
                availability=row.availability if row else Availability.OFFLINE,
                activity=doing[user.pk],
                changed_at=row.availability_changed_at if row else None,
                changed_by=row.availability_changed_by if row else "",
                last_call_ended_at=row.last_call_ended_at if row else None,
            )
        )
    return found


def view_of(user: Any) -> OperatorView:
    return views_of([user])[0]


def view_of_id(user_id: int) -> OperatorView | None:
    """The status of the operator `user_id` (None when they no longer operate)."""
    user = operator_users().filter(pk=user_id).first()
    return view_of(user) if user is not None else None


def all_operators() -> list[OperatorView]:
    return views_of(operator_users().order_by("username"))


def set_availability(principal: Principal, availability: Any) -> OperatorView:
    user = require_staff_operator(principal)
    if availability not in Availability.values:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT,
            "availability must be one of " + ", ".join(Availability.values),
        )
    OperatorStatus.set_availability(user, availability, principal)
    return view_of(user)


def queue_views(queues: Sequence[Queue], now: datetime | None = None) -> list[QueueView]:
    """Waiting callers (ringing calls in the queue) and the longest wait, in one query;
    members counted per queue."""
    now = now or timezone.now()
    waiting = {
        row["queue_id"]: row
        for row in Call.objects.filter(queue__in=queues, state=CallState.RINGING)
        .values("queue_id")
        .annotate(count=Count("id"), oldest=Min("queued_at"))
    }
    views = []
    for queue in queues:
        row = waiting.get(queue.pk)
        oldest = row["oldest"] if row else None
        views.append(
            QueueView(
                queue=queue,
                waiting=row["count"] if row else 0,
                longest_wait_s=max((now - oldest).total_seconds(), 0.0) if oldest else None,
                member_count=queue.member_users().count(),
            )
        )
    return views


def queue_detail(public_id: str) -> QueueView:
    """One queue with its members' statuses (NOT_FOUND if there is no such queue)."""
    queue = Queue.objects.select_related("overflow_queue").named(public_id)
    members = tuple(views_of(queue.member_users().order_by("username")))
    return replace(queue_views([queue])[0], members=members)
