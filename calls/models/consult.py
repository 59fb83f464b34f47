"""Attended transfer, the records: consult, answer, complete, cancel — under the call's lock.

A consult is a `Transfer` of kind `attended`, one open per call (the same partial unique
index as blind transfer's), on an active call that stays active throughout:
- start: the caller is held (`call.held`, unless held already), the target rings by a
  `QueueOffer` (so routing, the ring timeout, decline and the target's activity work as
  for any offer), `call.consult_started`;
- answer: the target's own leg joins the call (role `consult`), `call.consult_answered`;
- complete: the first operator's leg leaves (`left_at`), the target's leg becomes the
  call's operator leg and the target the call's operator, the hold ends:
  `call.consult_completed`, `call.resumed`;
- cancel (by the operator, by the target, or the target's ring ending unanswered): the
  target's leg leaves, the hold ends: `call.consult_cancelled`, `call.resumed`.
The call ending mid-consult settles it through `_settle_transfer` (`call_ended`).
Who may is calls.consult's question; these check only what the records say.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from calls.errors import CallStateError
from calls.models.call import (
    Call,
    CallEvent,
    CallMode,
    CallState,
    Leg,
    LegRole,
    _require_free,
)
from calls.models.queue import OfferOutcome, Queue, QueueOffer
from calls.models.transfer import Transfer, TransferKind, TransferOutcome
from calls.principals import SYSTEM, Principal


def _locked_active(call: Call) -> Call:
    locked = Call.objects.select_for_update().get(pk=call.pk)
    if locked.state != CallState.ACTIVE or locked.mode != CallMode.BRIDGE:
        raise CallStateError(f"only an active bridge call has consults (it is {locked.state})")
    return locked


def _open(call: Call) -> Transfer:
    consult = call.open_consult()
    if consult is None:
        raise CallStateError("no consult is under way")
    return consult


def start(call: Call, by: Principal, *, to_user: Any, queue: Queue | None = None) -> CallEvent:
    """`by` (the call's operator party) consults `to_user` (picked from `queue` if one was
    named). CALL_STATE unless the call is an active bridge call with `by` its operator, no
    transfer is open, and `to_user` is free now (their status row locked, as routing does)."""
    with transaction.atomic():
        locked = _locked_active(call)
        if (by.user, by.api_token) != (locked.operator_user, locked.operator_token):
            raise CallStateError("the call has another operator now")
        if locked.open_transfer() is not None:
            raise CallStateError("a transfer or consult of this call is under way")
        now = timezone.now()
        _require_free(to_user, now)
        ring_queue = queue or locked.queue or Queue.objects.default()
        from_leg = locked.legs.filter(role=LegRole.OPERATOR, left_at=None).first()
        consult = Transfer.objects.create(
            call=locked,
            kind=TransferKind.ATTENDED,
            by=by.label,
            from_leg=from_leg,
            to_user=to_user,
            to_queue=queue,
            started_at=now,
        )
        if locked.held_at is None:
            Call.objects.filter(pk=locked.pk).update(held_at=now, held_by=by.label)
            locked.held_at, locked.held_by = now, by.label
            locked.record_event(
                "call.held", by, {"state": locked.state, "consult": True, "transferID": consult.pk}
            )
        offer = QueueOffer.objects.create(
            call=locked,
            queue=ring_queue,
            operator=to_user,
            offered_at=now,
            deadline=now + timedelta(seconds=int(ring_queue.ring_timeout_s)),
        )
        data: dict[str, Any] = {
            "transferID": consult.pk,
            "kind": consult.kind,
            "legID": str(from_leg.pk) if from_leg is not None else None,
            "toOperator": to_user.get_username(),
            "toOperatorID": to_user.pk,
            "offerID": offer.pk,
            "deadline": offer.deadline.isoformat(),
        }
        if queue is not None:
            data["toQueue"] = queue.public_id
        event = locked.record_event("call.consult_started", by, data, leg=from_leg)
        locked.record_event(
            "queue.offered",
            SYSTEM,
            {
                "queue": ring_queue.public_id,
                "operator": to_user.get_username(),
                "operatorID": to_user.pk,
                "offerID": offer.pk,
                "deadline": offer.deadline.isoformat(),
                "transferID": consult.pk,
                "consult": True,
            },
        )
    call._copy_from(locked)
    return event


def rings_for(call: Call, user_id: int) -> bool:
    """The call's open consult rings this operator now (their offer is pending)."""
    return QueueOffer.objects.filter(
        call=call,
        operator_id=user_id,
        outcome=OfferOutcome.PENDING,
        call__transfers__outcome=TransferOutcome.PENDING,
        call__transfers__kind=TransferKind.ATTENDED,
        call__transfers__to_user_id=user_id,
    ).exists()


