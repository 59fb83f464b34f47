"""Who may do what to a call (the contract's credentials table).

Operators (staff and API tokens) may act on every call; an end user only on the calls of
its own session. Answering and rejecting belong to the side being rung. State legality is
not decided here: that is the state machine's job (Call._transition).
"""

from __future__ import annotations

from calls.errors import CallbridgeError, ErrorCode
from calls.models import Call, CallMode, LegRole
from calls.principals import Principal


def _forbidden(message: str) -> CallbridgeError:
    return CallbridgeError(ErrorCode.FORBIDDEN, message)


def is_party(principal: Principal, call: Call) -> bool:
    if principal.is_operator:
        return True
    return principal.session is not None and call.session_id == principal.session.pk


def require_party(principal: Principal, call: Call) -> None:
    if not is_party(principal, call):
        raise _forbidden("you are not a party to this call")


def require_callee(principal: Principal, call: Call) -> None:
    """Answer/reject: only the side being rung (echo calls have no callee side)."""
    require_party(principal, call)
    if call.mode == CallMode.BRIDGE and principal.role == call.caller_role:
        rung = "operators" if call.caller_role == LegRole.USER else "end user"
        raise _forbidden(f"this call rings the {rung}; the caller cannot answer or reject it")
