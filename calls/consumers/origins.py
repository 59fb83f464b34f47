"""Which page origins may open our WebSockets: this server's hosts and the CORS origins."""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings


def allowed_origins() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG:
        hosts += [".localhost", "127.0.0.1", "[::1]"]
    return hosts + list(settings.CORS_ALLOWED_ORIGINS)


class PageOriginValidator(OriginValidator):
    """Browsers' pages must come from an allowed origin.

    `allow_no_origin`: clients that are not browsers (integrators' backends, aiortc, PolyAI
    SDK clients) send no Origin header; token-only sockets may accept them, cookie-
    authenticated ones must not.
    """

    def __init__(self, application: Any, *, allow_no_origin: bool) -> None:
        super().__init__(application, allowed_origins())
        self.allow_no_origin = allow_no_origin

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return self.allow_no_origin
        return super().valid_origin(parsed_origin)
