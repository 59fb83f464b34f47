"""Translate between JSON and records. Models decide; serializers only translate."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from calls.consent import consent_status
from calls.errors import ErrorCode
from calls.models import (
    Activity,
    Availability,
    Call,
    CallbackState,
    CallMode,
    CallNotes,
    CallState,
    ConsentMethod,
    Leg,
    Overflow,
    QueueStrategy,
    Recording,
    SupervisorMode,
)
from calls.routing import waiting
from calls.signaling.protocol import MAX_SDP_BYTES

METADATA_MAX_BYTES = 4096


class ErrorSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=[code.value for code in ErrorCode])
    message = serializers.CharField()
    recoverable = serializers.BooleanField()
    details = serializers.DictField(required=False)


class IceServerSerializer(serializers.Serializer):
    urls = serializers.ListField(child=serializers.CharField())
    username = serializers.CharField(required=False)
    credential = serializers.CharField(required=False)


class TurnStatusSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    status = serializers.CharField(required=False, help_text="'not_configured' when disabled")
    ttl = serializers.IntegerField(required=False, help_text="seconds the credentials last")
    expiresAt = serializers.DateTimeField(required=False)


class IceConfigSerializer(serializers.Serializer):
    iceServers = IceServerSerializer(many=True)
    turn = TurnStatusSerializer()


class SessionCreateSerializer(serializers.Serializer):
    displayName = serializers.CharField(max_length=100, required=False, allow_blank=True)
    metadata = serializers.JSONField(required=False, help_text="a JSON object, up to 4 KiB")
    ttl = serializers.IntegerField(
        required=False, min_value=60, help_text="seconds until the session token expires"
    )

    def validate_metadata(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        if len(json.dumps(value).encode()) > METADATA_MAX_BYTES:
            raise serializers.ValidationError(f"must be at most {METADATA_MAX_BYTES} bytes")
        return value

    def validate_ttl(self, value: int) -> int:
        if value > settings.CALLBRIDGE_SESSION_MAX_TTL_S:
            raise serializers.ValidationError(
                f"must be at most {settings.CALLBRIDGE_SESSION_MAX_TTL_S} seconds"
            )
        return value


class VoisnapSessionCreateSerializer(serializers.Serializer):
    agentId = serializers.CharField(
        max_length=100, help_text="a queue's public id, or `echo` for the echo agent"
    )
    metadata = serializers.JSONField(required=False, help_text="a JSON object, up to 4 KiB")

    validate_metadata = SessionCreateSerializer.validate_metadata


class VoisnapSessionCreatedSerializer(serializers.Serializer):
    sessionId = serializers.UUIDField()
    sessionToken = serializers.CharField(help_text="shown once; for the WebRtcHub connection")
    expiresAt = serializers.CharField(help_text="UTC, ISO 8601 with a Z")
    iceServers = IceServerSerializer(many=True)


class SessionCreatedSerializer(IceConfigSerializer):
    sessionId = serializers.UUIDField()
    sessionToken = serializers.CharField(help_text="shown once; the end user's bearer token")
    expiresAt = serializers.DateTimeField()
    url = serializers.URLField(help_text="opens the end-user page for this session")
    displayName = serializers.CharField()
    metadata = serializers.DictField()


class CallCreateSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=CallMode.choices, default=CallMode.BRIDGE)
    sessionId = serializers.UUIDField(
        required=False, help_text="operators: the end-user session to ring"
    )
    queue = serializers.SlugField(
        max_length=64,
        required=False,
        help_text="end users: the public id of the queue to call (default: the default queue)",
    )


class OfferSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["offer"], help_text="always 'offer'")
    sdp = serializers.CharField(
        max_length=MAX_SDP_BYTES, trim_whitespace=False, help_text="with all ICE candidates"
    )


class AnswerSerializer(serializers.Serializer):
    callID = serializers.UUIDField()
    type = serializers.ChoiceField(choices=["answer"])
    sdp = serializers.CharField()
    sessionId = serializers.UUIDField(help_text="the leg this media connection belongs to")


class ConsentRequestSerializer(serializers.Serializer):
    granted = serializers.BooleanField(help_text="true: I agree to be recorded; false: I withdraw")
    policy = serializers.CharField(max_length=32, help_text="the consent policy version shown")
    via = serializers.ChoiceField(
        choices=ConsentMethod.choices, default=ConsentMethod.API, help_text="where it was given"
    )


class SuperviseRequestSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(
        choices=SupervisorMode.choices,
        help_text="monitor: hear both parties; whisper: the operator hears you too; barge:"
        " everyone hears everyone",
    )


class ConsentStatusSerializer(serializers.Serializer):
    policy = serializers.ChoiceField(choices=["all", "user", "none"])
    version = serializers.CharField()
    # Declared fields leave the class (DRF's metaclass), so this does not shadow the bool
    # Field.required that the stubs see.
    required = serializers.ListField(child=serializers.CharField())  # type: ignore[assignment]
    missing = serializers.ListField(child=serializers.CharField(), help_text="roles not agreed")


class ConsentSerializer(serializers.Serializer):
    consentID = serializers.IntegerField(source="pk")
    callID = serializers.UUIDField(source="call_id")
    role = serializers.CharField()
    granted = serializers.BooleanField()
    policy = serializers.CharField(source="policy_version")
    method = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")


class ConsentAnswerSerializer(ConsentSerializer):
    consent = ConsentStatusSerializer(help_text="the call's consent status after this answer")


class TransferRequestSerializer(serializers.Serializer):
    to = serializers.JSONField(
        help_text='the target: {"operator": username} (a staff operator who is free now) or'
        ' {"queue": public id}'
    )


class PlayRequestSerializer(serializers.Serializer):
    file = serializers.CharField(max_length=100, help_text="a library file's name or id")
    to = serializers.ChoiceField(choices=["user", "operator", "both"], default="user")


class PlaybackSerializer(serializers.Serializer):
    playbackID = serializers.UUIDField()
    file = serializers.CharField()
    to = serializers.CharField()
    durationS = serializers.FloatField()


class RecordingSerializer(serializers.ModelSerializer):
    recordingID = serializers.UUIDField(source="id")
    callID = serializers.UUIDField(source="call_id")
    fileName = serializers.CharField(source="file_name")
    startedAt = serializers.DateTimeField(source="started_at")
    audioStartedAt = serializers.DateTimeField(
        source="audio_started_at",
        allow_null=True,
        help_text="wall-clock instant of the file's first sample (known once it stopped)",
    )
    endedAt = serializers.DateTimeField(source="ended_at", allow_null=True)
    durationS = serializers.FloatField(source="duration_s", allow_null=True)
    sizeBytes = serializers.IntegerField(source="size_bytes", allow_null=True)
    startedBy = serializers.CharField(source="started_by")
    stoppedBy = serializers.CharField(source="stopped_by")
    stopReason = serializers.CharField(source="stop_reason")
    consents: serializers.Field = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Recording
        fields = [
            "recordingID",
            "callID",
            "kind",
            "state",
            "fileName",
            "startedAt",
            "audioStartedAt",
            "endedAt",
            "durationS",
            "sizeBytes",
            "sha256",
            "startedBy",
            "stoppedBy",
            "stopReason",
            "consents",
        ]


class LegQualitySerializer(serializers.Serializer):
    """A leg's server-side call quality, stored when its media ended (docs/quality.md)."""

    samples = serializers.IntegerField(help_text="samples taken (one every few seconds)")
    mosMin = serializers.FloatField(help_text="the lowest sample's MOS (1-4.5)")
    mosAvg = serializers.FloatField(help_text="the samples' average MOS")
    lossPercent = serializers.FloatField(help_text="packets lost, average per sample, %")
    jitterMs = serializers.FloatField(help_text="interarrival jitter, average, ms")
    rttMs = serializers.FloatField(
        allow_null=True, help_text="RTCP round trip, average; null: never measured"
    )
    warnings = serializers.IntegerField(help_text="quality.warning events raised")


