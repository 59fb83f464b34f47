"""Opt-in timestamps of the stages a call set-up passes, for bench/setup_profile.py.

Off unless `CALLBRIDGE_SETUP_TRACE` names a file. Then every process (daphne, media
worker, the bench's generator) appends one JSON line per stage a leg passes —
`{"leg": id, "stage": name, "t": unix seconds}` — so a profile can follow one leg across
processes (one host: one clock). Lines are written with a single `write` on a file opened
for appending, which keeps lines from different processes whole. Off, `mark` costs one
global lookup: it sits on the set-up path, never on the per-packet path.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

ARRIVED = "callbridge.setup_trace.arrived"  # the ASGI scope key StampArrival sets

_fd: int | None = None
_opened_for: str | None = None


def _target() -> int | None:
    global _fd, _opened_for
    path = os.environ.get("CALLBRIDGE_SETUP_TRACE") or None
    if path != _opened_for:
        if _fd is not None:
            os.close(_fd)
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if path else None
        _opened_for = path
    return _fd


def enabled() -> bool:
    return _target() is not None


def mark(leg: object, stage: str, at: float | None = None, **extra: object) -> None:
    """`leg` passed `stage` now (or at unix time `at`, for a stage noticed later);
    `extra`: more fields for the line (the bench's generator notes the load)."""
    fd = _target()
    if fd is None:
        return
    entry = {"leg": str(leg), "stage": stage, "t": time.time() if at is None else at, **extra}
    line = json.dumps(entry)
    os.write(fd, (line + "\n").encode())


def arrival_of(request: object) -> float | None:
    """When a Django request reached the ASGI application (None: not traced, or not ASGI)."""
    scope = getattr(request, "scope", None)
    return scope.get(ARRIVED) if isinstance(scope, dict) else None


class StampArrival:
    """ASGI middleware (installed only while tracing): notes when each request arrived,
    before Django's middleware and thread hops, so the profile can tell them apart."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            scope = {**scope, ARRIVED: time.time()}
        await self.app(scope, receive, send)
