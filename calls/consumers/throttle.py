"""WebSocket rate limits (RATE_LIMITED), per serving process.

- per client IP, before authentication: handshakes, and every message a socket sends
  while it has not signed in (token guessing and anonymous floods);
- per socket and per principal (token, staff user), once signed in: messages.

Buckets live in this process's memory (like the REST throttles' default local-memory
cache): N daphne processes allow N times the rate in total.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from callbridge.client_address import client_ip_of_scope
from calls.errors import CallbridgeError, ErrorCode
from calls.signaling.rate_limit import Rate, TokenBuckets


@dataclass
class SignalingLimits:
    by_ip: TokenBuckets
    by_socket: TokenBuckets
    by_principal: TokenBuckets
    source: tuple[str, str, str]  # the settings they were built from

    @classmethod
    def from_settings(cls) -> SignalingLimits:
        source = _configured_rates()
        ip, socket, principal = (TokenBuckets(Rate.parse(rate)) for rate in source)
        return cls(ip, socket, principal, source)


def _configured_rates() -> tuple[str, str, str]:
    return (
        settings.CALLBRIDGE_WS_RATE_LIMIT_IP,
        settings.CALLBRIDGE_WS_RATE_LIMIT_SOCKET,
        settings.CALLBRIDGE_WS_RATE_LIMIT_PRINCIPAL,
    )


clock = time.monotonic  # tests move time forward by replacing it

# Close code for a handshake over the per-IP limit (4000-4999: the application's own).
CLOSE_RATE_LIMITED = 4429

_limits: SignalingLimits | None = None


def limits() -> SignalingLimits:
    """This process's limiters (rebuilt when the settings change: tests override them)."""
    global _limits
    current = _limits
    if current is None or current.source != _configured_rates():
        current = _limits = SignalingLimits.from_settings()
    return current


def reset() -> None:
    """Forget every bucket (tests)."""
    global _limits
    _limits = None


def rate_limited(buckets: TokenBuckets, key: str) -> CallbridgeError:
    wait = round(buckets.retry_after(key), 2)
    return CallbridgeError(
        ErrorCode.RATE_LIMITED,
        "Too many messages; slow down",
        details={"retryAfter": wait},
    )


def check_handshake(ip: str) -> CallbridgeError | None:
    buckets, key = limits().by_ip, f"ip:{ip}"
    return None if buckets.allow(key, clock()) else rate_limited(buckets, key)


def check_message(ip: str, socket_id: str, principal_id: str | None) -> CallbridgeError | None:
    """None if this message may be handled; else the RATE_LIMITED error to send back."""
    current, now = limits(), clock()
    if principal_id is None:
        key = f"ip:{ip}"
        return None if current.by_ip.allow(key, now) else rate_limited(current.by_ip, key)
    if not current.by_socket.allow(socket_id, now):
        return rate_limited(current.by_socket, socket_id)
    key = f"principal:{principal_id}"
    if not current.by_principal.allow(key, now):
        return rate_limited(current.by_principal, key)
    return None


def socket_closed(socket_id: str) -> None:
    limits().by_socket.forget(socket_id)


def client_ip(scope: dict[str, Any]) -> str:
    """The client address under the trust model (callbridge.client_address)."""
    return client_ip_of_scope(scope)
