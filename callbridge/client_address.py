"""Who is the client? One answer for the whole server (rate limits, consent and recording
access rows, admin login lockouts), under one trust model.

The connecting peer is the client, unless that peer is one of `CALLBRIDGE_TRUSTED_PROXIES`.
Then `X-Forwarded-For` is read from the RIGHT: each proxy appends the address it saw, so
the right-most entries were written by proxies we trust and everything left of the first
untrusted entry may have been invented by the client. The client is the right-most entry
that is not a trusted proxy. Empty setting (the default): no header is believed.

`ClientAddressMiddleware` applies this once per connection (HTTP and WebSocket) by
rewriting `scope["client"]`; Django's REMOTE_ADDR, the consumers and every helper below
then read that one value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Scope = dict[str, Any]

# WebSocket scopes carry ws/wss; X-Forwarded-Proto says http/https.
_WEBSOCKET_SCHEME = {"https": "wss", "http": "ws"}


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """`10.0.0.1`, `10.0.0.0/8`, `::1`… as networks (ValueError on anything else)."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


@lru_cache(maxsize=8)
def _trusted(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(entries)


def trusted_proxies() -> tuple[Network, ...]:
    return _trusted(tuple(settings.CALLBRIDGE_TRUSTED_PROXIES))


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # An IPv4 peer on a dual-stack socket looks like ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _is_trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address in network for network in networks)


def is_trusted_proxy(peer: str, networks: Sequence[Network]) -> bool:
    address = _address(peer)
    return address is not None and _is_trusted(address, networks)


def resolve(peer: str, forwarded_for: Sequence[str], networks: Sequence[Network]) -> str:
    """The client's address, given the connecting peer and the X-Forwarded-For values."""
    if not is_trusted_proxy(peer, networks):
        return peer
    client = str(_address(peer))
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # garbage: nothing to its left can be believed; keep the last proxy seen
        client = str(address)
        if not _is_trusted(address, networks):
            break
    return client


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [
        value.decode("latin-1") for key, value in scope.get("headers", []) if key.lower() == name
    ]


class ClientAddressMiddleware:
    """Sets `scope["client"]` (and the scheme, from X-Forwarded-Proto) for requests that
    came through a trusted proxy; other connections pass through unchanged."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = self.resolved(scope)
        await self.app(scope, receive, send)

    @staticmethod
    def resolved(scope: Scope) -> Scope:
        networks = trusted_proxies()
        peer = scope.get("client")
        if not networks or not peer or not is_trusted_proxy(str(peer[0]), networks):
            return scope  # a direct client: its headers say nothing
        client = resolve(str(peer[0]), _headers(scope, b"x-forwarded-for"), networks)
        updated = dict(scope, client=(client, peer[1] if client == peer[0] else 0))
        proto = _headers(scope, b"x-forwarded-proto")
        if proto and proto[-1].strip() in ("http", "https"):
            value = proto[-1].strip()
            updated["scheme"] = _WEBSOCKET_SCHEME[value] if scope["type"] == "websocket" else value
        return updated


def client_ip_of_scope(scope: Mapping[str, Any]) -> str:
    """The client address of an ASGI scope (after the middleware)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def client_ip(request: HttpRequest) -> str | None:
    """The client address of a Django request (REMOTE_ADDR comes from `scope["client"]`).
    Also django-axes' AXES_CLIENT_IP_CALLABLE."""
    return request.META.get("REMOTE_ADDR") or None
