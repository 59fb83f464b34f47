"""Offering waiting callers to free operators: `route(queue_id)`.

One transaction holding the queue's row lock, so routing of one queue is serialized across
processes. Lock order, everywhere in routing: queue → call(s) → operator status → offers.
The database has the last word: an operator's second pending offer violates the partial
unique index (another queue's routing got there first) and that operator is skipped.

Queues with `open_answer` (the default queue) make no offers: every operator already sees
every ringing call on the feed and may answer it, as before queues; offers there would
only hold operators (one pending offer each) away from the queues that need them.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from calls.model_signals import operator_status_changed
from calls.models import Call, CallState, Leg
from calls.models.call import OPEN_STATES
from calls.models.operator_status import Availability, OperatorStatus
from calls.models.queue import OfferOutcome, Queue, QueueOffer, QueueStrategy
from calls.models.transfer import Transfer, TransferOutcome
from calls.principals import SYSTEM
from calls.routing.strategy import Candidate, offer_order

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offered:
    offer_id: int
    call_id: uuid.UUID
    queue_id: int
    operator_id: int
    operator: str  # the operator's username, as the timeline and the feed name them
    deadline: datetime


def _free_candidates(queue: Queue, now: datetime) -> list[Candidate]:
    """The queue's members who could take a call now (read without locks: each is locked
    and re-checked before it gets an offer)."""
    members = queue.member_users().values_list("pk", flat=True)
    statuses = (
        OperatorStatus.objects.filter(user_id__in=members, availability=Availability.AVAILABLE)
        .filter(Q(wrap_up_until__isnull=True) | Q(wrap_up_until__lte=now))
        .exclude(user_id__in=_ringing())
        .exclude(user_id__in=_busy())
        .values_list("user_id", "last_call_ended_at", "last_offered_at")
    )
    return [Candidate(user_id, ended, offered) for user_id, ended, offered in statuses]


def _ringing() -> Any:
    return QueueOffer.objects.filter(outcome=OfferOutcome.PENDING).values("operator_id")


def _busy() -> Any:
    return Leg.objects.filter(user__isnull=False, left_at=None, call__state__in=OPEN_STATES).values(
        "user_id"
    )


def _ringing_one_operator() -> Any:
    return Transfer.objects.filter(outcome=TransferOutcome.PENDING, to_user__isnull=False).values(
        "call_id"
    )


def _still_free(user_id: int, now: datetime) -> OperatorStatus | None:
    """The operator's status row, locked, if they are still free (an answer elsewhere
    takes the same lock before it cancels their offers)."""
    status = OperatorStatus.objects.select_for_update().filter(user_id=user_id).first()
    if status is None or status.availability != Availability.AVAILABLE:
        return None
    if status.wrap_up_until is not None and status.wrap_up_until > now:
        return None
    if QueueOffer.objects.filter(operator_id=user_id, outcome=OfferOutcome.PENDING).exists():
        return None
    if Leg.objects.filter(user_id=user_id, left_at=None, call__state__in=OPEN_STATES).exists():
        return None
    return status


def _offer(queue: Queue, call: Call, status: OperatorStatus, now: datetime) -> Offered | None:
    deadline = now + timedelta(seconds=queue.ring_timeout_s)
    try:
        with transaction.atomic():  # a savepoint: a lost race undoes only this offer
            offer = QueueOffer.objects.create(
                call=call,
                queue=queue,
                operator_id=status.user_id,
                offered_at=now,
                deadline=deadline,
            )
    except IntegrityError:
        return None  # rung for another call meanwhile (one pending offer per operator)
    OperatorStatus.objects.filter(pk=status.pk).update(last_offered_at=now)
    username = status.user.get_username()
    call.record_event(
        "queue.offered",
        SYSTEM,
        {
            "queue": queue.public_id,
            "operator": username,
            "operatorID": status.user_id,
            "offerID": offer.pk,
            "deadline": deadline.isoformat(),
        },
    )
    # The feed's `operator.status`: this operator's activity is now `ringing`.
    user_id = status.user_id
    transaction.on_commit(lambda: operator_status_changed.send(sender=Call, user_id=user_id))
    return Offered(offer.pk, call.pk, queue.pk, status.user_id, username, deadline)


def _next_for(
    call: Call,
    free: list[int],
    missed_by: dict[uuid.UUID, set[int]],
    declined_by: dict[uuid.UUID, set[int]],
    ring_all: bool,
) -> int | None:
    """Take the next operator for `call` off `free`, or None if nobody free may have it.
    Whoever declined this call is never offered it again (they stay free for the next
    call). One by one, an operator who let this call ring out goes after everyone who
    has not (skipped, not dropped: if nobody else is free, they are rung again).
    ring_all rings everybody else anyway."""
    declined = declined_by.get(call.pk, set())
    allowed = [index for index, user_id in enumerate(free) if user_id not in declined]
    if not allowed:
        return None
    if not ring_all:
        missed = missed_by.get(call.pk, set())
        for index in allowed:
            if free[index] not in missed:
                return free.pop(index)
    return free.pop(allowed[0])


def route(queue_id: int) -> list[Offered]:
    """Offer the queue's waiting calls, oldest first, to its free members by its strategy.

    ring_all: an unanswered call keeps ringing every free member (one who becomes free
    while it waits is rung too). The other strategies: one pending offer per call, each
    to the next operator in the strategy's order.
    """
    offered: list[Offered] = []
    with transaction.atomic():
        queue = Queue.objects.select_for_update().filter(pk=queue_id).first()
        if queue is None or queue.open_answer:
            return offered
        waiting = list(
            Call.objects.select_for_update()
            .filter(queue=queue, state=CallState.RINGING)
            # A transfer ringing one operator: nobody else is offered it meanwhile.
            .exclude(pk__in=_ringing_one_operator())
            .order_by("queued_at", "created_at", "id")
        )
        if not waiting:
            return offered
        now = timezone.now()
        order = offer_order(queue.strategy, _free_candidates(queue, now))
        free = [candidate.operator_id for group in order for candidate in group]
        if not free:
            return offered
        pending_calls = set(
            QueueOffer.objects.filter(call__in=waiting, outcome=OfferOutcome.PENDING).values_list(
                "call_id", flat=True
            )
        )
        ring_all = queue.strategy == QueueStrategy.RING_ALL
        missed_by: dict[uuid.UUID, set[int]] = {}
        declined_by: dict[uuid.UUID, set[int]] = {}
        for call_id, user_id, outcome in QueueOffer.objects.filter(
            call__in=waiting,
            queue=queue,
            outcome__in=[OfferOutcome.MISSED, OfferOutcome.DECLINED],
        ).values_list("call_id", "operator_id", "outcome"):
            by = declined_by if outcome == OfferOutcome.DECLINED else missed_by
            by.setdefault(call_id, set()).add(user_id)
        for call in waiting:
            if not free:
                break
            if not ring_all and call.pk in pending_calls:
                continue  # already ringing its operator
            while free:
                operator_id = _next_for(call, free, missed_by, declined_by, ring_all)
                if operator_id is None:
                    break  # everyone free declined this call: they wait for the next
                status = _still_free(operator_id, now)
                if status is None:
                    continue
                made = _offer(queue, call, status, now)
                if made is None:
                    continue
                offered.append(made)
                if not ring_all:
                    break
            # ring_all: the oldest call took every free member; the next calls wait
            # for those offers to end.
    return offered


def next_free_member(queue: Queue, exclude: int | None = None) -> int | None:
    """The member the queue would offer a call to now, by its strategy (an attended
    transfer's target; read without locks: the consult locks and re-checks them)."""
    order = offer_order(queue.strategy, _free_candidates(queue, timezone.now()))
    free = [candidate.operator_id for group in order for candidate in group]
    return next((user_id for user_id in free if user_id != exclude), None)


def route_safely(queue_ids: set[int] | list[int]) -> list[Offered]:
    """Route each queue; a failure is logged, not raised (called after commit, where the
    caller's work is already done and the deadlines service retries)."""
    offered: list[Offered] = []
    for queue_id in sorted(set(queue_ids)):
        try:
            offered.extend(route(queue_id))
        except Exception:
            logger.exception("routing queue %s failed", queue_id)
    return offered


def queues_of(user_ids: set[int] | list[int]) -> set[int]:
    """The queues (that make offers) these operators are members of."""
    queues: set[int] = set()
    ids = set(user_ids)
    if not ids:
        return queues
    for queue in Queue.objects.filter(open_answer=False):
        if queue.member_users().filter(pk__in=ids).exists():
            queues.add(queue.pk)
    return queues
