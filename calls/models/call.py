"""Calls, their legs and their append-only event history.

The call state machine lives here and only here: every state change goes through
`Call._transition`, which locks the row, checks TRANSITIONS, updates the call and appends
a CallEvent in one transaction. Views and consumers call the verbs (`answer`, `reject`,
`hang_up`, `miss`, `terminate`); nothing else writes `Call.state`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.model_signals import call_event_recorded
from calls.models.audit_chain import ChainedModel
from calls.models.credentials import ApiToken, EndUserSession
from calls.models.operator_status import Availability, OperatorStatus
from calls.models.queue import OfferOutcome, Queue, QueueOffer
from calls.models.transfer import Transfer, TransferKind, TransferOutcome
from calls.principals import SYSTEM, Principal


class CallState(models.TextChoices):
    RINGING = "ringing"
    ACTIVE = "active"
    ENDED = "ended"
    MISSED = "missed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    # Left the queue's line for the voicemail stage: nobody can answer it any more; the
    # caller chooses (leave a message, hang up) and, leaving one, is being recorded.
    VOICEMAIL = "voicemail"


OPEN_STATES = frozenset({CallState.RINGING, CallState.ACTIVE, CallState.VOICEMAIL})
FINAL_STATES = frozenset(set(CallState) - OPEN_STATES)


class CallMode(models.TextChoices):
    BRIDGE = "bridge"
    ECHO = "echo"


class CallDirection(models.TextChoices):
    INBOUND = "inbound", "inbound (end user → operators)"
    OUTBOUND = "outbound", "outbound (operators → end user)"


class EndReason(models.TextChoices):
    HANGUP = "hangup"
    MISSED = "missed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    MEDIA_TIMEOUT = "media_timeout"
    MEDIA_FAILURE = "media_failure"
    SERVER_RESTART = "server_restart"
    NO_OPERATOR = "no_operator"  # the caller's queue found nobody within its maximum wait
    CALLBACK_REQUESTED = "callback_requested"  # the waiting caller asked to be called back
    VOICEMAIL = "voicemail"  # the caller left a message (calls/voicemail.py)


class LegRole(models.TextChoices):
    USER = "user"
    OPERATOR = "operator"
    SYSTEM = "system"
    # A staff member with `calls.supervise_calls` on another operator's call (monitor,
    # whisper, barge: calls/supervision.py); a party of its own, with its own leg.
    SUPERVISOR = "supervisor"
    # The target of an attended transfer while consulted (calls/models/consult.py): it
    # talks to the operator, the caller held; completing makes this leg the operator's.
    CONSULT = "consult"


class SupervisorMode(models.TextChoices):
    MONITOR = "monitor", "monitor (hears both, heard by nobody)"
    WHISPER = "whisper", "whisper (heard by the operator only)"
    BARGE = "barge", "barge (three-way)"


class MediaState(models.TextChoices):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"
    FAILED = "failed"


class CallAction(StrEnum):
    ANSWER = "answer"
    REJECT = "reject"
    CANCEL = "cancel"  # the caller gives up before an answer
    MISS = "miss"  # nobody answered within the ring timeout
    REFUSE = "refuse"  # the queue's overflow rule: nobody took the call within its wait
    REQUEST_CALLBACK = "request callback"  # the waiting caller leaves the line for a callback
    HANG_UP = "hang up"
    OFFER_VOICEMAIL = "offer voicemail"  # the queue's overflow: the caller may leave a message
    LEAVE_MESSAGE = "leave message"  # the message is over (sent, cut off, or hung up on)
    TRANSFER = "transfer"  # the operator hands the caller on: it rings there (calls.transfer)
    TERMINATE = "terminate"  # the system ends it (media timeout/failure, restart)


# (action, from state) -> to state. Anything not listed is illegal.
TRANSITIONS: dict[tuple[CallAction, CallState], CallState] = {
    (CallAction.ANSWER, CallState.RINGING): CallState.ACTIVE,
    (CallAction.REJECT, CallState.RINGING): CallState.REJECTED,
    (CallAction.CANCEL, CallState.RINGING): CallState.CANCELLED,
    (CallAction.MISS, CallState.RINGING): CallState.MISSED,
    (CallAction.REFUSE, CallState.RINGING): CallState.MISSED,
    (CallAction.REQUEST_CALLBACK, CallState.RINGING): CallState.CANCELLED,
    (CallAction.REQUEST_CALLBACK, CallState.VOICEMAIL): CallState.CANCELLED,  # before a message
    (CallAction.HANG_UP, CallState.ACTIVE): CallState.ENDED,
    # A transferred call rings again, the caller still on the line: ending it then is a
    # hang-up (it was answered), not the caller giving up on a first answer.
    (CallAction.TRANSFER, CallState.ACTIVE): CallState.RINGING,
    (CallAction.HANG_UP, CallState.RINGING): CallState.ENDED,
    (CallAction.TERMINATE, CallState.RINGING): CallState.CANCELLED,
    (CallAction.TERMINATE, CallState.ACTIVE): CallState.ENDED,
    (CallAction.OFFER_VOICEMAIL, CallState.RINGING): CallState.VOICEMAIL,
    (CallAction.CANCEL, CallState.VOICEMAIL): CallState.CANCELLED,  # hung up, no message
    (CallAction.REFUSE, CallState.VOICEMAIL): CallState.MISSED,  # chose nothing in time
    (CallAction.LEAVE_MESSAGE, CallState.VOICEMAIL): CallState.ENDED,
    (CallAction.TERMINATE, CallState.VOICEMAIL): CallState.ENDED,
}

# The end reason each ending action records; TERMINATE passes its own.
ACTION_END_REASONS: dict[CallAction, EndReason] = {
    CallAction.REJECT: EndReason.REJECTED,
    CallAction.CANCEL: EndReason.CANCELLED,
    CallAction.MISS: EndReason.MISSED,
    CallAction.REFUSE: EndReason.NO_OPERATOR,
    CallAction.REQUEST_CALLBACK: EndReason.CALLBACK_REQUESTED,
    CallAction.HANG_UP: EndReason.HANGUP,
    CallAction.LEAVE_MESSAGE: EndReason.VOICEMAIL,
}
SYSTEM_END_REASONS = frozenset(
    {EndReason.MEDIA_TIMEOUT, EndReason.MEDIA_FAILURE, EndReason.SERVER_RESTART}
)


def _max_wait_s(queue: Queue | None) -> int:
    if queue is None or queue.is_default:
        return int(settings.CALLBRIDGE_RING_TIMEOUT_S)
    return int(queue.max_wait_s)


class CallQuerySet(models.QuerySet["Call"]):
    def open(self) -> CallQuerySet:
        return self.filter(state__in=OPEN_STATES)

    def finished(self) -> CallQuerySet:
        """Calls that ended one way or another (ended, missed, rejected, cancelled)."""
        return self.filter(state__in=FINAL_STATES)

    def visible_to(self, principal: Principal) -> CallQuerySet:
        if principal.is_operator:
            return self
        if principal.session is not None:
            return self.filter(session=principal.session)
        return self.none()

    def overdue_ringing(self, now: Any = None) -> CallQuerySet:
        return self.filter(state=CallState.RINGING, ring_deadline__lte=now or timezone.now())

    def overdue_voicemail(self, now: Any = None) -> CallQuerySet:
        """Voicemail stages past their deadline (to choose, or the message's limit)."""
        return self.filter(state=CallState.VOICEMAIL, ring_deadline__lte=now or timezone.now())

    def overdue_media(self, now: Any = None) -> CallQuerySet:
        return self.filter(state=CallState.ACTIVE, media_deadline__lte=now or timezone.now())


class Call(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    state = models.CharField(
        max_length=16, choices=CallState.choices, default=CallState.RINGING, db_index=True
    )
    mode = models.CharField(max_length=16, choices=CallMode.choices, default=CallMode.BRIDGE)
    direction = models.CharField(max_length=16, choices=CallDirection.choices)
    # The end-user party (null for an operator's own echo call).
    session = models.ForeignKey(
        EndUserSession, on_delete=models.SET_NULL, null=True, blank=True, related_name="calls"
    )
    # The operator party: a staff user or an integrator's token (set by whoever answered
    # an inbound call, or who placed an outbound one).
    operator_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="operated_calls",
    )
    operator_token = models.ForeignKey(
        ApiToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="calls"
    )
    created_by = models.CharField(max_length=200)
    # The media worker that owns this call's peer connections.
    media_worker = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    ring_deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    # Set while an active call lacks media on a leg it needs; passing it ends the call.
    media_deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, choices=EndReason.choices, blank=True)
    ended_by = models.CharField(max_length=200, blank=True)
    ended_by_role = models.CharField(max_length=16, choices=LegRole.choices, blank=True)
    # The reason the party who ended the call gave (Voisnap's EndSessionAsync("user_ended")):
    # free text from a client, so beside end_reason, which stays one of EndReason.
    client_reason = models.CharField(max_length=64, blank=True)
    # Inbound bridge calls wait in a queue (the default one unless the caller named one)
    # from `queued_at`; outbound and echo calls have none.
    queue = models.ForeignKey(
        Queue, on_delete=models.PROTECT, null=True, blank=True, related_name="calls"
    )
    queued_at = models.DateTimeField(null=True, blank=True)
    # What a gateway client (PolyAI's dialect) says of its call. `external_id` is its
    # `callSid`: unique across all calls (NULL: none), so that it names one call wherever
    # it is looked up (admin search, logs, the integrator's own records).
    external_id = models.CharField(
        "external id (callSid)",
        max_length=100,
        null=True,
        blank=True,
        unique=True,
        help_text="the client's own id for this call (PolyAI's callSid)",
    )
    caller = models.CharField(max_length=100, blank=True, help_text="the calling number")
    callee = models.CharField(max_length=100, blank=True, help_text="the called number")
    metadata = models.JSONField(
        default=dict, blank=True, help_text="what the client sent along (accountId, projectId …)"
    )
    # On hold (an active call only; `Call.hold` / `Call.resume`): since when, and who put
    # it there (the operator party's label). Not a state of its own: a held call is still
    # active for everything that asks (hang-up, recording, media deadlines, busy operators).
    held_at = models.DateTimeField(null=True, blank=True)
    held_by = models.CharField(max_length=200, blank=True)

    objects = CallQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        # The one operator permission (calls.operators): answer, place and watch calls.
        permissions = [
            ("operate_calls", "Can answer and place calls"),
            # calls.supervision: monitor, whisper to and barge into other operators' calls.
            ("supervise_calls", "Can monitor, whisper to and barge into calls"),
        ]
        constraints = [
            models.CheckConstraint(
                name="call_final_state_has_end",
                condition=models.Q(state__in=OPEN_STATES, ended_at=None)
                | (~models.Q(state__in=OPEN_STATES) & ~models.Q(ended_at=None)),
            ),
            models.CheckConstraint(
                name="call_held_only_while_active",
                condition=models.Q(held_at=None) | models.Q(state=CallState.ACTIVE),
            ),
        ]
        indexes = [
            # The routing engine's "waiting calls of this queue, oldest first".
            models.Index(
                fields=["queue", "queued_at"],
                condition=models.Q(state=CallState.RINGING),
                name="call_waiting_in_queue",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mode} call {str(self.pk)[:8]} ({self.state})"

    # --- derived -------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def is_held(self) -> bool:
        return self.held_at is not None

    @property
    def caller_role(self) -> str:
        return LegRole.USER if self.direction == CallDirection.INBOUND else LegRole.OPERATOR

    @property
    def media_roles(self) -> set[str]:
        """The legs that must have media for the call to be working."""
        if self.mode == CallMode.ECHO:
            return {self.caller_role}
        return {LegRole.USER, LegRole.OPERATOR}

    def takes_part_live(self, leg: Leg) -> bool:
        """Whether the call needs `leg`'s media (lacking it, the media grace runs).

        Server-side-only audio (WaGo's "if the user doesn't need to speak live": the
        integrator's backend plays files and records): an API token's operator leg in a
        bridge call that has never sent an offer is not live, so the call needs the end
        user's media only. Its first offer makes it live for good (a close then starts the
        grace, as for everyone). Staff operators always talk; an echo call has nobody else.
        """
        if leg.role not in self.media_roles:
            return False
        server_side = (
            self.mode == CallMode.BRIDGE
            and leg.role == LegRole.OPERATOR
            and leg.api_token_id is not None
            and leg.media_state == MediaState.NEW
        )
        return not server_side

    def lacks_media(self) -> bool:
        """A role the call needs has no leg yet, or a live leg has no media now."""
        legs = {leg.role: leg for leg in self.legs.all() if leg.left_at is None}
        for role in self.media_roles:
            leg = legs.get(role)
            if leg is None:
                return True
            if leg.media_state != MediaState.CONNECTED and self.takes_part_live(leg):
                return True
        return False

    def _media_deadline(self, now: Any) -> Any:
        if not self.lacks_media():
            return None
        return self.media_deadline or now + timedelta(seconds=settings.CALLBRIDGE_MEDIA_GRACE_S)

    @property
    def latest_recording(self) -> Any:
        """The most recent recording (from the prefetch cache when there is one)."""
        return max(self.recordings.all(), key=lambda r: r.started_at, default=None)

    @property
    def duration(self) -> timedelta | None:
        """Talk time: from answer to end (or now while active)."""
        if self.answered_at is None:
            return None
        return (self.ended_at or timezone.now()) - self.answered_at

    # --- creation ------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        *,
        by: Principal,
        mode: str,
        session: EndUserSession | None = None,
        call_id: uuid.UUID | None = None,
        leg_id: uuid.UUID | None = None,
        media_worker: str,
        media_state: str = "new",
        queue: Queue | None = None,
        external_id: str | None = None,
        caller: str = "",
        callee: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Call:
        """Place a new call. End users ring the operators; operators ring `session`.

        `media_worker`: the worker chosen for it (calls.workers.placement.choose_worker), or
        the one that already answered its offer; `call_id`/`leg_id` let that offer keep its
        ids. `queue`: the queue an end user's bridge call joins (the default queue if None);
        other calls join none. `external_id`, `caller`, `callee`, `metadata`: what the
        client said of its call (PolyAI's callSid …); a taken `external_id` is refused by
        the database (IntegrityError: the caller says what that means).
        """
        if mode not in CallMode.values:
            raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, f"unknown mode {mode!r}")
        queued = by.role == LegRole.USER and mode == CallMode.BRIDGE
        if queue is not None and not queued:
            raise CallbridgeError(
                ErrorCode.INVALID_ARGUMENT, "only an end user's call to the operators joins a queue"
            )
        if by.role == LegRole.USER:
            session = by.session
        elif mode == CallMode.BRIDGE and session is None:
            raise CallbridgeError(
                ErrorCode.INVALID_ARGUMENT, "sessionId is required to call an end user"
            )
        now = timezone.now()
        with transaction.atomic():
            if session is not None:
                # Lock the session so two concurrent calls cannot both find it free.
                session = EndUserSession.objects.select_for_update().get(pk=session.pk)
                if not session.is_usable:
                    raise CallbridgeError(
                        ErrorCode.INVALID_ARGUMENT, "that session has expired or was revoked"
                    )
                if (
                    mode == CallMode.BRIDGE
                    and session.calls.open().filter(mode=CallMode.BRIDGE).exists()
                ):
                    raise CallStateError("that end user is already in a call")
            ringing = mode == CallMode.BRIDGE
            if queued and queue is None:
                queue = Queue.objects.default()
            call = cls.objects.create(
                id=call_id or uuid.uuid4(),
                state=CallState.RINGING if ringing else CallState.ACTIVE,
                mode=mode,
                direction=(
                    CallDirection.INBOUND if by.role == LegRole.USER else CallDirection.OUTBOUND
                ),
                session=session if mode == CallMode.BRIDGE or by.role == LegRole.USER else None,
                operator_user=by.user,
                operator_token=by.api_token,
                created_by=by.label,
                media_worker=media_worker,
                created_at=now,
                answered_at=None if ringing else now,
                media_deadline=(
                    None if ringing else now + timedelta(seconds=settings.CALLBRIDGE_MEDIA_GRACE_S)
                ),
                # A queued caller's maximum wait (the default queue's: the ring timeout).
                ring_deadline=(now + timedelta(seconds=_max_wait_s(queue)) if ringing else None),
                queue=queue,
                queued_at=now if queue is not None else None,
                external_id=external_id,
                caller=caller,
                callee=callee,
                metadata=metadata or {},
            )
            leg = Leg.join(call, by, leg_id=leg_id, media_state=media_state)
            call.record_event(
                "call.created",
                by,
                {"state": call.state, "mode": mode, "direction": call.direction},
                leg=leg,
            )
            if queue is not None:
                call.record_event(
                    "queue.joined", by, {"queue": queue.public_id, "queueName": queue.name}
                )
        return call

    # --- transitions ---------------------------------------------------------------------
    def answer(
        self, by: Principal, *, leg_id: uuid.UUID | None = None, media_state: str = "new"
    ) -> CallEvent:
        """The answerer joins the call (its leg; as operator, the call's operator)."""
        return self._transition(
            lambda _: CallAction.ANSWER, by, new_leg={"leg_id": leg_id, "media_state": media_state}
        )

    def reject(self, by: Principal) -> CallEvent:
        return self._transition(lambda _: CallAction.REJECT, by)

    def hang_up(self, by: Principal, client_reason: str = "") -> CallEvent:
        """End the call from whatever state it is in when the lock is taken; `client_reason`
        (stored, and `clientReason` in the `call.ended` event) is the party's own word."""

        def action_for(call: Call) -> CallAction:
            if call.state == CallState.VOICEMAIL:
                # Mid-message, hanging up is how a message ends (the file is kept);
                # before one, it is giving up.
                messages = call.recordings.filter(kind="voicemail").exclude(
                    stop_reason__in=("failed", "consent_withdrawn")
                )
                return CallAction.LEAVE_MESSAGE if messages.exists() else CallAction.CANCEL
            if call.state != CallState.RINGING or call.answered_at is not None:
                return CallAction.HANG_UP  # answered once: a transfer rings it again
            return CallAction.CANCEL if by.role == call.caller_role else CallAction.REJECT

        return self._transition(action_for, by, client_reason=client_reason)

    def miss(self) -> CallEvent:
        return self._transition(lambda _: CallAction.MISS, SYSTEM)

    def refuse(self) -> CallEvent:
        """The caller's queue gives up on finding an operator (overflow `refuse`)."""
        return self._transition(lambda _: CallAction.REFUSE, SYSTEM)

    def request_callback(self, by: Principal) -> CallEvent:
        """The waiting caller leaves the line, asking to be called back (calls.callbacks
        creates the request in the same transaction, under this call's lock)."""
        return self._transition(lambda _: CallAction.REQUEST_CALLBACK, by)

    def offer_voicemail(self, deadline: Any, detail: dict[str, Any]) -> CallEvent:
        """The caller's queue overflows to voicemail: the call leaves the line (no offers,
        no answer) until `deadline` to choose; `detail` is its `queue.voicemail_offered`."""
        return self._transition(
            lambda _: CallAction.OFFER_VOICEMAIL, SYSTEM, ring_deadline=deadline, detail=detail
        )

    def end_message(self, by: Principal) -> CallEvent:
        """The caller's message is over (sent, cut off at its limit, or the caller left)."""
        return self._transition(lambda _: CallAction.LEAVE_MESSAGE, by)

    def terminate(self, reason: EndReason, detail: dict[str, Any] | None = None) -> CallEvent:
        """The system ends the call; `detail` is added to its `call.ended` event."""
        if reason not in SYSTEM_END_REASONS:
            raise ValueError(f"{reason!r} is not a system end reason")
        return self._transition(
            lambda _: CallAction.TERMINATE, SYSTEM, reason=reason, detail=detail
        )

    def _transition(
        self,
        choose_action: Callable[[Call], CallAction],
        by: Principal,
        *,
        reason: EndReason | None = None,
        new_leg: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
        client_reason: str = "",
        ring_deadline: Any = None,
    ) -> CallEvent:
        with transaction.atomic():
            call = Call.objects.select_for_update().get(pk=self.pk)
            action = choose_action(call)
            previous = CallState(call.state)
            target = TRANSITIONS.get((action, previous))
            if target is None:
                raise CallStateError(f"cannot {action} a call that is {call.state}")
            now = timezone.now()
            changes: dict[str, Any] = {"state": target, "ring_deadline": ring_deadline}
            if target == CallState.VOICEMAIL:
                event_name = "queue.voicemail_offered"  # still open: no end, no answer
            elif target == CallState.ACTIVE:
                # A transferred call keeps its first answer (talk time counts from it).
                changes["answered_at"] = call.answered_at or now
                changes["media_deadline"] = now + timedelta(
                    seconds=settings.CALLBRIDGE_MEDIA_GRACE_S
                )
                if by.is_operator:
                    changes.update(operator_user=by.user, operator_token=by.api_token)
                event_name = "call.answered"
            else:
                changes.update(
                    media_deadline=None,
                    held_at=None,  # the end is the end of any hold too (call.ended says so)
                    held_by="",
                    ended_at=now,
                    end_reason=reason or ACTION_END_REASONS[action],
                    ended_by=by.label,
                    ended_by_role=by.role,
                )
                if client_reason:
                    changes["client_reason"] = client_reason
                event_name = "call.ended"
            Call.objects.filter(pk=call.pk).update(**changes)
            for field, value in changes.items():
                setattr(call, field, value)
            if "ended_at" in changes:  # a supervisor (and a consulted target) leaves with it
                call.legs.filter(
                    role__in=(LegRole.SUPERVISOR, LegRole.CONSULT), left_at=None
                ).update(left_at=now, supervisor_mode="")
            data: dict[str, Any] = {"from": previous, "state": target}
            leg = None
            if target == CallState.ACTIVE:
                leg = Leg.join(call, by, **(new_leg or {}))
                data["legID"] = str(leg.pk)
                if not call.lacks_media():  # e.g. answered for server-side audio only
                    Call.objects.filter(pk=call.pk).update(media_deadline=None)
                    call.media_deadline = None
            elif target != CallState.VOICEMAIL:
                data["reason"] = changes["end_reason"]
                if client_reason:
                    data["clientReason"] = client_reason
            data.update(detail or {})
            event = call.record_event(event_name, by, data, leg=leg)
            if target == CallState.ACTIVE and leg is not None:
                _settle_transfer(call, by, TransferOutcome.COMPLETED, now, leg=leg)
            elif target in FINAL_STATES:
                _settle_transfer(call, by, TransferOutcome.CALL_ENDED, now)
        self._copy_from(call)
        return event

    # --- hold (not a state: see `held_at`) ----------------------------------------------
    def hold(self, by: Principal) -> CallEvent:
        """Put the active call on hold: `call.held`. CALL_STATE unless it is an active
        bridge call that is not held already (two holds at once: the row lock lets one in).
        Who may is calls.hold's question (the operator party)."""
        return self._set_hold(True, by)

    def resume(self, by: Principal) -> CallEvent:
        """Take the call off hold: `call.resumed {heldS}`. CALL_STATE unless it is held."""
        return self._set_hold(False, by)

    def _set_hold(self, held: bool, by: Principal) -> CallEvent:
        with transaction.atomic():
            call = Call.objects.select_for_update().get(pk=self.pk)
            if call.state != CallState.ACTIVE or call.mode != CallMode.BRIDGE:
                raise CallStateError(
                    f"only an active bridge call can be held or resumed (it is {call.state})"
                )
            if call.is_held == held:
                raise CallStateError("the call is on hold already" if held else "it is not on hold")
            if not held and call.open_consult() is not None:
                # The consult holds the caller: it ends by completing or cancelling it.
                raise CallStateError("a consult is under way: complete or cancel it")
            now = timezone.now()
            data: dict[str, Any] = {"state": call.state}
            if held:
                changes: dict[str, Any] = {"held_at": now, "held_by": by.label}
            else:
                changes = {"held_at": None, "held_by": ""}
                assert call.held_at is not None
                data["heldS"] = round((now - call.held_at).total_seconds(), 3)
            Call.objects.filter(pk=call.pk).update(**changes)
            for field, value in changes.items():
                setattr(call, field, value)
            event = call.record_event("call.held" if held else "call.resumed", by, data)
        self._copy_from(call)
        return event

    # --- transfer (calls.transfer decides who may, and to whom) ---------------------------
    def transfer(
        self,
        by: Principal,
        *,
        to_user: Any = None,
        to_queue: Queue | None = None,
        detail: dict[str, Any] | None = None,
    ) -> CallEvent:
        """Blind transfer: the operator party leaves (their leg's `left_at`, the call has no
        operator) and the call rings again, the caller on the line: in `to_queue`'s line
        (its routing, strategy and overflow), or for `to_user` alone (one offer, the ring
        timeout of the call's queue; ringing out puts it back in that queue's line).
        `call.transfer_started`; CALL_STATE unless the call is an active bridge call, and
        for `to_user` unless they are free (available, not on a call, not ringing, not in
        wrap-up). Two transfers at once: the row lock (and one open transfer per call)
        lets one in."""
        if (to_user is None) == (to_queue is None):
            raise ValueError("transfer to one operator or one queue")
        with transaction.atomic():
            call = Call.objects.select_for_update().get(pk=self.pk)
            legal = TRANSITIONS.get((CallAction.TRANSFER, CallState(call.state)))
            if legal is None or call.mode != CallMode.BRIDGE:
                raise CallStateError(
                    f"only an active call to a person can be transferred (it is {call.state})"
                )
            if call.direction != CallDirection.INBOUND:
                # Who may answer a ringing call follows its direction (the callee side):
                # an outbound call ringing again would ring the end user, not operators.
                raise CallStateError("only a call from an end user can be transferred")
            if (by.user, by.api_token) != (call.operator_user, call.operator_token):
                raise CallStateError("the call has another operator now")
            if call.open_transfer() is not None:  # a consult: complete or cancel it first
                raise CallStateError("a consult is under way: complete or cancel it")
            now = timezone.now()
            queue = to_queue or call.queue or Queue.objects.default()
            leaving = [
                leg
                for leg in call.legs.select_for_update().filter(role=LegRole.OPERATOR, left_at=None)
            ]
            Leg.objects.filter(pk__in=[leg.pk for leg in leaving]).update(left_at=now)
            ring_s = 0
            if to_user is not None:
                _require_free(to_user, now)
                ring_s = int(queue.ring_timeout_s)
            # After a direct ring out, the caller still gets the queue's whole wait.
            deadline = now + timedelta(seconds=ring_s + _max_wait_s(queue))
            changes: dict[str, Any] = {
                "state": legal,
                "queue": queue,
                "queued_at": now,  # back of the line (docs/api.md "Transfer")
                "ring_deadline": deadline,
                "media_deadline": None,
                "held_at": None,
                "held_by": "",
                "operator_user": None,
                "operator_token": None,
            }
            Call.objects.filter(pk=call.pk).update(**changes)
            for field, value in changes.items():
                setattr(call, field, value)
            transfer = Transfer.objects.create(
                call=call,
                by=by.label,
                from_leg=leaving[0] if leaving else None,
                to_user=to_user,
                to_queue=to_queue,
                started_at=now,
            )
            data: dict[str, Any] = {
                "from": CallState.ACTIVE,
                "state": CallState.RINGING,
                "transferID": transfer.pk,
                "kind": transfer.kind,
                "legID": str(leaving[0].pk) if leaving else None,
                "queue": queue.public_id,
            }
            if to_user is not None:
                data.update(toOperator=to_user.get_username(), toOperatorID=to_user.pk)
            else:
                data["toQueue"] = queue.public_id
            data.update(detail or {})
            event = call.record_event("call.transfer_started", by, data)
            if to_user is not None:
                offer = QueueOffer.objects.create(
                    call=call,
                    queue=queue,
                    operator=to_user,
                    offered_at=now,
                    deadline=now + timedelta(seconds=ring_s),
                )
                call.record_event(
                    "queue.offered",
                    SYSTEM,
                    {
                        "queue": queue.public_id,
                        "operator": to_user.get_username(),
                        "operatorID": to_user.pk,
                        "offerID": offer.pk,
                        "deadline": offer.deadline.isoformat(),
                        "transferID": transfer.pk,
                    },
                )
            else:
                call.record_event(
                    "queue.joined",
                    by,
                    {"queue": queue.public_id, "queueName": queue.name, "transferID": transfer.pk},
                )
        self._copy_from(call)
        return event

    def open_transfer(self) -> Transfer | None:
        return self.transfers.filter(outcome=TransferOutcome.PENDING).first()

    def open_consult(self) -> Transfer | None:
        """The attended transfer under way (calls/models/consult.py), if any."""
        return self.transfers.filter(
            outcome=TransferOutcome.PENDING, kind=TransferKind.ATTENDED
        ).first()

    def rings_by_offer_only(self) -> bool:
        """Only an operator it is offered to may answer it: a queue without open
        answering, or a transfer ringing one operator."""
        queue = self.queue if self.queue_id is not None else None
        if queue is not None and not queue.open_answer:
            return True
        return self.transfers.filter(
            outcome=TransferOutcome.PENDING, to_user__isnull=False
        ).exists()

    def _copy_from(self, other: Call) -> None:
        for field in self._meta.concrete_fields:
            setattr(self, field.attname, getattr(other, field.attname))

    def record_event(
        self, name: str, by: Principal, data: dict[str, Any], leg: Leg | None = None
    ) -> CallEvent:
        # Atomic even when called outside a transaction: CallEvent's post_save receivers
        # (offers, webhook deliveries) commit with the event or not at all.
        with transaction.atomic():
            event = CallEvent.objects.create(
                call=self, leg=leg, name=name, actor=by.label, actor_role=by.role, data=data
            )
        transaction.on_commit(lambda: call_event_recorded.send(sender=Call, event=event))
        return event

    def note_while_active(self, name: str, by: Principal, data: dict[str, Any]) -> None:
        """Append an event that only means something on an active call (a playback, a
        request for consent): a call that ended meanwhile gets nothing in its timeline."""
        with transaction.atomic():
            locked = Call.objects.select_for_update().get(pk=self.pk)
            if locked.state == CallState.ACTIVE:
                locked.record_event(name, by, data)

    def expire_media(self) -> CallEvent:
        """End the call with `media_timeout` if its media deadline has really passed."""

        def still_overdue(call: Call) -> CallAction:
            if call.media_deadline is None or call.media_deadline > timezone.now():
                raise CallStateError("the call has its media back")
            return CallAction.TERMINATE

        return self._transition(still_overdue, SYSTEM, reason=EndReason.MEDIA_TIMEOUT)

    @classmethod
    def expire_media_timeouts(cls) -> list[uuid.UUID]:
        ended = []
        for call in cls.objects.overdue_media():
            try:
                call.expire_media()
            except CallStateError:
                continue  # media came back, or the call ended meanwhile
            ended.append(call.pk)
        return ended

    @classmethod
    def expire_overdue(cls) -> list[uuid.UUID]:
        """Mark every ringing call past its ring deadline as missed; returns their ids."""
        missed = []
        for call in cls.objects.overdue_ringing():
            try:
                call.miss()
            except CallStateError:
                continue  # answered or ended meanwhile (another process got there first)
            missed.append(call.pk)
        return missed


