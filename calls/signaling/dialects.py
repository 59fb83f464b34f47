"""What one signaling path means by the same envelope: callbridge's /ws/signal or PolyAI's
gateway path /api/v1/webrtc/signal. The consumer is built with one of these; every
difference between the two lives here (pure: no Django, no aiortc).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from calls.errors import ErrorCode


@dataclass(frozen=True)
class Dialect:
    name: str
    # The client's `mode` → the call's mode; `default_mode` when the offer names none.
    modes: Mapping[str, str]
    default_mode: str
    # callbridge: an offer's `callSid` joins that existing call. PolyAI: the client makes
    # up a `callSid` for its new call, kept as the call's external id.
    call_sid_is_external: bool
    # callbridge: `close` closes the leg's media (the call stays, the party may reconnect).
    # PolyAI: `close` ends the session, i.e. the call.
    close_ends_call: bool
    # The error the caller also gets when nobody took its call (refused by its queue, or
    # rung out: calls.signaling.payloads.no_operator).
    no_operator_error: ErrorCode | None

    def call_mode(self, mode: str | None) -> str:
        """The call's mode for the client's `mode` (None: the default); ValueError if unknown."""
        chosen = self.default_mode if mode is None else mode
        if chosen not in self.modes:
            *others, last = self.modes
            raise ValueError(f"unknown mode {chosen!r} (use {', '.join(others)} or {last})")
        return self.modes[chosen]


CALLBRIDGE = Dialect(
    name="callbridge",
    modes=MappingProxyType({"bridge": "bridge", "echo": "echo"}),
    default_mode="bridge",
    call_sid_is_external=False,
    close_ends_call=False,
    no_operator_error=None,
)

# docs.poly.ai "WebRTC Gateway API" (seeds 003/004): both agent modes reach a person here.
POLYAI = Dialect(
    name="polyai",
    modes=MappingProxyType({"end-to-end": "bridge", "traditional": "bridge", "echo": "echo"}),
    default_mode="end-to-end",
    call_sid_is_external=True,
    close_ends_call=True,
    no_operator_error=ErrorCode.AGENT_FAILURE,
)
