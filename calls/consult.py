"""Attended transfer: the call's operator consults another operator, the caller on hold,
then completes (the target takes the call, the first operator leaves) or cancels (back to
the caller).

The records are calls/models/consult.py's (under the call's row lock, one open transfer
per call by the database); this module decides who may (policy), resolves the target
(`{"operator": username}`, or `{"queue": public id}`: the member the queue would offer a
call to now, by its strategy), stops a running recording when the call changes hands, and
tells the call's media worker after commit (a receiver of `call_event_recorded`, in commit
order with the call's Hold messages): `call.consult_completed` / `call.consult_cancelled`
→ ConsultEnd. The hold itself is the ordinary hold (`call.held` / `call.resumed` → Hold);
the consulted operator's media join as any leg's: their offer answers the consult.

Recording: the same rule as blind transfer's. What the caller hears during the consult
(the hold audio) is recorded, the two operators' talk is not (the caller hears none of
it); completing stops a running recording at the switch (reason `transferred`): the
operator who takes the call has not consented to it, and may start a new one.
"""

from __future__ import annotations

import logging
from typing import Any

from calls import recordings
from calls.errors import CallStateError
from calls.events import tell_worker
from calls.model_signals import call_event_recorded
from calls.models import Call, CallEvent, LegRole, StopReason
from calls.models import consult as consults
from calls.principals import SYSTEM, Principal
from calls.routing import engine
from calls.transfer import _require_operator_party, _target
from calls.workers import protocol

logger = logging.getLogger(__name__)

MEDIA_EVENTS = frozenset({"call.consult_completed", "call.consult_cancelled"})


def consult(principal: Principal, call: Call, to: object) -> CallEvent:
    """Consult `to` (`{"operator": username}` or `{"queue": id}`) about `call`.

    FORBIDDEN unless the principal is the call's operator party; INVALID_ARGUMENT for a
    malformed target or yourself; NOT_FOUND for an unknown operator or queue; CALL_STATE
    unless the call is active with no transfer under way and the target (or someone in
    the queue) is free now."""
    _require_operator_party(principal, call)
    to_user, to_queue = _target(principal, to)
    if to_queue is not None:
        mine = principal.user.pk if principal.user is not None else None
        picked = engine.next_free_member(to_queue, exclude=mine)
        if picked is None:
            raise CallStateError(f"nobody in queue {to_queue.public_id} is free")
        to_user = to_queue.member_users().get(pk=picked)
    return consults.start(call, principal, to_user=to_user, queue=to_queue)


def rings_for(principal: Principal, call: Call) -> bool:
    """The call's consult rings this staff operator now."""
    user = principal.user if principal.kind == "staff" else None
    return user is not None and consults.rings_for(call, user.pk)


def answer(principal: Principal, call: Call) -> CallEvent:
    """The consulted operator answers without media yet (REST `answer`; their offer then
    connects their leg). Their offer answers it as well (calls.calling)."""
    return consults.answer(call, principal)


def complete(principal: Principal, call: Call) -> CallEvent:
    """The consulted operator takes the call. FORBIDDEN unless the call's operator party;
    CALL_STATE unless a consult is open and answered."""
    _require_operator_party(principal, call)
    event = consults.complete(call, principal)
    try:
        recordings.stop_if_recording(
            call, principal.label, StopReason.TRANSFERRED, cutoff=event.created_at
        )
    except Exception:  # the transfer stands; the recording's own record says it failed
        logger.exception("consult: could not stop the recording of call %s", call.pk)
    return event


def cancel(principal: Principal, call: Call) -> CallEvent:
    """Call the consult off: by the call's operator party, or by the consulted operator
    (hanging up on it). FORBIDDEN for anyone else; CALL_STATE unless a consult is open."""
    open_ = call.open_consult()
    user = principal.user if principal.kind == "staff" else None
    if open_ is not None and user is not None and open_.to_user_id == user.pk:
        return consults.cancel(call, principal, reason="target_left")
    _require_operator_party(principal, call)
    return consults.cancel(call, principal)


# The consulted operator's connection ended for good (their page closed, the network gone
# past reconnecting): as if they hung up on the consult.
TARGET_GONE = frozenset({"media.closed", "media.failed"})


def on_call_event(sender: Any, event: CallEvent, **kwargs: Any) -> None:
    """Receiver of call_event_recorded (after commit): the media follow the record."""
    if event.name in TARGET_GONE and event.data.get("role") == LegRole.CONSULT:
        _target_gone(event)
        return
    if event.name not in MEDIA_EVENTS:
        return  # the common case costs no query
    try:
        worker = Call.objects.filter(pk=event.call_id).values_list("media_worker", flat=True)[0]
        if not worker:
            return
        leg, leaving = event.data.get("legID"), event.data.get("fromLegID")
        message = protocol.ConsultEnd(
            call=str(event.call_id),
            leg=leg if isinstance(leg, str) else None,
            completed=event.name == "call.consult_completed",
            leaving=leaving if isinstance(leaving, str) else None,
        )
        tell_worker(worker, message)
    except Exception:
        logger.exception(
            "consult: could not tell the media of %s of call %s", event.name, event.call_id
        )


def _target_gone(event: CallEvent) -> None:
    try:
        call = Call.objects.get(pk=event.call_id)
        open_ = call.open_consult()
        if open_ is None or str(open_.to_leg_id) != event.data.get("legID"):
            return  # over already (its own end closed that connection)
        consults.cancel(call, SYSTEM, reason="target_left")
    except CallStateError:
        return  # ended meanwhile (completed, cancelled, the call over)
    except Exception:
        logger.exception("consult: could not end the consult of call %s", event.call_id)


def connect_receivers() -> None:
    call_event_recorded.connect(on_call_event, dispatch_uid="calls.consult.media")