def leg_quality(leg: Leg) -> dict[str, Any] | None:
    if not leg.quality_samples:
        return None
    return {
        "samples": leg.quality_samples,
        "mosMin": leg.mos_min,
        "mosAvg": leg.mos_avg,
        "lossPercent": leg.loss_percent,
        "jitterMs": leg.jitter_ms,
        "rttMs": leg.rtt_ms,
        "warnings": leg.quality_warnings,
    }


class LegSerializer(serializers.ModelSerializer):
    legID = serializers.UUIDField(source="id", help_text="the leg's WebSocket sessionId")
    mediaState = serializers.CharField(source="media_state")
    createdAt = serializers.DateTimeField(source="created_at")
    mediaConnectedAt = serializers.DateTimeField(source="media_connected_at", allow_null=True)
    mediaEndedAt = serializers.DateTimeField(source="media_ended_at", allow_null=True)
    supervisorMode = serializers.CharField(
        source="supervisor_mode",
        help_text="a supervisor's mode now (monitor, whisper, barge); empty for other legs"
        " and a supervisor who left",
    )
    leftAt = serializers.DateTimeField(
        source="left_at",
        allow_null=True,
        help_text="the party left a call that went on (a transfer, a supervisor leaving);"
        " null: still on it",
    )
    quality = serializers.SerializerMethodField(
        help_text="server-side call quality once the leg's media ended; null: no samples"
    )

    class Meta:
        model = Leg
        fields = [
            "legID",
            "role",
            "party",
            "mediaState",
            "createdAt",
            "mediaConnectedAt",
            "mediaEndedAt",
            "supervisorMode",
            "leftAt",
            "quality",
        ]

    @extend_schema_field(LegQualitySerializer(allow_null=True))
    def get_quality(self, leg: Leg) -> dict[str, Any] | None:
        return leg_quality(leg)


