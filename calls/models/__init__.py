from calls.models.audio_file import AudioFile
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
from calls.models.consent import ConsentMethod, RecordingConsent
from calls.models.credentials import ApiToken, EndUserSession
from calls.models.media_worker import MediaWorkerStatus, WorkerState
from calls.models.recording import (
    AccessAction,
    Recording,
    RecordingAccess,
    RecordingState,
    StopReason,
)

__all__ = [
    "AccessAction",
    "ApiToken",
    "AudioFile",
    "Call",
    "CallDirection",
    "CallEvent",
    "CallMode",
    "CallState",
    "ConsentMethod",
    "EndReason",
    "EndUserSession",
    "Leg",
    "LegRole",
    "MediaState",
    "MediaWorkerStatus",
    "Recording",
    "RecordingAccess",
    "RecordingConsent",
    "RecordingState",
    "StopReason",
    "WorkerState",
]