def _require_free(user: Any, now: Any) -> None:
    """CALL_STATE unless the operator could take a call now (their status row locked:
    routing takes the same lock before it offers them one)."""
    status = OperatorStatus.objects.select_for_update().filter(user_id=user.pk).first()
    if status is None or status.availability != Availability.AVAILABLE:
        raise CallStateError(f"{user.get_username()} is not available")
    if status.wrap_up_until is not None and status.wrap_up_until > now:
        raise CallStateError(f"{user.get_username()} is in wrap-up")
    if Leg.objects.filter(user_id=user.pk, left_at=None, call__state__in=OPEN_STATES).exists():
        raise CallStateError(f"{user.get_username()} is on a call")
    if QueueOffer.objects.filter(operator_id=user.pk, outcome=OfferOutcome.PENDING).exists():
        raise CallStateError(f"{user.get_username()} is being rung for another call")


def _settle_transfer(
    call: Call, by: Principal, outcome: TransferOutcome, now: Any, leg: Leg | None = None
) -> None:
    """End the call's open transfer (if any) with `outcome`, in the caller's transaction:
    `call.transfer_completed {legID}` when someone took the call, `call.transfer_failed
    {reason}` otherwise."""
    open_ = call.transfers.filter(outcome=TransferOutcome.PENDING).first()
    if open_ is None:
        return
    Transfer.objects.filter(pk=open_.pk).update(
        outcome=outcome, ended_at=now, to_leg=leg if leg is not None else None
    )
    data: dict[str, Any] = {"transferID": open_.pk, "outcome": outcome}
    if leg is not None:
        data.update(legID=str(leg.pk), party=leg.party)
    name = (
        "call.transfer_completed"
        if outcome == TransferOutcome.COMPLETED
        else ("call.transfer_failed")
    )
    if open_.kind == TransferKind.ATTENDED:  # the call ended mid-consult
        name = "call.consult_cancelled"
        data.update(kind=open_.kind, reason=outcome)
    call.record_event(name, by, data, leg=leg)