class EndedBySerializer(serializers.Serializer):
    role = serializers.CharField()
    name = serializers.CharField()


@extend_schema_field({"type": "string", "nullable": True})
class CallNotesField(serializers.Field):
    """One attribute of the call's notes (`disposition`: its code; `notes`: the text).

    Not read-only on purpose: the schema then lists it as optional, which it is (end users
    never get it: CallSerializer.to_representation)."""

    def __init__(self, part: str, **kwargs: Any) -> None:
        self.part = part
        super().__init__(source="*", required=False, **kwargs)

    def to_representation(self, call: Call) -> str | None:
        current = CallNotes.of(call)
        if self.part == "disposition":
            return current.disposition.code if current and current.disposition else None
        return current.notes if current is not None else ""


class CallSerializer(serializers.ModelSerializer):
    callID = serializers.UUIDField(source="id")
    state = serializers.ChoiceField(choices=CallState.choices)
    sessionId = serializers.UUIDField(source="session_id", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    ringDeadline = serializers.DateTimeField(source="ring_deadline", allow_null=True)
    answeredAt = serializers.DateTimeField(source="answered_at", allow_null=True)
    endedAt = serializers.DateTimeField(source="ended_at", allow_null=True)
    endReason = serializers.SerializerMethodField()
    clientReason = serializers.SerializerMethodField(
        help_text="the reason the party who ended the call gave (Voisnap's EndSessionAsync),"
        " else null"
    )
    endedBy = serializers.SerializerMethodField()
    legs = LegSerializer(many=True, read_only=True)
    consent = serializers.SerializerMethodField()
    recording = serializers.SerializerMethodField()
    queue: serializers.Field = serializers.SlugRelatedField(
        slug_field="public_id",
        read_only=True,
        allow_null=True,
        help_text="the queue an end user's call waits in (null: outbound and echo calls)",
    )
    queuedAt = serializers.DateTimeField(source="queued_at", allow_null=True)
    heldAt = serializers.DateTimeField(
        source="held_at",
        allow_null=True,
        help_text="on hold since (POST /api/calls/{callID}/hold); null: not on hold",
    )
    queuePosition = serializers.SerializerMethodField(
        help_text="while the call waits in a queue other than the default: its place in "
        "line (1: next), as the caller's queue.waiting says; else null"
    )
    externalId = serializers.CharField(
        source="external_id",
        allow_null=True,
        help_text="the client's own id for the call (PolyAI's callSid on /api/v1/webrtc/signal)",
    )
    metadata = serializers.JSONField(
        help_text="what the client sent along (PolyAI: accountId, projectId, variantId, "
        "agentVersionOverride, mode)"
    )
    disposition = CallNotesField(
        "disposition",
        help_text="operators only: the disposition code the operator picked (null: none)",
    )
    notes = CallNotesField(
        "notes", help_text="operators only: the operator's notes (GET …/disposition: history)"
    )

    class Meta:
        model = Call
        fields = [
            "callID",
            "state",
            "mode",
            "direction",
            "sessionId",
            "createdAt",
            "ringDeadline",
            "answeredAt",
            "endedAt",
            "endReason",
            "clientReason",
            "endedBy",
            "legs",
            "consent",
            "recording",
            "queue",
            "queuedAt",
            "queuePosition",
            "externalId",
            "caller",
            "callee",
            "metadata",
            "disposition",
            "notes",
            "heldAt",
        ]

    def get_queuePosition(self, call: Call) -> int | None:
        return waiting.position_of(call)

    def get_endReason(self, call: Call) -> str | None:
        return call.end_reason or None

    def get_clientReason(self, call: Call) -> str | None:
        return call.client_reason or None

    @extend_schema_field(EndedBySerializer(allow_null=True))
    def get_endedBy(self, call: Call) -> dict[str, str] | None:
        if not call.ended_by:
            return None
        return {"role": call.ended_by_role, "name": call.ended_by}

    @extend_schema_field(ConsentStatusSerializer)
    def get_consent(self, call: Call) -> dict[str, Any]:
        status = consent_status(call)
        return {
            "policy": status.policy,
            "version": status.version,
            "required": status.required,
            "missing": status.missing,
        }

    @extend_schema_field(RecordingSerializer(allow_null=True))
    def get_recording(self, call: Call) -> dict[str, Any] | None:
        """The call's latest recording."""
        latest = call.latest_recording
        return RecordingSerializer(latest).data if latest else None

    def to_representation(self, call: Call) -> dict[str, Any]:
        data = super().to_representation(call)
        viewer = self.context.get("principal")
        if viewer is not None and viewer.is_operator:
            return data
        # What the operators wrote about the call is theirs (calls.notes).
        data.pop("disposition", None)
        data.pop("notes", None)
        # End users (and anyone unidentified) see display names, never staff usernames or
        # token names: those identify the operators' accounts, not the people.
        shown = {leg.party: leg_display_name(leg) for leg in call.legs.all()}

        def name_for(label: str) -> str:
            return shown.get(label) or public_name(label)

        for leg_data in data["legs"]:
            leg_data["party"] = name_for(leg_data["party"])
        if not settings.CALLBRIDGE_TELL_USER_SUPERVISOR:
            # Not told of supervisors (calls.supervision): not shown their legs either.
            data["legs"] = [leg for leg in data["legs"] if leg["role"] != "supervisor"]
        if data["endedBy"] is not None:
            data["endedBy"]["name"] = name_for(data["endedBy"]["name"])
        if data["recording"] is not None:
            for field in ("startedBy", "stoppedBy"):
                data["recording"][field] = name_for(data["recording"][field])
        return data


def public_name(label: str) -> str:
    """What an end user may see of a stored actor label (see Principal.label)."""
    if label.startswith("end user "):  # "end user Ada (1a2b3c4d)"
        return label.removeprefix("end user ").rsplit(" (", 1)[0]
    if label in ("", "system"):
        return label
    return "Operator"  # "operator <username>", "api token <name> (<prefix>)"


def leg_display_name(leg: Leg) -> str:
    full_name = leg.user.get_full_name().strip() if leg.user is not None else ""
    return full_name or public_name(leg.party)


# --- operators and queues ---------------------------------------------------------------------
class OperatorStatusSerializer(serializers.Serializer):
    operator = serializers.CharField(source="username", help_text="the staff username")
    displayName = serializers.CharField(source="name", help_text="full name ('' if none)")
    availability = serializers.ChoiceField(choices=Availability.choices)
    activity = serializers.ChoiceField(
        choices=Activity.choices, help_text="derived: a pending offer, a call, wrap-up, or idle"
    )
    availabilityChangedAt = serializers.DateTimeField(source="changed_at", allow_null=True)
    availabilityChangedBy = serializers.CharField(source="changed_by")
    lastCallEndedAt = serializers.DateTimeField(source="last_call_ended_at", allow_null=True)


class AvailabilitySerializer(serializers.Serializer):
    availability = serializers.ChoiceField(choices=Availability.choices)


class QueueSerializer(serializers.Serializer):
    queue = serializers.CharField(source="queue.public_id", help_text="the public id")
    name = serializers.CharField(source="queue.name")
    strategy = serializers.ChoiceField(source="queue.strategy", choices=QueueStrategy.choices)
    isDefault = serializers.BooleanField(source="queue.is_default")
    openAnswer = serializers.BooleanField(source="queue.open_answer")
    allOperators = serializers.BooleanField(source="queue.all_operators")
    ringTimeoutS = serializers.IntegerField(source="queue.ring_timeout_s")
    maxWaitS = serializers.IntegerField(source="queue.max_wait_s")
    wrapUpS = serializers.IntegerField(source="queue.wrap_up_s")
    overflow = serializers.ChoiceField(source="queue.overflow", choices=Overflow.choices)
    overflowQueue = serializers.CharField(
        source="queue.overflow_queue.public_id", allow_null=True, default=None
    )
    offerCallback = serializers.BooleanField(
        source="queue.offers_callbacks", help_text="waiting callers may ask for a callback"
    )
    voicemailGreeting = serializers.CharField(
        source="queue.voicemail_greeting.name",
        allow_null=True,
        default=None,
        help_text="the library file a caller offered voicemail hears once",
    )
    voicemailMaxS = serializers.IntegerField(
        source="queue.voicemail_max_s", help_text="the longest message (overflow voicemail)"
    )
    waiting = serializers.IntegerField(help_text="callers waiting now")
    longestWaitS = serializers.FloatField(
        source="longest_wait_s", allow_null=True, help_text="seconds the longest waiter has waited"
    )
    memberCount = serializers.IntegerField(source="member_count")


class QueueDetailSerializer(QueueSerializer):
    members = OperatorStatusSerializer(many=True, help_text="the queue's operators, with status")


class QueueStatsSerializer(serializers.Serializer):
    queue = serializers.CharField(source="queue.public_id", help_text="the public id")
    name = serializers.CharField(source="queue.name")
    since = serializers.DateTimeField(source="period.since")
    until = serializers.DateTimeField(source="period.until")
    waiting = serializers.IntegerField(help_text="callers waiting now")
    longestWaitS = serializers.FloatField(
        source="longest_wait_s", allow_null=True, help_text="now: the longest waiter's wait"
    )
    joined = serializers.IntegerField(help_text="calls that joined the queue in the period")
    answered = serializers.IntegerField()
    serviceLevelS = serializers.IntegerField(source="service_level_s")
    answeredWithinServiceLevel = serializers.IntegerField(source="answered_within_service_level")
    serviceLevelPct = serializers.FloatField(
        source="service_level_pct",
        allow_null=True,
        help_text="of answered calls, answered within serviceLevelS (null: none answered)",
    )
    abandoned = serializers.IntegerField(help_text="the caller hung up while waiting")
    missed = serializers.IntegerField(help_text="rang out or rejected, unanswered")
    refused = serializers.IntegerField(help_text="nobody took it within the maximum wait")
    callbacksRequested = serializers.IntegerField(
        source="callbacks_requested", help_text="the caller asked to be called back instead"
    )
    overflowed = serializers.IntegerField(help_text="moved on to the overflow queue")
    voicemails = serializers.IntegerField(help_text="the caller left a message (voicemail)")
    averageWaitS = serializers.FloatField(
        source="average_wait_s", allow_null=True, help_text="join → answer, answered calls"
    )
    averageHandleS = serializers.FloatField(
        source="average_handle_s", allow_null=True, help_text="answer → end, ended calls"
    )


class OperatorStatsSerializer(serializers.Serializer):
    operator = serializers.CharField(source="username", help_text="the staff username")
    displayName = serializers.CharField(source="name")
    answered = serializers.IntegerField(help_text="calls answered in the period")
    offersMissed = serializers.IntegerField(
        source="offers_missed", help_text="offers that rang out"
    )
    offersDeclined = serializers.IntegerField(
        source="offers_declined", help_text="offers the operator passed on (Decline)"
    )
    talkTimeS = serializers.FloatField(source="talk_time_s", help_text="answer → end, summed")


# --- callback requests ------------------------------------------------------------------------
class CallbackAskSerializer(serializers.Serializer):
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,  # calls.callbacks.clean_note: one rule with /ws/signal
        help_text="optional, for the operator (at most 500 characters of plain text)",
    )


