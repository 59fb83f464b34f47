"""The audit chain's hash format, version 1 (pure): a row's canonical bytes and its link.

Frozen: rows sealed years ago are verified with these exact bytes. A change (a field
joining the hash, another encoding) needs a new version, never an edit of this one."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

FORMAT_VERSION = 1
GENESIS = "0" * 64  # the previous hash of every chain's first row


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("audit timestamps must be aware")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool | dict | list):
        return value
    raise TypeError(f"no canonical form for {type(value).__name__}")


def canonical(chain: str, seq: int, fields: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON, keys sorted, no spaces: the chain (table), the row's place in it and its
    hashed fields by attribute name (`call_id`), timestamps as ISO 8601 UTC with
    microseconds, ids as strings (UUID) or integers."""
    document = {
        "v": FORMAT_VERSION,
        "chain": chain,
        "seq": seq,
        "fields": {name: _plain(value) for name, value in fields.items()},
    }
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def link(previous_hash: str, row: bytes) -> str:
    """SHA-256 (hex) of the previous row's hash, a newline and this row's canonical bytes."""
    return hashlib.sha256(previous_hash.encode("ascii") + b"\n" + row).hexdigest()
