"""Offers ending with the call they ring for, inside that call's own transaction.

A receiver of CallEvent's post_save (connected by calls.routing.triggers): it runs inside
`Call._transition`, under the call's row lock, so an answer and the offers it settles
commit together or not at all, whichever path answered (REST, WebSocket offer, WaGo):
- `call.answered`: the answerer's offer `answered` (needed, unless the queue has
  `open_answer`: without it the answer fails with FORBIDDEN and changes nothing), the
  call's other offers and the answerer's offers of other calls `cancelled`;
- `call.ended`: the call's pending offers `cancelled`; the operator who was on it starts
  wrap-up (`wrap_up_until`, `last_call_ended_at`).
After commit, the queues that lost an operator and the queues of the operators freed are
routed (`route_after_commit`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from calls.errors import CallbridgeError, ErrorCode
from calls.model_signals import operator_status_changed
from calls.models import Call, CallEvent, Leg, consult
from calls.models.call import transfer_unanswered
from calls.models.operator_status import Availability, OperatorStatus
from calls.models.queue import OfferOutcome, QueueOffer
from calls.principals import SYSTEM
from calls.routing import engine


def route_after_commit(queues: set[int], operators: set[int]) -> None:
    """Route these queues and the queues of these operators (freed: someone may wait)."""
    engine.route_safely(set(queues) | engine.queues_of(operators))


def end_offers(
    offers: Iterable[QueueOffer], outcome: OfferOutcome, now: datetime
) -> list[QueueOffer]:
    """Settle pending offers (each only if still pending: another process may have) and
    record it on each offer's call. Returns the ones this call settled."""
    ended = []
    for offer in offers:
        if not QueueOffer.objects.filter(pk=offer.pk, outcome=OfferOutcome.PENDING).update(
            outcome=outcome, ended_at=now
        ):
            continue
        name = "queue.offer_missed" if outcome == OfferOutcome.MISSED else "queue.offer_ended"
        offer.call.record_event(
            name,
            SYSTEM,
            {
                "queue": offer.queue.public_id,
                "operator": offer.operator.get_username(),
                "operatorID": offer.operator_id,
                "offerID": offer.pk,
                "outcome": outcome,
            },
        )
        if outcome in (OfferOutcome.MISSED, OfferOutcome.DECLINED):
            # A consult that rang this operator is cancelled; a transfer that rang this
            # one operator: the call goes back to its line.
            if not consult.unanswered(offer.call, outcome, now):
                transfer_unanswered(offer.call, outcome, now)
        elif outcome == OfferOutcome.CANCELLED:
            consult.unanswered(offer.call, "withdrawn", now)  # the target went away
        ended.append(offer)
    return ended


def pending(**filters: Any) -> list[QueueOffer]:
    return list(
        QueueOffer.objects.select_related("call", "queue", "operator")
        .filter(outcome=OfferOutcome.PENDING, **filters)
        .order_by("pk")
    )


def announce_status(user_ids: Iterable[int]) -> None:
    for user_id in set(user_ids):
        transaction.on_commit(_status_changed(user_id))


def _status_changed(user_id: int) -> Callable[[], None]:
    def send() -> None:
        operator_status_changed.send(sender=Call, user_id=user_id)

    return send


def on_call_event_saved(sender: Any, instance: CallEvent, created: bool, **kwargs: Any) -> None:
    if not created:
        return
    if instance.name == "call.answered":
        _answered(instance)
    elif instance.name == "call.ended":
        _ended(instance)
    elif instance.name == "call.transfer_started":
        _transferred(instance)
    elif instance.name == "call.consult_answered":
        _consult_answered(instance)
    elif instance.name in ("call.consult_completed", "call.consult_cancelled"):
        _consult_ended(instance)


def _answered(event: CallEvent) -> None:
    call = event.call
    leg = event.leg
    answerer = leg.user_id if leg is not None else None
    now = timezone.now()
    if answerer is not None:
        # The answerer's status row before their offers: routing takes it before it
        # offers them a call, so it never offers one to someone this makes busy.
        OperatorStatus.objects.select_for_update().filter(user_id=answerer).update(
            missed_in_a_row=0
        )
    mine = pending(call=call, operator_id=answerer) if answerer is not None else []
    if call.rings_by_offer_only() and not mine:
        raise CallbridgeError(ErrorCode.FORBIDDEN, "this call is not offered to you")
    end_offers(mine, OfferOutcome.ANSWERED, now)
    others = end_offers(pending(call=call), OfferOutcome.CANCELLED, now)
    elsewhere: list[QueueOffer] = []
    if answerer is not None:
        elsewhere = end_offers(pending(operator_id=answerer), OfferOutcome.CANCELLED, now)
    freed = {offer.operator_id for offer in others}
    announce_status(freed | ({answerer} if answerer is not None else set()))
    # The calls the answerer stops ringing for need someone else; the operators the
    # call stops ringing are free for the next caller.
    queues = {offer.queue_id for offer in elsewhere}
    transaction.on_commit(lambda: route_after_commit(queues, freed))