class CallbackAskedSerializer(serializers.Serializer):
    callbackID = serializers.UUIDField()
    state = serializers.ChoiceField(choices=CallbackState.choices)
    callID = serializers.UUIDField(help_text="the call it came from (ended `callback_requested`)")
    note = serializers.CharField()
    requestedAt = serializers.DateTimeField()


class CallbackSerializer(CallbackAskedSerializer):
    """What operators see of a request (calls.signaling.payloads.callback_summary)."""

    queue = serializers.CharField(help_text="the queue's public id")
    queueName = serializers.CharField()
    sessionId = serializers.UUIDField(allow_null=True, help_text="the end user to call back")
    displayName = serializers.CharField()
    attempts = serializers.IntegerField(help_text="call backs placed so far")
    handledBy = serializers.CharField(help_text="who last called back or closed it")
    handledAt = serializers.DateTimeField(allow_null=True)
    callbackCallID = serializers.UUIDField(allow_null=True, help_text="the latest call back")
    online = serializers.BooleanField(help_text="the end user's page is open now")


class CallbackCloseSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=[CallbackState.DONE, CallbackState.CANCELLED])


class TimelineEventSerializer(serializers.Serializer):
    """One entry of `GET /api/calls/{id}/events` (the schema; the body is built by
    calls.timeline): the socket event's `data`, with its id and instant."""

    eventID = serializers.IntegerField()
    at = serializers.DateTimeField()
    name = serializers.CharField(help_text="the wire event name (see docs/signaling.md)")
    state = serializers.CharField(help_text="the call's state as of this event")
    mode = serializers.CharField()
    record = serializers.CharField(required=False, help_text="operators: the record's name")
    actor = serializers.CharField(required=False, help_text="operators: who did it")
    actorRole = serializers.CharField(required=False, help_text="operators: user/operator/system")
