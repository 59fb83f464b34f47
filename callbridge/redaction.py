"""Keep secrets out of what the server prints.

callbridge never logs a token on purpose (tests/test_security.py); this is the net under
everything else that reaches the console through logging (Django, daphne/Twisted,
aiortc, a traceback's message): tokens keep only their public prefix, webhook signing
secrets (`whsec_…`) are masked whole, and the configured secrets (SECRET_KEY, the TURN
secret, the metrics token, database and Redis passwords) are masked.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings

# `<kind>_<8-char lookup>` is public (shown in the admin); the rest is the secret.
_TOKEN = re.compile(r"\b(cb[ks]_[A-Za-z0-9]{8})[A-Za-z0-9_\-]+")
# Webhook signing secrets (calls.webhooks.signing): Standard Webhooks' prefix, then base64.
_WEBHOOK_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}")
MASK = "[redacted]"
_SHORTEST_SECRET = 6  # shorter values would mask ordinary words


def _password_of(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


@lru_cache(maxsize=1)
def _configured_secrets() -> tuple[str, ...]:
    database = settings.DATABASES["default"]
    values = {
        str(settings.SECRET_KEY),
        str(getattr(settings, "CALLBRIDGE_TURN_SECRET", "")),
        str(getattr(settings, "CALLBRIDGE_METRICS_TOKEN", "")),
        str(database.get("PASSWORD") or ""),
        _password_of(str(getattr(settings, "REDIS_URL", ""))),
    }
    return tuple(
        sorted((value for value in values if len(value) >= _SHORTEST_SECRET), key=len, reverse=True)
    )


def redact(text: str) -> str:
    text = _TOKEN.sub(r"\1…", text)
    text = _WEBHOOK_SECRET.sub("whsec_" + MASK, text)
    for secret in _configured_secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def path_only(path: str) -> str:
    """A request target without its query string (tokens travel in `?token=`)."""
    return path.split("?", 1)[0]


class RedactingFormatter(logging.Formatter):
    """The console formatter of every callbridge process (settings.LOGGING)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