def _ended(event: CallEvent) -> None:
    call = event.call
    now = timezone.now()
    freed = {
        offer.operator_id for offer in end_offers(pending(call=call), OfferOutcome.CANCELLED, now)
    }
    operator = call.operator_user_id if call.answered_at is not None else None
    if operator is not None:
        wrap_up_s = call.queue.wrap_up_s if call.queue is not None else 0
        ended = call.ended_at or now
        OperatorStatus.objects.select_for_update().filter(user_id=operator).update(
            last_call_ended_at=ended,
            wrap_up_until=ended + timedelta(seconds=wrap_up_s) if wrap_up_s else None,
        )
        freed.add(operator)
    announce_status(freed)
    transaction.on_commit(lambda: route_after_commit(set(), freed))


def _transferred(event: CallEvent) -> None:
    """The transferring operator left the call: their wrap-up starts (the queue the call
    was in says how long); the target rings (its offer made with the transfer), or the
    target queue is routed after commit."""
    call = event.call
    leg_id = event.data.get("legID")
    leaving = Leg.objects.filter(pk=leg_id).values_list("user_id", flat=True).first()
    freed: set[int] = set()
    if leaving is not None:
        now = event.created_at
        wrap_up_s = call.queue.wrap_up_s if call.queue is not None else 0
        OperatorStatus.objects.select_for_update().filter(user_id=leaving).update(
            last_call_ended_at=now,
            wrap_up_until=now + timedelta(seconds=wrap_up_s) if wrap_up_s else None,
        )
        freed.add(leaving)
    target = event.data.get("toOperatorID")
    announce_status(freed | ({target} if isinstance(target, int) else set()))
    queues = {call.queue_id} if call.queue_id is not None and target is None else set()
    transaction.on_commit(lambda: route_after_commit(queues, freed))


def _consult_answered(event: CallEvent) -> None:
    """The consulted operator answered: their offer ends `answered`."""
    target = event.data.get("toOperatorID")
    if not isinstance(target, int):
        return
    OperatorStatus.objects.select_for_update().filter(user_id=target).update(missed_in_a_row=0)
    end_offers(pending(call=event.call, operator_id=target), OfferOutcome.ANSWERED, timezone.now())
    announce_status([target])


def _consult_ended(event: CallEvent) -> None:
    """A consult is over: an offer still ringing the target is cancelled and the target is
    free again; completed, the first operator left the call (their wrap-up starts, as a
    blind transfer's)."""
    call = event.call
    freed = {
        offer.operator_id
        for offer in end_offers(pending(call=call), OfferOutcome.CANCELLED, timezone.now())
    }
    target = event.data.get("toOperatorID")
    if event.name == "call.consult_cancelled" and isinstance(target, int):
        freed.add(target)
    leaving_leg = event.data.get("fromLegID")
    leaving = Leg.objects.filter(pk=leaving_leg).values_list("user_id", flat=True).first()
    if event.name == "call.consult_completed" and leaving is not None:
        now = event.created_at
        wrap_up_s = call.queue.wrap_up_s if call.queue is not None else 0
        OperatorStatus.objects.select_for_update().filter(user_id=leaving).update(
            last_call_ended_at=now,
            wrap_up_until=now + timedelta(seconds=wrap_up_s) if wrap_up_s else None,
        )
        freed.add(leaving)
    announce_status(freed | ({target} if isinstance(target, int) else set()))
    transaction.on_commit(lambda: route_after_commit(set(), freed))


def decline(call_id: Any, user_id: int) -> None:
    """The operator passes their offer of this call on: the offer ends `declined` (not a
    miss: they were there and said no), the call rings the next operator, and they are
    free for other calls but never offered this one again while it waits (engine.route).
    FORBIDDEN if it was never offered to them, CALL_STATE if their offer already ended."""
    with transaction.atomic():
        # Lock order: call → operator status → offers (as every path in routing).
        Call.objects.select_for_update().filter(pk=call_id).first()
        OperatorStatus.objects.select_for_update().filter(user_id=user_id).first()
        mine = pending(call_id=call_id, operator_id=user_id)
        if not mine:
            if QueueOffer.objects.filter(call_id=call_id, operator_id=user_id).exists():
                raise CallbridgeError(ErrorCode.CALL_STATE, "your offer of this call has ended")
            raise CallbridgeError(ErrorCode.FORBIDDEN, "this call is not offered to you")
        end_offers(mine, OfferOutcome.DECLINED, timezone.now())
        announce_status([user_id])
        queues = {offer.queue_id for offer in mine}
        transaction.on_commit(lambda: route_after_commit(queues, {user_id}))


def withdraw(user_id: int) -> set[int]:
    """An operator who is no longer available (away, offline) stops ringing: their pending
    offers are cancelled, each under its call's lock; the queues to route next."""
    queues: set[int] = set()
    for offer in pending(operator_id=user_id):
        with transaction.atomic():
            Call.objects.select_for_update().filter(pk=offer.call_id).first()  # lock order
            status = OperatorStatus.objects.select_for_update().filter(user_id=user_id).first()
            if status is None or status.availability == Availability.AVAILABLE:
                return queues  # available again meanwhile: let it ring
            if end_offers(pending(pk=offer.pk), OfferOutcome.CANCELLED, timezone.now()):
                queues.add(offer.queue_id)
    return queues
