from calls.models.activity import Activity, activities, activity_of
from calls.models.audio_file import AudioFile
from calls.models.audit_chain import AuditChainHead
from calls.models.branding import Branding
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
    SupervisorMode,
)
from calls.models.callback import CallbackRequest, CallbackState
from calls.models.consent import ConsentMethod, RecordingConsent
from calls.models.credentials import ApiToken, EndUserSession
from calls.models.media_worker import MediaWorkerStatus, WorkerState
from calls.models.notes import CallNotes, CallNotesRevision, DispositionCode
from calls.models.operator_status import (
    OPERATOR_PERMISSION,
    Availability,
    OperatorStatus,
    operator_users,
)
from calls.models.preflight import PreflightReport, PreflightVerdict
from calls.models.queue import (
    DEFAULT_QUEUE_PUBLIC_ID,
    OfferOutcome,
    Overflow,
    Queue,
    QueueOffer,
    QueueStrategy,
)
from calls.models.recording import (
    AccessAction,
    Recording,
    RecordingAccess,
    RecordingKind,
    RecordingState,
    StopReason,
)
from calls.models.transcript import Transcript, TranscriptState, Utterance
from calls.models.transfer import Transfer, TransferKind, TransferOutcome
from calls.models.webhook import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "DEFAULT_QUEUE_PUBLIC_ID",
    "OPERATOR_PERMISSION",
    "AccessAction",
    "Activity",
    "ApiToken",
    "AudioFile",
    "AuditChainHead",
    "Availability",
    "Branding",
    "Call",
    "CallDirection",
    "CallEvent",
    "CallMode",
    "CallNotes",
    "CallNotesRevision",
    "CallState",
    "CallbackRequest",
    "CallbackState",
    "ConsentMethod",
    "DeliveryState",
    "DispositionCode",
    "EndReason",
    "EndUserSession",
    "Leg",
    "LegRole",
    "MediaState",
    "MediaWorkerStatus",
    "OfferOutcome",
    "OperatorStatus",
    "Overflow",
    "PreflightReport",
    "PreflightVerdict",
    "Queue",
    "QueueOffer",
    "QueueStrategy",
    "Recording",
    "RecordingAccess",
    "RecordingConsent",
    "RecordingKind",
    "RecordingState",
    "StopReason",
    "SupervisorMode",
    "Transcript",
    "TranscriptState",
    "Transfer",
    "TransferKind",
    "TransferOutcome",
    "Utterance",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkerState",
    "activities",
    "activity_of",
    "operator_users",
]
