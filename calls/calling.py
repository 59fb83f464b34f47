"""What signaling (REST and WebSocket alike) may do to calls: offers, legs, hang-up.

Offers: who an SDP offer connects is decided before the media worker sees it, and
recorded after.

`plan_offer` only reads: it checks the principal may send this offer and picks the call
and leg (new ids for a new call or a first answer). The worker answers the SDP; only then
`commit_offer` writes (creates the call, answers it, or marks a reconnect), so an offer
the worker refuses (bad SDP) leaves no trace. Shared by REST and WebSocket signaling.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from calls import limits, policy
from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.models import Call, CallMode, EndUserSession, Leg, LegRole, MediaState, Queue
from calls.models import consult as consults
from calls.principals import Principal
from calls.signaling.protocol import CallDetails
from calls.workers.placement import choose_worker
from calls.workers.protocol import OfferKind  # the worker needs the kind too (drain)


@dataclass(frozen=True)
class OfferPlan:
    kind: OfferKind
    call_id: uuid.UUID
    leg_id: uuid.UUID
    role: str
    mode: str
    worker: str
    queue_id: int | None = None  # the queue a new end-user call joins (None: the default)
    details: CallDetails | None = None  # a gateway client's new call: its callSid, numbers …

    @property
    def creates_call(self) -> bool:
        return self.kind == OfferKind.CREATE


def _not_found() -> CallbridgeError:
    return CallbridgeError(ErrorCode.NOT_FOUND, "No such call")


def parse_uuid(value: str, not_found: CallbridgeError) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise not_found from None


def queue_named(principal: Principal, mode: str, public_id: str | None) -> Queue | None:
    """The queue a new call names (None: the default queue, for an end user's call).

    Only an end user's call to the operators joins a queue; naming one elsewhere is
    INVALID_ARGUMENT, an unknown one NOT_FOUND."""
    if public_id is None:
        return None
    if principal.is_operator or mode != CallMode.BRIDGE:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, "only an end user's call to the operators names a queue"
        )
    return Queue.objects.named(public_id)


# Voisnap's `agentId` for the built-in echo; any other agent id is a queue's public id.
ECHO_AGENT = "echo"


def agent_target(agent: str) -> tuple[str, str | None]:
    """(mode, queue public id) a session's agent calls ("" : the default queue)."""
    if agent == ECHO_AGENT:
        return CallMode.ECHO, None
    return CallMode.BRIDGE, agent or None


def require_agent(agent: str) -> None:
    """NOT_FOUND unless `agent` is the echo agent or an existing queue."""
    _, queue = agent_target(agent)
    if queue is not None:
        Queue.objects.named(queue)


@limits.refuse_plans_over_limits
def plan_offer(
    principal: Principal, call_id: str | None, mode: str | None, queue: str | None = None
) -> OfferPlan:
    """callbridge's own offer: a new call (no `call_id`), or joining the call `call_id`
    (answering it, or reconnecting the principal's own leg)."""
    if call_id is None:
        mode = mode or CallMode.BRIDGE
        if mode not in CallMode.values:
            raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, f"unknown mode {mode!r}")
        named = queue_named(principal, mode, queue)
        if principal.is_operator and mode == CallMode.BRIDGE:
            raise CallbridgeError(
                ErrorCode.INVALID_ARGUMENT,
                "operators ring an end user with POST /api/calls {sessionId}, then send the offer"
                " with its callSid",
            )
        return _new_call(principal, mode, named)

    if queue is not None:
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "a queue is named by a new call only")
    call = Call.objects.filter(pk=parse_uuid(call_id, _not_found())).first()
    if call is None:
        raise _not_found()
    policy.require_access(principal, call)
    if not call.is_open:
        raise CallStateError(f"the call is {call.state}")
    supervising = call.legs.filter(role=LegRole.SUPERVISOR, left_at=None).first()
    if supervising is not None and principal.owns(supervising):
        # A supervisor's media (calls.supervision made its leg): connect or reconnect it.
        return OfferPlan(
            OfferKind.ATTACH,
            call.pk,
            supervising.pk,
            supervising.role,
            call.mode,
            call.media_worker,
        )
    consulting = _consult_plan(principal, call)
    if consulting is not None:
        return consulting
    legs = list(call.legs.filter(role=principal.role, left_at=None))  # left: no longer a party
    mine = next((leg for leg in legs if principal.owns(leg)), None)
    if mine is not None:
        return OfferPlan(
            OfferKind.ATTACH, call.pk, mine.pk, mine.role, call.mode, call.media_worker
        )
    if not legs and policy.may_answer(principal, call):
        return OfferPlan(
            OfferKind.ANSWER, call.pk, uuid.uuid4(), principal.role, call.mode, call.media_worker
        )
    # Someone else holds this role's place (or the call is not ringing for you): joining
    # another party's call is never a side effect of an offer.
    raise CallbridgeError(ErrorCode.FORBIDDEN, "you have no place in this call")


