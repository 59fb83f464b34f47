"""Starting and stopping recordings (REST, WaGo's /call/record, consent withdrawal)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from calls import media_link, policy
from calls.consent import consent_status
from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.models import Call, Recording, RecordingState, StopReason
from calls.principals import Principal

# A name inside the recordings folder: no folders, no dots first, always .wav.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.wav$")


def recordings_dir() -> Path:
    return Path(settings.MEDIA_ROOT) / "recordings"


def start_recording(principal: Principal, call: Call, name: str | None = None) -> Recording:
    if not principal.is_operator:
        raise CallbridgeError(ErrorCode.FORBIDDEN, "Only operators and API tokens may record")
    policy.require_party(principal, call)
    status = consent_status(call)
    if status.missing:
        # The parties' pages ask for the missing consent when they see this.
        with transaction.atomic():
            call._record("consent.requested", principal, {"missing": status.missing})
        raise CallbridgeError(
            ErrorCode.CONSENT_REQUIRED,
            f"recording needs the consent of: {', '.join(status.missing)}",
            details={"missing": status.missing, "policy": status.version},
        )
    recording_id = uuid.uuid4()
    if name is None:
        name = f"{call.pk}-{str(recording_id)[:8]}.wav"
    elif not PLAIN_NAME.match(name) or ".." in name:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT,
            "Path must be a plain file name ending in .wav (no folders)",
        )
    if Recording.objects.filter(file_name=name).exists() or (recordings_dir() / name).exists():
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "a recording with that name exists")
    recording = Recording.begin(call, principal, status.relied_on, name, recording_id)
    try:
        async_to_sync(media_link.request)(
            call.media_worker,
            {
                "type": "media.record_start",
                "call": str(call.pk),
                "mode": call.mode,
                "recording": str(recording.pk),
                "path": str(recordings_dir() / name),
            },
        )
    except CallbridgeError:
        recording.finish(reason=StopReason.FAILED, by="system", result={})
        raise
    return recording


def stop_recording(call: Call, by: str, reason: str) -> Recording:
    running = call.recordings.filter(state=RecordingState.RECORDING).first()
    if running is None:
        raise CallStateError("the call is not being recorded")
    # The worker answers once the WAV is rendered: allow ~6 s per minute recorded.
    recorded_s = (timezone.now() - running.started_at).total_seconds()
    reply = async_to_sync(media_link.request)(
        call.media_worker,
        {
            "type": "media.record_stop",
            "call": str(call.pk),
            "recording": str(running.pk),
            "reason": reason,
            "by": by,
        },
        within=media_link.REPLY_TIMEOUT_S + recorded_s / 10,
    )
    running.finish(reason=reason, by=by, result=reply["result"])
    return running


def stop_if_recording(call: Call, by: str, reason: str) -> None:
    if call.recordings.filter(state=RecordingState.RECORDING).exists():
        stop_recording(call, by, reason)