def answer(
    call: Call, by: Principal, *, leg_id: uuid.UUID | None = None, media_state: str = "new"
) -> CallEvent:
    """The consulted operator answers with their own leg (role `consult`). CALL_STATE
    unless the consult rings for them now (the same lock: a cancel or ring-out first wins)."""
    with transaction.atomic():
        locked = _locked_active(call)
        consult = _open(locked)
        if by.user is None or consult.to_user_id != by.user.pk or consult.answered_at is not None:
            raise CallStateError("this consult does not ring for you")
        if not rings_for(locked, by.user.pk):
            raise CallStateError("the consult stopped ringing")
        now = timezone.now()
        leg = Leg.objects.create(
            id=leg_id or uuid.uuid4(),
            call=locked,
            media_state=media_state,
            **{**by.party_fields(), "role": LegRole.CONSULT},
        )
        Transfer.objects.filter(pk=consult.pk).update(to_leg=leg, answered_at=now)
        data = {
            "transferID": consult.pk,
            "kind": consult.kind,
            "legID": str(leg.pk),
            "party": leg.party,
            "toOperator": by.user.get_username(),
            "toOperatorID": by.user.pk,
        }
        return locked.record_event("call.consult_answered", by, data, leg=leg)


def complete(call: Call, by: Principal) -> CallEvent:
    """The target takes the call: `call.consult_completed` then `call.resumed`. CALL_STATE
    unless a consult is open and answered, and `by` is still the call's operator."""
    with transaction.atomic():
        locked = _locked_active(call)
        consult = _open(locked)
        if (by.user, by.api_token) != (locked.operator_user, locked.operator_token):
            raise CallStateError("the call has another operator now")
        target = None
        if consult.to_leg_id is not None:
            target = Leg.objects.filter(pk=consult.to_leg_id, left_at=None).first()
        if consult.answered_at is None or target is None:
            raise CallStateError("the consulted operator has not answered yet")
        now = timezone.now()
        leaving = list(locked.legs.filter(role=LegRole.OPERATOR, left_at=None))
        # The first operator's leg leaves before the target's takes its role (one current
        # operator leg per call: the database's own rule).
        Leg.objects.filter(pk__in=[leg.pk for leg in leaving]).update(left_at=now)
        Leg.objects.filter(pk=target.pk).update(role=LegRole.OPERATOR)
        settled = Transfer.objects.filter(pk=consult.pk, outcome=TransferOutcome.PENDING).update(
            outcome=TransferOutcome.COMPLETED, ended_at=now
        )
        if settled != 1:  # the row lock makes this impossible; the database says so too
            raise CallStateError("the consult ended meanwhile")
        changes = {"operator_user_id": target.user_id, "operator_token_id": None}
        Call.objects.filter(pk=locked.pk).update(**changes)
        data: dict[str, Any] = {
            "transferID": consult.pk,
            "kind": consult.kind,
            "outcome": TransferOutcome.COMPLETED,
            "legID": str(target.pk),
            "fromLegID": str(leaving[0].pk) if leaving else None,
            "party": target.party,
            "toOperatorID": target.user_id,
        }
        if consult.to_user is not None:
            data["toOperator"] = consult.to_user.get_username()
        event = locked.record_event("call.consult_completed", by, data, leg=target)
        _resume(locked, by, now)
    call._copy_from(Call.objects.get(pk=call.pk))
    return event


def cancel(call: Call, by: Principal, reason: str = "cancelled") -> CallEvent:
    """Back to the caller and the first operator: `call.consult_cancelled {reason}` then
    `call.resumed`. CALL_STATE unless a consult is open."""
    with transaction.atomic():
        locked = _locked_active(call)
        consult = _open(locked)
        event = _cancel(locked, consult, by, reason, timezone.now())
    call._copy_from(Call.objects.get(pk=call.pk))
    return event


def unanswered(call: Call, reason: str, now: Any) -> bool:
    """The consulted operator's ring ended unanswered (rang out, declined, withdrawn: from
    routing.offers, under the call's lock): the consult is cancelled. False if the call
    has no consult that rings."""
    consult = call.open_consult()
    if consult is None or consult.answered_at is not None:
        return False
    _cancel(call, consult, SYSTEM, reason, now, outcome=TransferOutcome.UNANSWERED)
    return True


def _cancel(
    call: Call,
    consult: Transfer,
    by: Principal,
    reason: str,
    now: Any,
    outcome: TransferOutcome = TransferOutcome.CANCELLED,
) -> CallEvent:
    settled = Transfer.objects.filter(pk=consult.pk, outcome=TransferOutcome.PENDING).update(
        outcome=outcome, ended_at=now
    )
    if settled != 1:
        raise CallStateError("the consult ended meanwhile")
    target = consult.to_leg
    if target is not None:
        Leg.objects.filter(pk=target.pk, left_at=None).update(left_at=now)
    data: dict[str, Any] = {
        "transferID": consult.pk,
        "kind": consult.kind,
        "outcome": outcome,
        "reason": reason,
        "legID": str(target.pk) if target is not None else None,
        "toOperatorID": consult.to_user_id,
    }
    if consult.to_user is not None:
        data["toOperator"] = consult.to_user.get_username()
    event = call.record_event("call.consult_cancelled", by, data, leg=target)
    _resume(call, by, now)
    return event


def _resume(call: Call, by: Principal, now: Any) -> None:
    held_at = Call.objects.filter(pk=call.pk).values_list("held_at", flat=True).first()
    if held_at is None:
        return
    Call.objects.filter(pk=call.pk).update(held_at=None, held_by="")
    held_s = round((now - held_at).total_seconds(), 3)
    call.record_event(
        "call.resumed", by, {"state": CallState.ACTIVE, "heldS": held_s, "consult": True}
    )


def target_leg(call: Call) -> Leg | None:
    """The consulted operator's leg while they are on the call."""
    return call.legs.filter(role=LegRole.CONSULT, left_at=None).first()
