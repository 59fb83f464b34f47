"""What signaling (REST and WebSocket alike) may do to calls: offers, legs, hang-up.

Offers: who an SDP offer connects is decided before the media worker sees it, and
recorded after.

`plan_offer` only reads: it checks the principal may send this offer and picks the call
and leg (new ids for a new call or a first answer). The worker answers the SDP; only then
`commit_offer` writes (creates the call, answers it, or marks a reconnect), so an offer
the worker refuses (bad SDP) leaves no trace. Shared by REST and WebSocket signaling.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction

from calls import limits, policy
from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.models import Call, CallMode, EndUserSession, Leg, MediaState, Queue
from calls.principals import Principal
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
        if principal.session is not None and not principal.session.is_usable:
            raise CallbridgeError(ErrorCode.UNAUTHORIZED, "Session token expired")
        return OfferPlan(
            OfferKind.CREATE,
            uuid.uuid4(),
            uuid.uuid4(),
            principal.role,
            mode,
            choose_worker(),
            named.pk if named is not None else None,
        )

    if queue is not None:
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "a queue is named by a new call only")
    call = Call.objects.filter(pk=parse_uuid(call_id, _not_found())).first()
    if call is None:
        raise _not_found()
    policy.require_access(principal, call)
    if not call.is_open:
        raise CallStateError(f"the call is {call.state}")
    legs = list(call.legs.filter(role=principal.role))
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


@limits.recheck_commits_under_lock
def commit_offer(principal: Principal, plan: OfferPlan) -> None:
    """Record what the accepted offer did. CallbridgeError if the call moved on meanwhile."""
    if plan.kind == OfferKind.CREATE:
        queue = None
        if plan.queue_id is not None:
            queue = Queue.objects.filter(pk=plan.queue_id).first()
            if queue is None:  # deleted while the worker answered
                raise CallbridgeError(ErrorCode.NOT_FOUND, "No such queue")
        Call.start(
            by=principal,
            mode=plan.mode,
            call_id=plan.call_id,
            leg_id=plan.leg_id,
            media_state=MediaState.CONNECTING,
            media_worker=plan.worker,
            queue=queue,
        )
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


def open_calls(principal: Principal) -> list[tuple[Call, list[Leg]]]:
    """The principal's open calls with their legs (to resume after a socket reconnect)."""
    calls = Call.objects.open().visible_to(principal).prefetch_related("legs")[:50]
    return [(call, list(call.legs.all())) for call in calls]
