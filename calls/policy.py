"""Who may do what to a call (the contract's credentials table, with its 2026-11-30
amendment: parties, not roles).

Two questions, kept apart:
- *access*: may the principal see and steer the call (read it, hang up, record, play)?
  Operators (staff with the operator permission, API tokens) on every call; an end user
  only on the calls of its own session.
- *party*: is the principal one of the people in the call? Media (offers, candidates,
  closing a leg) and recording consent belong to parties only, by identity: the end-user
  session of the call, and the one operator (staff user or API token) who placed or
  answered it. Another operator credential is not a party: joining someone else's call
  comes only through an explicit, permission-gated action (transfer, monitor, barge).
State legality is not decided here: that is the state machine's job (Call._transition).
"""

from __future__ import annotations

from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.models import Call, CallMode, CallState, LegRole
from calls.models.queue import OfferOutcome, QueueOffer
from calls.principals import Principal


def _forbidden(message: str) -> CallbridgeError:
    return CallbridgeError(ErrorCode.FORBIDDEN, message)


def require_operator(principal: Principal, what: str) -> None:
    """Operators-only actions (create sessions, record, play): FORBIDDEN to end users."""
    if not principal.is_operator:
        raise _forbidden(f"Only operators and API tokens may {what}")


def has_access(principal: Principal, call: Call) -> bool:
    if principal.is_operator:
        return True
    return principal.session is not None and call.session_id == principal.session.pk


def require_access(principal: Principal, call: Call) -> None:
    if not has_access(principal, call):
        raise _forbidden("you are not a party to this call")


def is_party(principal: Principal, call: Call) -> bool:
    """The principal is this call's end user, or the operator who placed/answered it."""
    if principal.session is not None:
        return call.session_id == principal.session.pk
    if principal.user is not None:
        return call.operator_user_id == principal.user.pk
    if principal.api_token is not None:
        return call.operator_token_id == principal.api_token.pk
    return False


def may_answer(principal: Principal, call: Call) -> bool:
    """A ringing call may still be answered by anyone on the side it rings; a call
    waiting in a queue without `open_answer`, only by the operator it is offered to (the
    answer re-checks that under the call's lock: calls.routing.offers)."""
    if call.state != CallState.RINGING or call.mode != CallMode.BRIDGE:
        return False
    if principal.role == call.caller_role or not has_access(principal, call):
        return False
    if not (principal.is_operator or is_party(principal, call)):
        return False
    return not needs_offer(call) or has_offer(principal, call)


def needs_offer(call: Call) -> bool:
    return call.rings_by_offer_only()


def has_offer(principal: Principal, call: Call) -> bool:
    if principal.user is None:
        return False
    return QueueOffer.objects.filter(
        call=call, operator=principal.user, outcome=OfferOutcome.PENDING
    ).exists()


def require_may_answer(principal: Principal, call: Call) -> None:
    """Answer: the callee side, and for a queued call, the operator it is offered to."""
    require_callee(principal, call)
    if call.state == CallState.RINGING and needs_offer(call) and not has_offer(principal, call):
        # Answered (or ended) a moment ago, which cancelled our offer: the loser of a race
        # to answer hears CALL_STATE, as without queues.
        now = Call.objects.filter(pk=call.pk).values_list("state", flat=True).first()
        if now != CallState.RINGING:
            raise CallStateError(f"cannot answer a call that is {now}")
        raise _forbidden("this call is not offered to you")


def require_party(principal: Principal, call: Call) -> None:
    if not is_party(principal, call):
        raise _forbidden("you are not a party to this call")


def require_party_or_callee(principal: Principal, call: Call) -> None:
    """Consent: a party, or (while it rings) whoever may answer it — their answer only
    counts once they are in the call, as the party they are."""
    if not (is_party(principal, call) or may_answer(principal, call)):
        raise _forbidden("you are not a party to this call")


def require_may_end(principal: Principal, call: Call) -> None:
    """Reject or hang up. A staff operator never rejects a call waiting in a queue
    without open answering: it would end the caller's call for the whole team (they let
    their offer ring out, or set themselves away). Integrator backends (API tokens) and
    the admin's hang-up keep the power to end any call."""
    if (
        call.state == CallState.RINGING
        and principal.role != call.caller_role
        and principal.user is not None
        and needs_offer(call)
    ):
        raise _forbidden("a call waiting in a queue is not rejected: decline your offer")


def require_may_decline(principal: Principal, call: Call) -> None:
    """Declining passes an offer on: only staff operators are offered calls."""
    require_access(principal, call)
    if principal.user is None or principal.kind != "staff":
        raise _forbidden("only staff operators are offered calls; there is nothing to decline")


def require_callee(principal: Principal, call: Call) -> None:
    """Answer/reject: only the side being rung (echo calls have no callee side)."""
    require_access(principal, call)
    if call.mode == CallMode.BRIDGE and principal.role == call.caller_role:
        rung = "operators" if call.caller_role == LegRole.USER else "end user"
        raise _forbidden(f"this call rings the {rung}; the caller cannot answer or reject it")


def require_may_hold(principal: Principal, call: Call) -> None:
    """Hold and resume (and, later, the other in-call controls of the operator): the call's
    operator party only — the staff user or API token who placed or answered it. End users
    and other operators' credentials get FORBIDDEN (supervisors step in through their own,
    permission-gated modes, not by holding someone else's caller)."""
    if not principal.is_operator:
        raise _forbidden("only the call's operator may hold or resume it")
    if not is_party(principal, call):
        raise _forbidden("you are not the operator of this call")
