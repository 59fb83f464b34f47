"""Blind transfer: the call's operator party hands the caller on to an operator or a queue.

The state is the call's (`Call.transfer`, under its row lock: the call rings again, the
transferring operator's leg has left, one open `Transfer` row); this module decides who
may (policy), resolves the target (`{"operator": username}` or `{"queue": public id}`),
stops a running recording at the switch, and tells the call's media worker after commit
(receivers of `call_event_recorded`, in commit order with the call's other media
messages): `call.transfer_started` → TransferOut (the leaving operator's connection
closes, the caller hears the hold audio), `call.transfer_completed` → TransferIn (the
hold ends the moment the new operator's audio arrives).

Recording: a running recording stops at the switch (cut off at the transfer's time,
reason `transferred`): the operator who takes the call is a new party who has not
consented to it; they may start a new one, under the consent policy, once on the call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model

from calls import hold, policy, recordings
from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.events import tell_worker
from calls.model_signals import call_event_recorded
from calls.models import Call, CallEvent, LegRole, Queue, StopReason
from calls.operators import is_operator_user
from calls.principals import Principal
from calls.workers import protocol

logger = logging.getLogger(__name__)


def transfer(principal: Principal, call: Call, to: object) -> CallEvent:
    """Blind transfer of `call` to `to` (`{"operator": username}` or `{"queue": id}`).

    FORBIDDEN unless the principal is the call's operator party; INVALID_ARGUMENT for a
    malformed target or yourself; NOT_FOUND for an unknown operator or queue; CALL_STATE
    unless the call is active (not mid-transfer) and an operator target is free now."""
    _require_operator_party(principal, call)
    to_user, to_queue = _target(principal, to)
    event = call.transfer(principal, to_user=to_user, to_queue=to_queue)
    try:
        recordings.stop_if_recording(
            call, principal.label, StopReason.TRANSFERRED, cutoff=event.created_at
        )
    except Exception:  # the transfer stands; the recording's own record says it failed
        logger.exception("transfer: could not stop the recording of call %s", call.pk)
    return event


def _require_operator_party(principal: Principal, call: Call) -> None:
    try:
        policy.require_may_hold(principal, call)
    except CallbridgeError:
        # Whoever transferred it a moment ago (two transfers at once, a double click)
        # hears CALL_STATE, as the loser of any race on the call's state does.
        left = call.legs.filter(role=LegRole.OPERATOR, left_at__isnull=False)
        if principal.is_operator and any(principal.owns(leg) for leg in left):
            raise CallStateError("the call was transferred already") from None
        raise


def _target(principal: Principal, to: object) -> tuple[Any, Queue | None]:
    if not isinstance(to, Mapping) or len(to) != 1:
        raise _bad_target()
    ((kind, name),) = to.items()
    if kind not in ("operator", "queue") or not isinstance(name, str) or not name:
        raise _bad_target()
    if kind == "queue":
        return None, Queue.objects.named(name)
    user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: name}).first()
    if user is None or not is_operator_user(user):
        raise CallbridgeError(ErrorCode.NOT_FOUND, "No such operator")
    if principal.user is not None and principal.user.pk == user.pk:
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "you cannot transfer a call to yourself")
    return user, None


def _bad_target() -> CallbridgeError:
    return CallbridgeError(
        ErrorCode.INVALID_ARGUMENT, 'to must be {"operator": username} or {"queue": queue id}'
    )


TRANSFER_MEDIA_EVENTS = frozenset({"call.transfer_started", "call.transfer_completed"})


def on_call_event(sender: Any, event: CallEvent, **kwargs: Any) -> None:
    """Receiver of call_event_recorded (after commit): the media follow the record."""
    if event.name not in TRANSFER_MEDIA_EVENTS:
        return  # the common case costs no query
    try:
        call = Call.objects.select_related("queue__hold_audio", "queue__waiting_audio").get(
            pk=event.call_id
        )
        leg = event.data.get("legID")
        if not call.media_worker or not isinstance(leg, str):
            return
        message: protocol.Request
        if event.name == "call.transfer_started":
            audio = hold.hold_audio(call)
            message = protocol.TransferOut(
                call=str(call.pk),
                leg=leg,
                seq=event.pk,
                path=audio.file.path if audio is not None else None,
            )
        else:
            message = protocol.TransferIn(call=str(call.pk), leg=leg, seq=event.pk)
        worker = call.media_worker
        tell_worker(worker, message)
    except Exception:
        logger.exception(
            "transfer: could not tell the media of %s of call %s", event.name, event.call_id
        )


def connect_receivers() -> None:
    call_event_recorded.connect(on_call_event, dispatch_uid="calls.transfer.media")
