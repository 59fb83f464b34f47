"""Starting and stopping recordings (REST, WaGo's /call/record, consent withdrawal)."""

from __future__ import annotations

import os
import re
import uuid
from datetime import datetime
from pathlib import Path

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from calls import policy
from calls.consent import ConsentMissing, consents_relied_on
from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.models import (
    Call,
    Recording,
    RecordingConsent,
    RecordingState,
    StopReason,
)
from calls.principals import Principal
from calls.workers import link, protocol

# A name inside the recordings folder: no folders, no dots first, always .wav.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.wav$")
# WaGo's own recordings folder, relative to its working directory: `files/calls/x.wav`
# names `x.wav` in ours (WaGo's documented default is files/calls/{callID}.wav).
WAGO_FOLDER = "files/calls/"


def recordings_dir() -> Path:
    return Path(settings.MEDIA_ROOT) / "recordings"


def wago_file_name(path: str) -> str:
    """The file name a WaGo `Path` stands for: a plain .wav name, bare or in WaGo's
    `files/calls/` folder; INVALID_ARGUMENT for anything else (other folders, `..`,
    absolute or encoded paths) — the name is all that is ever kept."""
    name = path[len(WAGO_FOLDER) :] if path.startswith(WAGO_FOLDER) else path
    if not PLAIN_NAME.match(name) or ".." in name:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT,
            "Path must be a .wav file name, bare or in files/calls/ (no other folders)",
        )
    return name


def _on_disk(name: str) -> bool:
    # lexists: a symlink (even a dangling one) left in the folder counts as taken, so
    # nothing is ever written through it. Names in the database are the unique
    # constraint's to refuse (a purged recording keeps its name, without a file).
    return os.path.lexists(recordings_dir() / name) or os.path.lexists(
        recordings_dir() / f"{name}.capture"
    )


def default_file_name(call: Call, recording_id: uuid.UUID) -> str:
    """WaGo's default, `{callID}.wav`; a later recording of the same call gets a suffix.
    (Two first starts at once both pick the plain name: the call's lock lets one record
    and tells the other CALL_STATE, as for any second start.)"""
    name = f"{call.pk}.wav"
    if Recording.objects.filter(file_name=name).exists() or _on_disk(name):
        return f"{call.pk}-{str(recording_id)[:8]}.wav"
    return name


def start_recording(principal: Principal, call: Call, name: str | None = None) -> Recording:
    """Start recording `call` if, at this instant, the policy's consents are on file.

    `name`: a plain file name already checked (wago_file_name), or None for the default.
    The consent check and the recording's row are one step under the call's row lock, the
    lock every consent answer takes: a withdrawal either lands first (and this refuses) or
    after (and finds the recording to stop)."""
    policy.require_operator(principal, "record")
    policy.require_access(principal, call)
    recording_id = uuid.uuid4()
    if name is None:
        name = default_file_name(call, recording_id)
    elif not PLAIN_NAME.match(name) or ".." in name:
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "not a plain .wav file name")
    elif _on_disk(name):
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "a recording with that name exists")
    try:
        recording = Recording.begin(
            call, principal, name, recording_id, consents=consents_relied_on
        )
    except IntegrityError:
        # The name is a recording's already (kept after its file was purged, or taken a
        # moment ago by another call's start): the unique file name decides, once.
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, "a recording with that name exists"
        ) from None
    except ConsentMissing as refusal:
        # The parties' pages ask for the missing consents when they see this event.
        call.note_while_active("consent.requested", principal, {"missing": refusal.status.missing})
        raise CallbridgeError(
            ErrorCode.CONSENT_REQUIRED,
            f"recording needs the consent of: {', '.join(refusal.status.missing)}",
            details={"missing": refusal.status.missing, "policy": refusal.status.version},
        ) from None
    start_on_worker(call, recording)
    return recording


def start_on_worker(call: Call, recording: Recording) -> None:
    """Ask the call's media worker to start `recording` (its row already begun). Refused
    (the call ended, or a stop overtook this start), or no answer in time: make sure a
    start still on its way can never record (the worker remembers the stop and refuses
    the start), record the failure, and raise."""
    try:
        link.request_from_thread(
            call.media_worker,
            protocol.RecordStart(
                call=str(call.pk),
                mode=call.mode,
                recording=str(recording.pk),
                path=str(recordings_dir() / recording.file_name),
            ),
        )
    except CallbridgeError:
        async_to_sync(link.send)(
            call.media_worker,
            link.record_stop_message(call.pk, recording.pk, StopReason.FAILED, "system"),
        )
        recording.finish(reason=StopReason.FAILED, by="system", result={})
        raise


def stop_recording(call: Call, by: str, reason: str, cutoff: datetime | None = None) -> Recording:
    """Stop the running recording; with `cutoff`, the file keeps no audio after it."""
    running = call.recordings.filter(state=RecordingState.RECORDING).first()
    if running is None:
        raise CallStateError("the call is not being recorded")
    # The worker answers once the WAV is rendered: allow ~6 s per minute recorded, and a
    # minute for renders queued ahead of it (many recordings stopping at once).
    recorded_s = (timezone.now() - running.started_at).total_seconds()
    reply = link.request_from_thread(
        call.media_worker,
        link.record_stop_message(
            call.pk, running.pk, reason, by, cutoff.timestamp() if cutoff is not None else None
        ),
        within=link.REPLY_TIMEOUT_S + 60 + recorded_s / 10,
    )
    result = reply.result.as_dict() if reply.result is not None else {}
    running.finish(reason=reason, by=by, result=result)
    return running


def stop_if_recording(call: Call, by: str, reason: str, cutoff: datetime | None = None) -> None:
    if call.recordings.filter(state=RecordingState.RECORDING).exists():
        stop_recording(call, by, reason, cutoff)


def withdraw_consent_stops_recording(consent: RecordingConsent) -> None:
    """A withdrawal stops the call's running recording; the file keeps nothing recorded
    after the withdrawal's instant (the stop reaches the media worker a little later)."""
    if not consent.granted:
        stop_if_recording(
            consent.call, consent.party, StopReason.CONSENT_WITHDRAWN, cutoff=consent.created_at
        )
