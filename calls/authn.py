"""Who a bearer token stands for: an integrator's API token or an end user's session."""

from __future__ import annotations

from django.core import signing

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


def principal_for_hub(session_token: str | None, access_token: str | None) -> Principal:
    """Who a WebRtcHub connection (Voisnap's `?sessionToken=…&access_token=…`) stands for:
    the end-user session it names. `access_token` alone may carry that session token (the
    official clients' `accessTokenFactory`); beside a session token it is the integrator's
    key of Voisnap's example and must be one still in force. UNAUTHORIZED otherwise."""
    token = session_token or access_token
    if not token:
        raise _unauthorized("Auth token required: sessionToken")
    principal = principal_for_token(token)
    if principal.session is None:
        raise _unauthorized(
            "a WebRtcHub connection needs a sessionToken (POST /api/v1/webrtc/sessions)"
        )
    beside = session_token and access_token and access_token != session_token
    if beside and not principal_for_token(access_token or "").is_operator:  # raises if dead
        raise _unauthorized("access_token must be an API token")
    return principal


# A hub's negotiate answers a connection token that the WebSocket then names (`?id=`):
# signed and bound to the credential, so no server keeps a table of them (any daphne may
# take the socket) and one credential's token opens nothing for another.
_HUB_SALT = "callbridge.hub.connection"
HUB_CONNECTION_TOKEN_MAX_AGE_S = 300


def hub_connection_token(principal: Principal) -> str:
    return signing.dumps({"p": principal.pk}, salt=_HUB_SALT, compress=True)


def hub_connection_token_matches(token: str, principal: Principal) -> bool:
    try:
        value = signing.loads(token, salt=_HUB_SALT, max_age=HUB_CONNECTION_TOKEN_MAX_AGE_S)
    except signing.BadSignature:  # SignatureExpired included
        return False
    return isinstance(value, dict) and value.get("p") == principal.pk
