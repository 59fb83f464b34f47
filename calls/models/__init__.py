from calls.models.call import (
    Call,
    CallDirection,
    CallEvent,
    CallMode,
    CallState,
    EndReason,
    Leg,
    LegRole,
    MediaState,
)
from calls.models.credentials import ApiToken, EndUserSession

__all__ = [
    "ApiToken",
    "Call",
    "CallDirection",
    "CallEvent",
    "CallMode",
    "CallState",
    "EndReason",
    "EndUserSession",
    "Leg",
    "LegRole",
    "MediaState",
]