def _consult_plan(principal: Principal, call: Call) -> OfferPlan | None:
    """An attended transfer's consulted operator: their offer answers the consult ringing
    for them (a leg of its own, role `consult`), or reconnects their consult leg."""
    if principal.user is None or principal.kind != "staff":
        return None
    leg = consults.target_leg(call)
    if leg is not None and principal.owns(leg):
        return OfferPlan(OfferKind.ATTACH, call.pk, leg.pk, leg.role, call.mode, call.media_worker)
    if leg is None and consults.rings_for(call, principal.user.pk):
        return OfferPlan(
            OfferKind.ANSWER, call.pk, uuid.uuid4(), LegRole.CONSULT, call.mode, call.media_worker
        )
    return None


def _new_call(principal: Principal, mode: str, queue: Queue | None) -> OfferPlan:
    if principal.session is not None and not principal.session.is_usable:
        raise CallbridgeError(ErrorCode.UNAUTHORIZED, "Session token expired")
    return OfferPlan(
        OfferKind.CREATE,
        uuid.uuid4(),
        uuid.uuid4(),
        principal.role,
        mode,
        choose_worker(),
        queue.pk if queue is not None else None,
    )


def _call_sid_taken() -> CallbridgeError:
    return CallbridgeError(
        ErrorCode.INVALID_ARGUMENT, "callSid is already in use: choose a unique one"
    )


@limits.refuse_plans_over_limits
def plan_gateway_offer(principal: Principal, mode: str, details: CallDetails) -> OfferPlan:
    """A gateway client's offer (PolyAI's dialect): always its own call. Its `callSid`, if
    any, becomes the call's external id; the same party sending it again reconnects its
    leg, anyone else is refused. A call to a person comes from an end user and waits in
    the queue `callee` names by public id, else in the default queue."""
    if details.external_id is not None:
        existing = Call.objects.filter(external_id=details.external_id).first()
        if existing is not None:
            return _rejoin(principal, existing)
    queue = None
    if mode == CallMode.BRIDGE:
        if principal.session is None:
            raise CallbridgeError(
                ErrorCode.INVALID_ARGUMENT,
                "a call to a person comes from an end user's session token (POST /api/sessions);"
                " an API token may use mode echo here",
            )
        if details.callee:
            queue = Queue.objects.filter(public_id=details.callee).first()
    return dataclasses.replace(_new_call(principal, mode, queue), details=details)


def _rejoin(principal: Principal, call: Call) -> OfferPlan:
    """The same callSid again: the party's own call (a reconnect), nobody else's."""
    mine = next((leg for leg in call.legs.all() if principal.owns(leg)), None)
    if mine is None:
        raise _call_sid_taken()
    if not call.is_open:
        raise CallStateError(f"the call is {call.state}")
    return OfferPlan(OfferKind.ATTACH, call.pk, mine.pk, mine.role, call.mode, call.media_worker)


