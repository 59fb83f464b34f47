"""WebSocket rate limits and caps (RATE_LIMITED), per serving process.

- per client IP, before authentication: handshakes, and every message a socket sends
  while it has not signed in (token guessing and anonymous floods);
- per socket and per principal (token, staff user), once signed in: messages;
- open sockets per client IP and per signed-in credential (`SocketSlots`), and a
  deadline for signing in.

Buckets and counts live in this process's memory (like the REST throttles' default
local-memory cache): N daphne processes allow N times the rate and the caps in total.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
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

# Close codes (4000-4999: the application's own): a handshake over a limit or a cap; a
# socket that did not sign in before its deadline.
CLOSE_RATE_LIMITED = 4429
CLOSE_UNAUTHORIZED = 4401

_limits: SignalingLimits | None = None


def limits() -> SignalingLimits:
    """This process's limiters (rebuilt when the settings change: tests override them)."""
    global _limits
    current = _limits
    if current is None or current.source != _configured_rates():
        current = _limits = SignalingLimits.from_settings()
    return current


def reset() -> None:
    """Forget every bucket and count (tests)."""
    global _limits
    _limits = None
    _open_sockets.clear()


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


def client_ip(scope: Mapping[str, Any]) -> str:
    """The client address under the trust model (callbridge.client_address)."""
    return client_ip_of_scope(scope)


# --- open sockets ---------------------------------------------------------------------------
_open_sockets: Counter[str] = Counter()  # "ip:…" / "credential:…" → sockets open here


@dataclass
class SocketSlots:
    """The places one socket holds in this process's counts; `release` frees them all."""

    held: list[str] = field(default_factory=list)

    def take_address(self, ip: str) -> CallbridgeError | None:
        """Count the socket against its client address; the error if that is full."""
        cap = settings.CALLBRIDGE_LIMIT_SOCKETS_PER_IP
        return self._take(f"ip:{ip}", cap, "socketsPerAddress", "from this address")

    def take_credential(self, principal_id: str) -> CallbridgeError | None:
        """Count the socket against the credential it signs in with (once)."""
        key = f"credential:{principal_id}"
        if key in self.held:
            return None
        cap = settings.CALLBRIDGE_LIMIT_SOCKETS_PER_CREDENTIAL
        return self._take(key, cap, "socketsPerCredential", "for this credential")

    def release(self) -> None:
        for key in self.held:
            _open_sockets[key] -= 1
            if _open_sockets[key] <= 0:
                del _open_sockets[key]
        self.held.clear()

    def _take(self, key: str, cap: int, limit: str, where: str) -> CallbridgeError | None:
        if _open_sockets[key] >= cap:
            return CallbridgeError(
                ErrorCode.RATE_LIMITED,
                f"Too many open sockets {where} (at most {cap})",
                details={"limit": limit, "max": cap},
            )
        _open_sockets[key] += 1
        self.held.append(key)
        return None


def sign_in_deadline_passed() -> CallbridgeError:
    seconds = settings.CALLBRIDGE_WS_SIGN_IN_DEADLINE_S
    return CallbridgeError(
        ErrorCode.UNAUTHORIZED,
        f"Auth token required: sign in (register or offer) within {seconds} s of connecting",
        details={"signInDeadline": seconds},
    )
