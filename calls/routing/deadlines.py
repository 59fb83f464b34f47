"""The routing engine's deadlines, expired by calls.deadlines' sweep (sync: the database
thread). Every expiry locks its rows and re-checks, so two daphnes sweeping at once
expire each thing once. Each returns the queues to route next.

- an offer rings out: `missed`, the operator's `missed_in_a_row` + 1 (at
  CALLBRIDGE_AWAY_AFTER_MISSES: `away`), `queue.offer_missed`; the call goes to the next;
- a wrap-up ends: the operator is free again;
- a caller's maximum wait (the call's `ring_deadline`) passes: the queue's overflow rule;
- a voicemail stage's deadline passes (calls.voicemail.expire_stages).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from calls.errors import CallStateError
from calls.models import Call, CallState
from calls.models.operator_status import Availability, OperatorStatus
from calls.models.queue import OfferOutcome, Overflow, QueueOffer
from calls.principals import SYSTEM
from calls.routing import engine
from calls.routing.offers import announce_status, end_offers, pending
from calls.voicemail import expire_stages, offer_stage

logger = logging.getLogger(__name__)


def away_after_misses() -> int:
    return int(settings.CALLBRIDGE_AWAY_AFTER_MISSES)


def expire_offer(offer_id: int, now: datetime) -> int | None:
    """Ring out one offer if it is still pending past its deadline; its queue, or None."""
    call_id = QueueOffer.objects.filter(pk=offer_id).values_list("call_id", flat=True).first()
    if call_id is None:
        return None
    with transaction.atomic():
        Call.objects.select_for_update().filter(pk=call_id).first()  # lock order: call first
        found = pending(pk=offer_id, deadline__lte=now)
        if not found:
            return None  # answered, cancelled or expired meanwhile
        the_offer = found[0]
        status = OperatorStatus.objects.select_for_update().filter(user_id=the_offer.operator_id)
        locked = status.first()
        if not end_offers(found, OfferOutcome.MISSED, now):
            return None
        if locked is not None:
            misses = locked.missed_in_a_row + 1
            changes: dict[str, object] = {"missed_in_a_row": misses}
            if misses >= away_after_misses() and locked.availability == Availability.AVAILABLE:
                changes.update(
                    availability=Availability.AWAY,
                    availability_changed_at=now,
                    availability_changed_by=f"{SYSTEM.label}: {misses} offers rang out",
                )
                logger.info("operator %s set away: %s offers rang out", locked.user_id, misses)
            OperatorStatus.objects.filter(pk=locked.pk).update(**changes)
        announce_status([the_offer.operator_id])
        return the_offer.queue_id


def expire_offers(now: datetime | None = None) -> set[int]:
    now = now or timezone.now()
    due = QueueOffer.objects.filter(outcome=OfferOutcome.PENDING, deadline__lte=now)
    queues = set()
    for offer_id in due.order_by("deadline").values_list("pk", flat=True):
        queue = expire_offer(offer_id, now)
        if queue is not None:
            queues.add(queue)
    return queues


def expire_wrap_ups(now: datetime | None = None) -> set[int]:
    """Operators whose wrap-up passed: cleared (once), their queues to route."""
    now = now or timezone.now()
    done = []
    for status_id in OperatorStatus.objects.filter(wrap_up_until__lte=now).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            locked = OperatorStatus.objects.select_for_update().filter(
                pk=status_id, wrap_up_until__lte=now
            )
            user_id = locked.values_list("user_id", flat=True).first()
            if user_id is None:
                continue
            locked.update(wrap_up_until=None)
            announce_status([user_id])
            done.append(user_id)
    return engine.queues_of(done)


def overflow(call_id: uuid.UUID, now: datetime) -> set[int]:
    """Apply the queue's overflow rule to a caller who waited their maximum: `queue` moves
    the call on (a new maximum wait there), `refuse` ends it (`no_operator`), `voicemail`
    takes it out of the line into the voicemail stage (calls.voicemail; any queue, the
    default one too when chosen). Otherwise the default queue (`open_answer`) ends it as
    `missed`, as before queues."""
    with transaction.atomic():
        # No select_related: PostgreSQL refuses FOR UPDATE on a nullable join.
        call = Call.objects.select_for_update().get(pk=call_id)
        if call.state != CallState.RINGING or call.ring_deadline is None:
            return set()
        if call.ring_deadline > now:
            return set()  # moved on meanwhile (another process overflowed it)
        queue = call.queue
        freed = {o.operator_id for o in end_offers(pending(call=call), OfferOutcome.CANCELLED, now)}
        announce_status(freed)
        target = queue.overflow_queue if queue is not None else None
        if target is not None and target.public_id in _queues_visited(call):
            # A loop of overflow rules (the admin refuses to save one, but rules change
            # while callers wait): a caller never goes round again; the rule refuses.
            logger.warning("call %s already waited in %s: refused", call.pk, target.public_id)
            target = None
        if queue is not None and queue.overflow == Overflow.QUEUE and target is not None:
            # The default queue's maximum wait is the ring timeout, read live (Call.start).
            wait_s = settings.CALLBRIDGE_RING_TIMEOUT_S if target.is_default else target.max_wait_s
            deadline = now + timedelta(seconds=wait_s)
            Call.objects.filter(pk=call.pk).update(
                queue=target, queued_at=now, ring_deadline=deadline
            )
            call.record_event(
                "queue.overflowed",
                SYSTEM,
                {"from": queue.public_id, "to": target.public_id, "waitedS": _waited(call, now)},
            )
            return {target.pk} | engine.queues_of(freed)
        try:
            if queue is not None and queue.overflow == Overflow.VOICEMAIL:
                offer_stage(call, queue, now)
            elif queue is None or queue.open_answer:
                call.miss()
            else:
                call.refuse()
        except CallStateError:
            return set()
        return engine.queues_of(freed)


def _queues_visited(call: Call) -> set[str]:
    visited = set()
    for name, data in call.events.filter(name__in=["queue.joined", "queue.overflowed"]).values_list(
        "name", "data"
    ):
        visited.add(data.get("queue") if name == "queue.joined" else data.get("to"))
    return visited


def _waited(call: Call, now: datetime) -> float:
    since = call.queued_at or call.created_at
    return round((now - since).total_seconds(), 3)


def expire_waits(now: datetime | None = None) -> set[int]:
    now = now or timezone.now()
    queues: set[int] = set()
    for call_id in Call.objects.overdue_ringing(now).values_list("pk", flat=True):
        queues |= overflow(call_id, now)
    return queues


def sweep() -> list[datetime | None]:
    """Expire what is due and route what it freed; the next routing deadlines."""
    now = timezone.now()
    queues = expire_waits(now) | expire_offers(now) | expire_wrap_ups(now)
    engine.route_safely(queues)
    expire_stages(now)
    offer_next = (
        QueueOffer.objects.filter(outcome=OfferOutcome.PENDING)
        .order_by("deadline")
        .values_list("deadline", flat=True)
        .first()
    )
    wrap_up_next = (
        OperatorStatus.objects.filter(wrap_up_until__isnull=False)
        .order_by("wrap_up_until")
        .values_list("wrap_up_until", flat=True)
        .first()
    )
    return [offer_next, wrap_up_next]
