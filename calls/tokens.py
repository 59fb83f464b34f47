"""Bearer tokens: generated, shown once, stored only as a SHA-256 hash.

Format: `<kind>_<lookup><secret>`. The 8-character lookup id is stored in clear (and shown
as the prefix) to find the row; the hash of the whole token is then compared in constant
time. Tokens carry 256 bits of randomness, so a fast hash is enough (no password KDF).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from typing import Literal

TokenKind = Literal["cbk", "cbs"]  # cbk: integrator API key, cbs: end-user session
LOOKUP_LENGTH = 8
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class IssuedToken:
    token: str  # the full secret: give it to the client, never store it
    prefix: str  # "<kind>_<lookup>": stored and shown, identifies the token
    digest: str  # SHA-256 hex of the full token: stored


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(kind: TokenKind) -> IssuedToken:
    lookup = "".join(secrets.choice(_ALPHABET) for _ in range(LOOKUP_LENGTH))
    token = f"{kind}_{lookup}{secrets.token_urlsafe(32)}"
    return IssuedToken(token=token, prefix=token_prefix(token) or "", digest=hash_token(token))


def token_kind(token: str) -> TokenKind | None:
    match token[:4]:
        case "cbk_":
            return "cbk"
        case "cbs_":
            return "cbs"
    return None


def token_prefix(token: str) -> str | None:
    """The stored lookup prefix of a well-formed token, else None."""
    if token_kind(token) is None or len(token) < 4 + LOOKUP_LENGTH + 16 or len(token) > 200:
        return None
    return token[: 4 + LOOKUP_LENGTH]


def digest_matches(token: str, stored_digest: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_digest)
