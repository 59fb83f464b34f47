"""Rate limits per principal and per client IP (429 RATE_LIMITED).

The per-IP limit runs before authentication (`ClientIpGate`, the first authentication
class): DRF checks throttles only after authenticating, so requests with bad tokens would
otherwise never be counted and token guessing would be unlimited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from callbridge.client_address import client_ip

if TYPE_CHECKING:  # runtime import would be circular (DRF settings import us)
    from rest_framework.views import APIView


class PrincipalRateThrottle(SimpleRateThrottle):
    scope = "principal"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        user = request.user
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return self.cache_format % {"scope": self.scope, "ident": user.pk}


class ClientIpRateThrottle(SimpleRateThrottle):
    scope = "client_ip"

    def get_ident(self, request: Request) -> str:
        # Not DRF's own X-Forwarded-For parsing: the one trust model decides.
        return client_ip(request) or "unknown"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ClientIpGate(BaseAuthentication):
    """Not an authentication: counts every request against its client IP before the real
    authentication classes look at its token (429 RATE_LIMITED when over)."""

    def authenticate(self, request: Request) -> None:
        throttle = ClientIpRateThrottle()
        # Before any view exists; DRF types `view` as APIView, but this throttle never reads it.
        if not throttle.allow_request(request, None):  # type: ignore[arg-type]
            raise Throttled(wait=throttle.wait())
        return None
