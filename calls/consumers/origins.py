"""Which pages may open our WebSockets: this server's own origin, or a configured CORS origin.

An origin is a (scheme, host, port) triple and must match all three. This server's origin
is the Host header the request carries (itself an allowed host, so a rebound DNS name does
not count) with the scheme the connection arrived on: `wss` from daphne's TLS, or
SECURE_PROXY_SSL_HEADER from a TLS proxy in front. CALLBRIDGE_CORS_ORIGINS are full
origins, matched exactly. `null` (sandboxed frames, file:// pages) is never allowed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

Origin = tuple[str, str, int]
DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(text: str) -> Origin | None:
    """`scheme://host[:port]` with nothing else, normalised; None when it is not one."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _headers(scope: dict[str, Any], name: bytes) -> list[str]:
    return [value.decode("latin1") for key, value in scope.get("headers", []) if key == name]


def _allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG:
        hosts += [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def _arrived_over_tls(scope: dict[str, Any]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        meta_name, secure_value = proxy_header
        name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        values = _headers(scope, name)
        return len(values) == 1 and values[0].strip() == secure_value
    return False


def server_origin(scope: dict[str, Any]) -> Origin | None:
    """This server's origin as the client addressed it, if that host is one of ours."""
    hosts = _headers(scope, b"host")
    if len(hosts) != 1:
        return None
    domain, _ = split_domain_port(hosts[0].strip().lower())
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    scheme = "https" if _arrived_over_tls(scope) else "http"
    return parse_origin(f"{scheme}://{hosts[0].strip()}")


def origin_allowed(scope: dict[str, Any], origin_text: str) -> bool:
    origin = parse_origin(origin_text)
    if origin is None:
        return False
    if origin == server_origin(scope):
        return True
    return any(origin == parse_origin(allowed) for allowed in settings.CORS_ALLOWED_ORIGINS)


class PageOriginValidator:
    """ASGI wrapper: a WebSocket handshake from a disallowed page is refused (HTTP 403).

    `allow_no_origin`: clients that are not browsers (integrators' backends, aiortc, PolyAI
    SDK clients) send no Origin header; token-only sockets may accept them, cookie-
    authenticated ones must not.
    """

    def __init__(self, application: Any, *, allow_no_origin: bool) -> None:
        self.application = application
        self.allow_no_origin = allow_no_origin

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origins = _headers(scope, b"origin")
        if not origins:
            allowed = self.allow_no_origin
        else:
            allowed = len(origins) == 1 and origin_allowed(scope, origins[0])
        if allowed:
            return await self.application(scope, receive, send)
        # types-channels types a consumer's scope as its own TypedDict: this is that scope.
        return await WebsocketDenier()(scope, receive, send)  # type: ignore[arg-type]
