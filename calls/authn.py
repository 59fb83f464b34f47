"""Who a bearer token stands for: an integrator's API token or an end user's session."""

from __future__ import annotations

from calls.errors import CallbridgeError, ErrorCode
from calls.models import ApiToken, EndUserSession
from calls.principals import Principal
from calls.tokens import token_kind


def _unauthorized(message: str) -> CallbridgeError:
    return CallbridgeError(ErrorCode.UNAUTHORIZED, message)


def principal_for_token(token: str) -> Principal:
    """The principal a raw token stands for; UNAUTHORIZED for anything unusable."""
    kind = token_kind(token)
    if kind == "cbk":
        api_token = ApiToken.objects.find(token)
        if api_token is not None:
            if api_token.is_revoked:
                raise _unauthorized("API token revoked")
            api_token.touch()
            return Principal.for_api_token(api_token)
    elif kind == "cbs":
        session = EndUserSession.objects.find(token)
        if session is not None:
            if session.is_revoked:
                raise _unauthorized("Session token revoked")
            if session.is_expired:
                raise _unauthorized("Session token expired")
            session.touch()
            return Principal.end_user(session)
    raise _unauthorized("Invalid authentication token")
