"""Standard Webhooks signing (https://www.standardwebhooks.com/), event filters and the
addresses an endpoint may reach. Pure: no Django."""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 (the spec's prefix, not a secret)
_FILTER_ENTRY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?$|^\*$")


def new_secret() -> str:
    """24 random bytes, base64, with the spec's `whsec_` prefix."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`."""
    return Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body)


def headers(secret: str, message_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def parse_filter(text: str) -> list[str]:
    """Entries of an endpoint's event filter; ValueError names the first bad one."""
    entries = [entry.strip() for entry in re.split(r"[,\s]+", text) if entry.strip()]
    for entry in entries:
        if not _FILTER_ENTRY.match(entry):
            raise ValueError(f"{entry!r} is not an event name or prefix (like call.* )")
    return entries


def matches(entries: Iterable[str], event_name: str) -> bool:
    """Empty filter: everything; `call.*`: `call.` and below; otherwise the exact name."""
    entries = list(entries)
    if not entries:
        return True
    for entry in entries:
        if entry == "*" or entry == event_name:
            return True
        if entry.endswith(".*") and event_name.startswith(entry[:-1]):
            return True
    return False


def address_allowed(address: str, allow_private: bool) -> bool:
    """Only global unicast addresses, unless private ones are allowed by configuration."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_unspecified:
        return False
    return allow_private or ip.is_global