@limits.recheck_commits_under_lock
def commit_offer(principal: Principal, plan: OfferPlan) -> None:
    """Record what the accepted offer did. CallbridgeError if the call moved on meanwhile."""
    if plan.kind == OfferKind.CREATE:
        queue = None
        if plan.queue_id is not None:
            queue = Queue.objects.filter(pk=plan.queue_id).first()
            if queue is None:  # deleted while the worker answered
                raise CallbridgeError(ErrorCode.NOT_FOUND, "No such queue")
        details = plan.details or CallDetails()
        try:
            Call.start(
                by=principal,
                mode=plan.mode,
                call_id=plan.call_id,
                leg_id=plan.leg_id,
                media_state=MediaState.CONNECTING,
                media_worker=plan.worker,
                queue=queue,
                external_id=details.external_id,
                caller=details.caller,
                callee=details.callee,
                metadata=details.metadata,
            )
        except IntegrityError:
            # Two offers with one callSid at once: the unique column lets one call in.
            taken = details.external_id is not None
            if taken and Call.objects.filter(external_id=details.external_id).exists():
                raise _call_sid_taken() from None
            raise
    elif plan.kind == OfferKind.ANSWER and plan.role == LegRole.CONSULT:
        call = Call.objects.get(pk=plan.call_id)
        consults.answer(call, principal, leg_id=plan.leg_id, media_state=MediaState.CONNECTING)
    elif plan.kind == OfferKind.ANSWER:
        call = Call.objects.get(pk=plan.call_id)
        policy.require_may_answer(principal, call)
        call.answer(principal, leg_id=plan.leg_id, media_state=MediaState.CONNECTING)
    else:
        with transaction.atomic():
            leg = Leg.objects.select_related("call").get(pk=plan.leg_id)
            if not principal.owns(leg):
                raise CallbridgeError(ErrorCode.FORBIDDEN, "that session is not yours")
            if not leg.call.is_open:
                raise CallStateError(f"the call is {leg.call.state}")
            if leg.left_at is not None:  # a supervisor who left meanwhile
                raise CallStateError("you left this call")
            leg.set_media_state(MediaState.CONNECTING)


def start_call(
    principal: Principal, mode: str, session: EndUserSession | None, queue: str | None = None
) -> Call:
    """A new call without media yet (REST `POST /api/calls`, WaGo's /call/make), placed on
    a media worker, within the principal's caps: counted under its credential's lock (taken
    before the session's, the one lock order everywhere). `queue`: the public id of the
    queue an end user calls (None: the default queue)."""
    named = queue_named(principal, mode, queue)
    with transaction.atomic():
        limits.lock_credential(principal)
        limits.check_new_call(principal, mode)
        return Call.start(
            by=principal, mode=mode, session=session, media_worker=choose_worker(), queue=named
        )


@dataclass(frozen=True)
class LegRef:
    call_id: uuid.UUID
    leg_id: uuid.UUID
    role: str
    worker: str


def leg_for(principal: Principal, leg_id: str) -> LegRef:
    """A leg the principal may send candidates for / close: its own, by identity."""
    not_found = CallbridgeError(ErrorCode.NOT_FOUND, "No such session", recoverable=True)
    leg = Leg.objects.select_related("call").filter(pk=parse_uuid(leg_id, not_found)).first()
    if leg is None:
        raise not_found
    if not principal.owns(leg):
        raise CallbridgeError(ErrorCode.FORBIDDEN, "that session is not yours")
    if leg.left_at is not None:
        raise CallStateError("you left this call (it was transferred)")
    return LegRef(leg.call_id, leg.pk, leg.role, leg.call.media_worker)


def own_leg(principal: Principal, call: Call) -> LegRef:
    """The principal's leg in `call` (REST close)."""
    policy.require_party(principal, call)
    leg = next((leg for leg in call.legs.all() if principal.owns(leg)), None)
    if leg is None:
        raise CallbridgeError(ErrorCode.FORBIDDEN, "you have no place in this call")
    return LegRef(call.pk, leg.pk, leg.role, call.media_worker)


def call_for(principal: Principal, call_id: str) -> Call:
    """The call, if the principal may steer it (NOT_FOUND / FORBIDDEN otherwise)."""
    call = Call.objects.filter(pk=parse_uuid(call_id, _not_found())).first()
    if call is None:
        raise _not_found()
    policy.require_access(principal, call)
    return call


def hang_up(principal: Principal, call_id: str, client_reason: str = "") -> Call:
    call = call_for(principal, call_id)
    policy.require_may_end(principal, call)
    call.hang_up(principal, client_reason=client_reason)
    return call


def end_session(principal: Principal, call_id: uuid.UUID) -> None:
    """PolyAI's `close`: the party is done with its call. It ends (`hangup`, or `cancelled`
    while still ringing) and the other party is told; a call that ended already stays as
    it is, so a client's close after the operator hung up is no error."""
    call = call_for(principal, str(call_id))
    if not call.is_open:
        return
    policy.require_may_end(principal, call)
    try:
        call.hang_up(principal)
    except CallStateError:
        return  # ended meanwhile: the same outcome


def open_calls(principal: Principal) -> list[tuple[Call, list[Leg]]]:
    """The principal's open calls with their legs (to resume after a socket reconnect)."""
    calls = Call.objects.open().visible_to(principal).prefetch_related("legs")[:50]
    return [(call, list(call.legs.all())) for call in calls]
