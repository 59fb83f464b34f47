"""REST authentication: API tokens, end-user session tokens, staff Django sessions.

Tokens arrive as `Authorization: Bearer <token>` or WaGo's `token: <token>` header; the
prefix (`cbk_` / `cbs_`) says which kind. Failures raise with the contract's codes.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.request import Request

from calls.api.errors import AuthenticationRefused
from calls.authn import principal_for_token
from calls.errors import CallbridgeError, ErrorCode
from calls.operators import is_operator_user
from calls.principals import Principal


def bearer_token(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = request.META.get("HTTP_TOKEN", "").strip()
    return token or None


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, Principal] | None:
        token = bearer_token(request)
        if token is None:
            return None
        try:
            principal = principal_for_token(token)
        except CallbridgeError as error:
            raise AuthenticationRefused(error) from None
        return principal, principal

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to unauthenticated requests.
        return 'Bearer realm="callbridge"'


class StaffSessionAuthentication(SessionAuthentication):
    """Django admin login: operators are active staff holding `calls.operate_calls`
    (CSRF enforced). Other staff are known but not allowed: 403 FORBIDDEN."""

    def authenticate(self, request: Request) -> tuple[Principal, Principal] | None:
        result: tuple[User, Any] | None = super().authenticate(request)
        if result is None or not getattr(result[0], "is_staff", False):
            return None
        if not is_operator_user(result[0]):
            raise AuthenticationRefused(
                CallbridgeError(ErrorCode.FORBIDDEN, "This staff login may not operate calls")
            )
        principal = Principal.staff(result[0])
        return principal, principal
