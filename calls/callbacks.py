"""Callback requests: asked by a waiting caller, called back by an operator.

- `request_callback`: the end user whose call waits in a queue that offers callbacks (not
  an open-answer queue: there is no line to leave) asks to be called back. Under the
  call's row lock, in one transaction: the request is created (one per call: a unique
  constraint) and the call ends `callback_requested` (its offers are cancelled by
  calls.routing.offers, as for any end); `callback.requested` goes on its timeline.
- `call_back`: an operator of the request's queue (or a supervisor holding
  `calls.change_callbackrequest`, or an integrator's API token) rings the end user's
  session, the ordinary operator → end user call, while the session is usable and online.
  Under the request's row lock: two operators pressing at once place one call, the other
  gets CALL_STATE. The request is `calling` until that call is answered (`done`) or ends
  unanswered (`open` again; `attempts` counts the tries): `on_call_event_saved`, inside
  the call's own transition.
- `close`: done / cancelled by hand. `expire_stale`: open requests whose session expired
  or was revoked become `expired` (the deadlines service, revocation, and every read).
Every change is a `callback.*` CallEvent on the originating call (its history; the
operators' feed shows the request with it).
"""

from __future__ import annotations

import logging
import unicodedata
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Min, Q, QuerySet
from django.utils import timezone

from calls import limits, policy
from calls.calling import parse_uuid
from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.events import callback_snapshot
from calls.models import (
    Call,
    CallbackRequest,
    CallbackState,
    CallDirection,
    CallEvent,
    CallMode,
    CallState,
    EndUserSession,
    Queue,
    RecordingKind,
)
from calls.models.callback import NOTE_MAX_CHARS
from calls.principals import SYSTEM, Principal
from calls.signaling.payloads import callback_summary
from calls.workers.placement import choose_worker

logger = logging.getLogger(__name__)

SUPERVISOR_PERMISSION = "calls.change_callbackrequest"
CLOSING_STATES = (CallbackState.DONE, CallbackState.CANCELLED)


def _not_found() -> CallbridgeError:
    return CallbridgeError(ErrorCode.NOT_FOUND, "No such callback request")


def clean_note(note: Any) -> str:
    """The caller's note: a string of at most NOTE_MAX_CHARS (after trimming), printable
    text and line breaks only."""
    if note is None:
        return ""
    if not isinstance(note, str):
        raise CallbridgeError(ErrorCode.INVALID_MESSAGE, "note must be a string")
    note = note.strip()
    if len(note) > NOTE_MAX_CHARS:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, f"note is too long (at most {NOTE_MAX_CHARS} characters)"
        )
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\t" for c in note):
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "note must be plain text")
    return note


def _record(request: CallbackRequest, name: str, by: Principal, **extra: Any) -> None:
    """A `callback.*` event on the originating call: its history and the feed's news."""
    fresh = CallbackRequest.objects.select_related("queue", "session", "handled_by").get(
        pk=request.pk
    )
    data = {"callback": callback_summary(callback_snapshot(fresh)), **extra}
    Call.objects.get(pk=request.call_id).record_event(name, by, data)


# --- the caller ---------------------------------------------------------------------------
def _waiting_call(principal: Principal, call_id: str | None) -> Call:
    assert principal.session is not None
    calls = Call.objects.select_for_update()
    if call_id is not None:
        call = calls.filter(pk=parse_uuid(call_id, _no_call())).first()
        if call is None:
            raise _no_call()
        policy.require_party(principal, call)
        return call
    # No call named: the session's one call waiting in a queue (a session has at most one
    # open bridge call: Call.start).
    call = (
        calls.filter(
            session=principal.session,
            state__in=(CallState.RINGING, CallState.VOICEMAIL),
            direction=CallDirection.INBOUND,
            mode=CallMode.BRIDGE,
        )
        .order_by("-created_at")
        .first()
    )
    if call is None:
        raise CallStateError("you are not waiting in a queue")
    return call


def _no_call() -> CallbridgeError:
    return CallbridgeError(ErrorCode.NOT_FOUND, "No such call")


