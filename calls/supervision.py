"""Supervisor modes: a staff member with `calls.supervise_calls` joins another operator's
active call as a party of its own (a `supervisor` leg), and leaves it.

- monitor: hears both parties; nobody hears the supervisor.
- whisper: hears both; the operator hears the supervisor, the end user does not.
- barge:   three-way; everyone hears everyone.

One supervisor per call at a time (the database's `one_supervisor_at_a_time`); every
start, mode change and stop is a CallEvent (`supervisor.joined`, `supervisor.mode_changed`,
`supervisor.left`) written under the call's row lock, and the media follow after commit (a
receiver of `call_event_recorded` sends the worker's Supervise, with the event's id: a
later decision always wins there). The end user is told only if
CALLBRIDGE_TELL_USER_SUPERVISOR (recorded in the event as `userTold`, so a page that
reloads later hears the same story).

Consent (calls.consent): a barging supervisor is heard by the end user and recorded like
any party, so must consent like one; monitor and whisper are not: the end user never
hears them, and the operator's channel of a recording is what the operator says, not
what they hear (a whisper is not in the recording).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone

from calls import consent, policy
from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.events import tell_worker
from calls.model_signals import call_event_recorded
from calls.models import (
    Call,
    CallEvent,
    CallMode,
    CallState,
    Leg,
    LegRole,
    RecordingState,
    SupervisorMode,
)
from calls.principals import Principal
from calls.workers import protocol

logger = logging.getLogger(__name__)

SUPERVISE_PERMISSION = "calls.supervise_calls"
SUPERVISORS_GROUP_NAME = "Supervisors"
SUPERVISOR_EVENTS = frozenset({"supervisor.joined", "supervisor.mode_changed", "supervisor.left"})


def is_supervisor_user(user: Any) -> bool:
    """An active staff user holding the supervisor permission (reads the database)."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm(SUPERVISE_PERMISSION)
    )


def supervisors_group() -> Group:
    """The "Supervisors" group with the supervisor permission (made again if deleted)."""
    app_label, codename = SUPERVISE_PERMISSION.split(".")
    permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
    group, _ = Group.objects.get_or_create(name=SUPERVISORS_GROUP_NAME)
    group.permissions.add(permission)
    return group


def require_may_supervise(principal: Principal, call: Call) -> None:
    """FORBIDDEN unless a staff supervisor who is not the call's own operator party."""
    if principal.kind != "staff" or not is_supervisor_user(principal.user):
        raise CallbridgeError(ErrorCode.FORBIDDEN, "only supervisors may supervise calls")
    if policy.is_party(principal, call):
        raise CallbridgeError(ErrorCode.FORBIDDEN, "you are this call's operator")


def parse_mode(mode: object) -> SupervisorMode:
    if not isinstance(mode, str) or mode not in SupervisorMode.values:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, "mode must be one of " + ", ".join(SupervisorMode.values)
        )
    return SupervisorMode(mode)


def supervise(principal: Principal, call: Call, mode: object) -> CallEvent:
    """Join `call` in `mode`, or switch to it. CALL_STATE unless the call is an active
    bridge call, if another supervisor is on it, or if this one is in that mode already."""
    wanted = parse_mode(mode)
    require_may_supervise(principal, call)
    with transaction.atomic():
        locked = _active_call(call)
        leg = _current_leg(locked)
        told = bool(settings.CALLBRIDGE_TELL_USER_SUPERVISOR)
        if wanted == SupervisorMode.BARGE:
            _require_consent_to_barge(locked, leg)
        if leg is None:
            leg = Leg.objects.create(
                call=locked,
                **{**principal.party_fields(), "role": LegRole.SUPERVISOR},
                supervisor_mode=wanted,
            )
            data = {"mode": wanted, "legID": str(leg.pk), "userTold": told}
            return locked.record_event("supervisor.joined", principal, data, leg=leg)
        if not principal.owns(leg):
            raise CallStateError("another supervisor is on this call")
        if leg.supervisor_mode == wanted:
            raise CallStateError(f"you are in {wanted} mode already")
        previous = leg.supervisor_mode
        Leg.objects.filter(pk=leg.pk).update(supervisor_mode=wanted)
        data = {"mode": wanted, "from": previous, "legID": str(leg.pk), "userTold": told}
        return locked.record_event("supervisor.mode_changed", principal, data, leg=leg)


def stop(principal: Principal, call: Call) -> CallEvent:
    """Leave `call`. CALL_STATE unless this supervisor is on it."""
    require_may_supervise(principal, call)
    with transaction.atomic():
        locked = _active_call(call)
        leg = _current_leg(locked)
        if leg is None or not principal.owns(leg):
            raise CallStateError("you are not supervising this call")
        Leg.objects.filter(pk=leg.pk).update(supervisor_mode="", left_at=timezone.now())
        data = {
            "mode": leg.supervisor_mode,
            "legID": str(leg.pk),
            "userTold": bool(settings.CALLBRIDGE_TELL_USER_SUPERVISOR),
        }
        return locked.record_event("supervisor.left", principal, data, leg=leg)


def _require_consent_to_barge(call: Call, leg: Leg | None) -> None:
    """A recording running where every party must consent: a barging supervisor is one
    (calls.consent), so needs a consent that counts first (given while monitoring or
    whispering: a supervisor who is not on the call yet has nothing to give it for)."""
    if settings.CALLBRIDGE_RECORDING_CONSENT != "all":
        return
    if not call.recordings.filter(state=RecordingState.RECORDING).exists():
        return
    if leg is None or not consent.counts_for(call, leg):
        raise CallbridgeError(
            ErrorCode.CONSENT_REQUIRED,
            "this call is being recorded: give your consent (while monitoring) before barging",
            details={
                "missing": [LegRole.SUPERVISOR],
                "policy": consent.current_notice().version,
            },
        )


def _active_call(call: Call) -> Call:
    locked = Call.objects.select_for_update().get(pk=call.pk)
    if locked.state != CallState.ACTIVE or locked.mode != CallMode.BRIDGE:
        raise CallStateError(f"only an active bridge call can be supervised (it is {locked.state})")
    return locked


def _current_leg(call: Call) -> Leg | None:
    return call.legs.filter(role=LegRole.SUPERVISOR, left_at=None).first()


def current_mode(call: Call) -> str | None:
    """The mode of the call's supervisor now (None: nobody supervises it)."""
    leg = _current_leg(call) if call.state == CallState.ACTIVE else None
    return leg.supervisor_mode if leg is not None else None


def on_call_event(sender: Any, event: CallEvent, **kwargs: Any) -> None:
    """Receiver of call_event_recorded (after commit): the media follow the record."""
    if event.name not in SUPERVISOR_EVENTS:
        return  # the common case costs no query
    try:
        worker = Call.objects.filter(pk=event.call_id).values_list("media_worker", flat=True)[0]
        if not worker:
            return
        left = event.name == "supervisor.left"
        message = protocol.Supervise(
            call=str(event.call_id),
            mode=None if left else str(event.data["mode"]),
            seq=event.pk,
        )
        tell_worker(worker, message)
    except Exception:
        logger.exception(
            "supervision: could not tell the media of %s of call %s", event.name, event.call_id
        )


def connect_receivers() -> None:
    call_event_recorded.connect(on_call_event, dispatch_uid="calls.supervision.media")
