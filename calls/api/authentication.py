"""REST authentication: API tokens, end-user session tokens, staff Django sessions.

Tokens arrive as `Authorization: Bearer <token>` or WaGo's `token: <token>` header; the
prefix (`cbk_` / `cbs_`) says which kind. Failures raise with the contract's codes.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.request import Request

from calls.api.exceptions import ApiError
from calls.errors import ErrorCode
from calls.models import ApiToken, EndUserSession
from calls.principals import Principal
from calls.tokens import token_kind


def bearer_token(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = request.META.get("HTTP_TOKEN", "").strip()
    return token or None


def authenticate_token(token: str) -> Principal:
    """The principal a raw token stands for; UNAUTHORIZED for anything unusable."""
    kind = token_kind(token)
    if kind == "cbk":
        api_token = ApiToken.objects.find(token)
        if api_token is not None:
            if api_token.is_revoked:
                raise ApiError(ErrorCode.UNAUTHORIZED, "API token revoked")
            api_token.touch()
            return Principal.for_api_token(api_token)
    elif kind == "cbs":
        session = EndUserSession.objects.find(token)
        if session is not None:
            if session.is_revoked:
                raise ApiError(ErrorCode.UNAUTHORIZED, "Session token revoked")
            if session.is_expired:
                raise ApiError(ErrorCode.UNAUTHORIZED, "Session token expired")
            session.touch()
            return Principal.end_user(session)
    raise ApiError(ErrorCode.UNAUTHORIZED, "Invalid authentication token")


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, Principal] | None:
        token = bearer_token(request)
        if token is None:
            return None
        principal = authenticate_token(token)
        return principal, principal

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to unauthenticated requests.
        return 'Bearer realm="callbridge"'


class StaffSessionAuthentication(SessionAuthentication):
    """Django admin login: only active staff users are operators (CSRF enforced)."""

    def authenticate(self, request: Request) -> tuple[Principal, Principal] | None:
        result: tuple[AbstractBaseUser, Any] | None = super().authenticate(request)
        if result is None or not getattr(result[0], "is_staff", False):
            return None
        principal = Principal.staff(result[0])
        return principal, principal
