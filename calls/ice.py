"""ICE server configuration handed to clients, with coturn REST-API TURN credentials.

coturn `use-auth-secret`: username = "<expiry unix time>:<id>",
credential = base64(HMAC-SHA1(secret, username)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone


def turn_credentials(secret: str, ident: str, expires_at: datetime) -> tuple[str, str]:
    username = f"{int(expires_at.timestamp())}:{ident}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_configuration(ident: str, not_after: datetime | None = None) -> dict[str, Any]:
    """`{"iceServers": [...], "turn": {...}}` for one client.

    `ident` names the client in coturn's logs; `not_after` caps the credentials' life
    (an end-user session's TURN access ends with the session).
    """
    servers: list[dict[str, Any]] = []
    # The server's own STUN servers and the clients-only ones, in one entry, each once.
    stun = list(
        dict.fromkeys([*settings.CALLBRIDGE_STUN_URLS, *settings.CALLBRIDGE_CLIENT_STUN_URLS])
    )
    if stun:
        servers.append({"urls": stun})
    if not settings.CALLBRIDGE_TURN_SECRET:
        return {"iceServers": servers, "turn": {"enabled": False, "status": "not_configured"}}

    now = timezone.now()
    expires_at = now + timedelta(seconds=settings.CALLBRIDGE_TURN_TTL)
    if not_after is not None:
        expires_at = min(expires_at, not_after)
    username, credential = turn_credentials(settings.CALLBRIDGE_TURN_SECRET, ident, expires_at)
    servers.append(
        {
            "urls": list(settings.CALLBRIDGE_TURN_URLS),
            "username": username,
            "credential": credential,
        }
    )
    ttl = max(0, int((expires_at - now).total_seconds()))
    return {
        "iceServers": servers,
        "turn": {"enabled": True, "ttl": ttl, "expiresAt": expires_at.isoformat()},
    }