def transfer_unanswered(call: Call, reason: str, now: Any) -> bool:
    """The operator a transfer rang let it ring out or declined it (under the call's
    lock, from routing.offers): the transfer ends `unanswered` and the call is an
    ordinary waiting call in its queue's line from now on. False if no direct transfer
    was open."""
    open_ = call.transfers.filter(outcome=TransferOutcome.PENDING, to_user__isnull=False).first()
    if open_ is None:
        return False
    Transfer.objects.filter(pk=open_.pk).update(outcome=TransferOutcome.UNANSWERED, ended_at=now)
    call.record_event(
        "call.transfer_failed",
        SYSTEM,
        {"transferID": open_.pk, "outcome": TransferOutcome.UNANSWERED, "reason": reason},
    )
    return True


class Leg(models.Model):
    """One party's place in a call; its media connection is its RTCPeerConnection.

    The id is the WebSocket `sessionId` of that leg. A reconnect re-uses the leg.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="legs")
    role = models.CharField(max_length=16, choices=LegRole.choices)
    session = models.ForeignKey(
        EndUserSession, on_delete=models.SET_NULL, null=True, blank=True, related_name="legs"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="call_legs",
    )
    api_token = models.ForeignKey(
        ApiToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="legs"
    )
    party = models.CharField(max_length=200)
    media_state = models.CharField(
        max_length=16, choices=MediaState.choices, default=MediaState.NEW
    )
    created_at = models.DateTimeField(default=timezone.now)
    media_connected_at = models.DateTimeField(null=True, blank=True)
    media_ended_at = models.DateTimeField(null=True, blank=True)
    # Supervisor legs only (calls/supervision.py): the mode now, and when they left (a
    # supervisor who left keeps the leg, for the record; joining again is a new leg).
    supervisor_mode = models.CharField(max_length=16, choices=SupervisorMode.choices, blank=True)
    # The party left a call that goes on (a transfer, a supervisor leaving): from then on
    # not a party; the legs of a call with their created_at / left_at say who was on it when.
    left_at = models.DateTimeField(null=True, blank=True)
    # Server-side call quality (calls/media/quality.py), stored when the leg's media
    # connection ends (a reconnect's connections merged): no samples, no figures.
    quality_samples = models.PositiveIntegerField(default=0)
    mos_min = models.FloatField(null=True, blank=True)
    mos_avg = models.FloatField(null=True, blank=True)
    loss_percent = models.FloatField(null=True, blank=True)
    jitter_ms = models.FloatField(null=True, blank=True)
    rtt_ms = models.FloatField(null=True, blank=True)
    quality_warnings = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            # One user leg and one operator leg at a time per call; system legs (echo,
            # playback, recorder) may be several, legs that left any number; supervisor
            # legs one at a time (below).
            models.UniqueConstraint(
                fields=["call", "role"],
                condition=~models.Q(role__in=("system", "supervisor")) & models.Q(left_at=None),
                name="one_current_leg_per_human_role",
            ),
            # One supervisor on a call at a time: two starting at once, the database
            # lets one in.
            models.UniqueConstraint(
                fields=["call"],
                condition=models.Q(role="supervisor", left_at=None),
                name="one_supervisor_at_a_time",
            ),
            models.CheckConstraint(
                name="leg_supervisor_mode_only_while_supervising",
                condition=(
                    models.Q(role="supervisor", left_at=None) & ~models.Q(supervisor_mode="")
                )
                | (~models.Q(role="supervisor", left_at=None) & models.Q(supervisor_mode="")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} leg {str(self.pk)[:8]} ({self.party})"

    def record_quality_change(self, name: str, data: dict[str, Any]) -> CallEvent | None:
        """`quality.warning` / `quality.cleared` for this leg (the media worker decides
        them), on a call not over yet: a late report after the end adds nothing."""
        with transaction.atomic():
            call = Call.objects.select_for_update().get(pk=self.call_id)
            if call.state not in OPEN_STATES:
                return None
            detail = {"legID": str(self.pk), "role": self.role, **data}
            return call.record_event(name, SYSTEM, detail, leg=self)

    def set_media_state(self, state: MediaState | str) -> CallEvent | None:
        """Record a media state change (the media worker reports them) and its event.

        Keeps the call's media deadline: cleared while every leg it needs is connected,
        started (CALLBRIDGE_MEDIA_GRACE_S) when one is not.
        """
        state = MediaState(state)
        with transaction.atomic():
            call = Call.objects.select_for_update().get(pk=self.call_id)
            leg = Leg.objects.select_for_update().get(pk=self.pk)
            previous = leg.media_state
            if previous == state:
                return None
            now = timezone.now()
            changes: dict[str, Any] = {"media_state": state}
            if state == MediaState.CONNECTED:
                changes["media_connected_at"] = now
            elif state in (MediaState.DISCONNECTED, MediaState.CLOSED, MediaState.FAILED):
                changes["media_ended_at"] = now
            Leg.objects.filter(pk=leg.pk).update(**changes)
            for name, value in changes.items():
                setattr(self, name, value)
            if call.state == CallState.ACTIVE:
                deadline = call._media_deadline(now)
                if deadline != call.media_deadline:
                    Call.objects.filter(pk=call.pk).update(media_deadline=deadline)
            elif (
                call.state == CallState.VOICEMAIL
                and leg.role == LegRole.USER
                and state in (MediaState.CLOSED, MediaState.FAILED)
                and (call.ring_deadline is None or call.ring_deadline > now)
            ):
                # The caller is gone (page closed, connection failed; `disconnected` may
                # come back): the stage is over now; the deadlines sweep ends it (a
                # message so far is kept) exactly once.
                Call.objects.filter(pk=call.pk).update(ring_deadline=now)
            return call.record_event(
                f"media.{state}",
                SYSTEM,
                {"legID": str(leg.pk), "role": leg.role, "from": previous, "state": state},
                leg=leg,
            )

    @classmethod
    def join(
        cls,
        call: Call,
        by: Principal,
        *,
        leg_id: uuid.UUID | None = None,
        media_state: str = "new",
    ) -> Leg:
        return cls.objects.create(
            id=leg_id or uuid.uuid4(),
            media_state=media_state,
            call=call,
            **by.party_fields(),
        )


class CallEvent(ChainedModel):
    """One entry of a call's history. Written once, never changed or deleted; chained."""

    CHAIN_FIELDS = ("call_id", "leg_id", "name", "actor", "actor_role", "data", "created_at")

    call = models.ForeignKey(Call, on_delete=models.PROTECT, related_name="events")
    leg = models.ForeignKey(
        Leg, on_delete=models.PROTECT, null=True, blank=True, related_name="events"
    )
    name = models.CharField(max_length=64)
    actor = models.CharField(max_length=200)
    actor_role = models.CharField(max_length=16, choices=LegRole.choices)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.name} by {self.actor}"
