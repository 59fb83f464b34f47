"""Playing library files into calls (REST and WaGo's /call/play). Never a server path."""

from __future__ import annotations

import uuid
from typing import Any

from calls import policy
from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.models import AudioFile, Call, CallState
from calls.principals import Principal
from calls.workers import link, protocol

TARGETS = ("user", "operator", "both")


def library_file(reference: Any) -> AudioFile:
    """A library file by name or id; INVALID_ARGUMENT for anything else."""
    text = str(reference).strip()
    found = AudioFile.objects.filter(name=text).first()
    if found is None and text.isdigit():
        found = AudioFile.objects.filter(pk=int(text)).first()
    if found is None:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, f"no audio file {text[:100]!r} in the library"
        )
    return found


def play(principal: Principal, call: Call, reference: Any, to: str) -> dict[str, Any]:
    policy.require_operator(principal, "play files")
    policy.require_access(principal, call)
    if to not in TARGETS:
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "to must be user, operator or both")
    audio = library_file(reference)
    if call.state != CallState.ACTIVE:
        raise CallStateError(f"only an active call can play audio (it is {call.state})")
    playback_id = str(uuid.uuid4())
    reply = link.request_from_thread(
        call.media_worker,
        protocol.Play(call=str(call.pk), playback=playback_id, path=audio.file.path, to=to),
    )
    call.note_while_active(
        "playback.started", principal, {"file": audio.name, "to": to, "playbackID": playback_id}
    )
    return {
        "playbackID": playback_id,
        "file": audio.name,
        "to": to,
        "durationS": reply.duration_s,
    }


def stop(principal: Principal, call: Call) -> None:
    policy.require_operator(principal, "stop playback")
    policy.require_access(principal, call)
    if call.state != CallState.ACTIVE:
        raise CallStateError(f"only an active call plays audio (it is {call.state})")
    link.request_from_thread(call.media_worker, protocol.PlayStop(call=str(call.pk)))
    call.note_while_active("playback.stopped", principal, {})