def request_callback(principal: Principal, call_id: str | None, note: Any) -> CallbackRequest:
    """The waiting caller asks to be called back: the request, and its call ends."""
    if principal.session is None:
        raise CallbridgeError(ErrorCode.FORBIDDEN, "Only the waiting caller may ask for a callback")
    text = clean_note(note)
    with transaction.atomic():
        call = _waiting_call(principal, call_id)
        if call.direction != CallDirection.INBOUND or call.mode != CallMode.BRIDGE:
            raise CallStateError("only a call waiting in a queue can ask for a callback")
        if call.state not in (CallState.RINGING, CallState.VOICEMAIL):
            raise CallStateError(f"the call is {call.state}: no longer waiting in a queue")
        queue = Queue.objects.filter(pk=call.queue_id).first() if call.queue_id else None
        # Waiting in line: where the queue offers it. In the voicemail stage (the caller has
        # left the line, whatever the queue): until a message starts.
        offered = queue is not None and (
            queue.offer_callback if call.state == CallState.VOICEMAIL else queue.offers_callbacks
        )
        if queue is None or not offered:
            raise CallbridgeError(ErrorCode.FORBIDDEN, "this queue does not offer callbacks")
        if (
            call.state == CallState.VOICEMAIL
            and call.recordings.filter(kind=RecordingKind.VOICEMAIL).exists()
        ):
            raise CallStateError("a message is being left: send it or hang up")
        session = principal.session
        request = CallbackRequest.objects.create(
            call=call,
            queue=queue,
            session=session,
            display_name=session.display_name,
            note=text,
        )
        call.request_callback(principal)
        _record(request, "callback.requested", principal)
    logger.info("callback %s requested from call %s", request.pk, call.pk)
    return request


# --- operators ------------------------------------------------------------------------------
def may_handle(principal: Principal, request: CallbackRequest) -> bool:
    """Operators of its queue, supervisors (the change permission), integrators' tokens."""
    if not principal.is_operator:
        return False
    user = principal.user
    if user is None:
        return True  # an API token: an operator on every call (the contract's table)
    if user.has_perm(SUPERVISOR_PERMISSION):
        return True
    return request.queue.member_users().filter(pk=user.pk).exists()


def visible_to(principal: Principal) -> QuerySet[CallbackRequest]:
    """The requests `principal` may see and handle: its queues' (all, for supervisors)."""
    policy.require_operator(principal, "see callback requests")
    requests = CallbackRequest.objects.select_related("queue", "session", "handled_by")
    user = principal.user
    if user is None or user.has_perm(SUPERVISOR_PERMISSION):
        return requests
    return requests.filter(queue__in=Queue.objects.for_operator(user))


def _locked(principal: Principal, callback_id: str) -> CallbackRequest:
    policy.require_operator(principal, "handle callback requests")
    request = (
        CallbackRequest.objects.select_for_update()
        .filter(pk=parse_uuid(callback_id, _not_found()))
        .first()
    )
    if request is None:
        raise _not_found()
    if not may_handle(principal, request):
        raise CallbridgeError(ErrorCode.FORBIDDEN, "this request is not in one of your queues")
    return request


def _handled(request: CallbackRequest, principal: Principal, now: datetime) -> dict[str, Any]:
    return {"handled_by": principal.user, "handled_by_label": principal.label, "handled_at": now}


def call_back(principal: Principal, callback_id: str) -> tuple[CallbackRequest, Call]:
    """Ring the end user for this request (the operator then sends their offer, as for
    any call they place). CALL_STATE unless it is open and its caller online."""
    expire_stale()
    with transaction.atomic():
        # Lock order as for any new call: the credential, then (Call.start) the session.
        limits.lock_credential(principal)
        request = _locked(principal, callback_id)
        if request.state == CallbackState.CALLING:
            raise CallStateError("someone is already calling them back")
        if request.state != CallbackState.OPEN:
            raise CallStateError(f"the request is {request.state}")
        session = request.session
        if session is None or not session.is_usable:
            raise CallStateError("the caller's session has ended: they cannot be called back")
        if not session.online:
            raise CallbridgeError(
                ErrorCode.CALL_STATE,
                "the caller is offline: call back when their page is open again",
                recoverable=True,
            )
        limits.check_new_call(principal, CallMode.BRIDGE)
        call = Call.start(
            by=principal, mode=CallMode.BRIDGE, session=session, media_worker=choose_worker()
        )
        now = timezone.now()
        CallbackRequest.objects.filter(pk=request.pk).update(
            state=CallbackState.CALLING,
            callback_call=call,
            attempts=request.attempts + 1,
            **_handled(request, principal, now),
        )
        call.record_event(
            "callback.placed",
            principal,
            {"callbackID": str(request.pk), "from": str(request.call_id)},
        )
        _record(request, "callback.calling", principal)
    request.refresh_from_db()
    return request, call


def close(principal: Principal, callback_id: str, outcome: str) -> CallbackRequest:
    """Mark a request done or cancelled by hand (also while its call back rings: that
    call's outcome then changes nothing)."""
    if outcome not in CLOSING_STATES:
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "outcome must be done or cancelled")
    with transaction.atomic():
        request = _locked(principal, callback_id)
        if not request.is_pending:
            raise CallStateError(f"the request is already {request.state}")
        now = timezone.now()
        CallbackRequest.objects.filter(pk=request.pk).update(
            state=outcome, **_handled(request, principal, now)
        )
        _record(request, f"callback.{outcome}", principal, manual=True)
    request.refresh_from_db()
    return request


# --- the call back's outcome, and expiry ----------------------------------------------------
def on_call_event_saved(sender: Any, instance: CallEvent, created: bool, **kwargs: Any) -> None:
    """A call back answered: `done`; ended unanswered: `open` again. Runs inside the
    call's transition (CallEvent's post_save), so the two commit together."""
    if not created or instance.name not in ("call.answered", "call.ended"):
        return
    call = instance.call
    if call.direction != CallDirection.OUTBOUND:
        return  # the common case costs no query
    request = (
        CallbackRequest.objects.select_for_update()
        .filter(callback_call=call, state=CallbackState.CALLING)
        .first()
    )
    if request is None:
        return  # not a call back, or closed by hand meanwhile
    if instance.name == "call.answered":
        state, name = CallbackState.DONE, "callback.done"
    elif call.answered_at is None:
        state, name = CallbackState.OPEN, "callback.reopened"
    else:
        return
    CallbackRequest.objects.filter(pk=request.pk).update(state=state)
    extra = {"reason": instance.data.get("reason")} if state == CallbackState.OPEN else {}
    _record(request, name, SYSTEM, **extra)


def expire_stale(now: datetime | None = None) -> int:
    """Open requests whose session can no longer be called back: `expired`, each once."""
    now = now or timezone.now()
    expired = 0
    for request_id in CallbackRequest.objects.stale(now).values_list("pk", flat=True):
        with transaction.atomic():
            request = CallbackRequest.objects.select_for_update().filter(pk=request_id).first()
            if request is None or not CallbackRequest.objects.stale(now).filter(pk=request_id):
                continue  # called back or closed meanwhile
            CallbackRequest.objects.filter(pk=request.pk).update(
                state=CallbackState.EXPIRED, handled_at=now
            )
            _record(request, "callback.expired", SYSTEM)
            expired += 1
    return expired


def next_expiry() -> datetime | None:
    """When the next open request's session expires (the deadlines service wakes then)."""
    found = CallbackRequest.objects.filter(state=CallbackState.OPEN).aggregate(
        at=Min("session__expires_at", filter=Q(session__revoked_at=None))
    )
    return found["at"]


def on_credentials_revoked(sender: Any, pks: list[Any], **kwargs: Any) -> None:
    """A revoked end-user session: its open requests expire at once (after commit)."""
    if sender is EndUserSession:
        try:
            expire_stale()
        except Exception:
            logger.exception("could not expire the callback requests of revoked sessions")
