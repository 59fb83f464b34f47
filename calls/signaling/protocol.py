"""The /ws/signal wire protocol (PolyAI's envelope): parsing, validation, messages.

Pure: no Django, no aiortc. Every problem with a client message is a CallbridgeError with
the contract's code; the consumer only authenticates, dispatches and replies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from calls.errors import CallbridgeError, ErrorCode
from calls.signaling.dialects import CALLBRIDGE, Dialect

# One limit for an SDP offer, wherever it comes in. The media peer counts UTF-8 bytes: the
# binding check, the strictest. The front doors (parse here, the REST OfferSerializer)
# count characters, never more than the bytes, to refuse the plainly too large up front.
MAX_SDP_BYTES = 32 * 1024
MAX_CANDIDATE_CHARS = 1024
MAX_ID_CHARS = 100
# PolyAI's `agentVersionOverride` {artifactVersion, lambdaDeploymentVersion}: kept, bounded.
MAX_OVERRIDE_KEYS = 8
# The PolyAI fields an offer may carry that callbridge only keeps (the call's metadata).
KEPT_IDS = ("accountId", "projectId", "variantId")


@dataclass(frozen=True)
class CallDetails:
    """What a gateway client says of its new call: its own id (`callSid`), the numbers,
    and the fields callbridge keeps without acting on them."""

    external_id: str | None = None
    caller: str = ""
    callee: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)  # plans stay hashable


@dataclass(frozen=True)
class Register:
    auth_token: str


@dataclass(frozen=True)
class Offer:
    auth_token: str
    sdp: str
    call_sid: str | None
    mode: str | None
    queue: str | None = None  # an end user's new call: the queue's public id
    details: CallDetails | None = None  # the gateway dialect's new call (call_sid is None)


@dataclass(frozen=True)
class IceCandidate:
    session_id: str
    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True)
class Close:
    session_id: str


@dataclass(frozen=True)
class Hangup:
    session_id: str | None
    call_sid: str | None


@dataclass(frozen=True)
class CallbackRequest:
    """The waiting caller asks to be called back (its call, or its one waiting call)."""

    auth_token: str | None
    session_id: str | None
    call_sid: str | None
    note: Any  # checked by calls.callbacks.clean_note (one rule for REST and WebSocket)


@dataclass(frozen=True)
class VoicemailStart:
    """The caller's "Leave a message" in the voicemail stage (it is the consent)."""

    session_id: str | None
    call_sid: str | None


@dataclass(frozen=True)
class VoicemailStop:
    """The caller's "Send": the message is kept, the call ends `voicemail`."""

    session_id: str | None
    call_sid: str | None


Message = (
    Register
    | Offer
    | IceCandidate
    | Close
    | Hangup
    | CallbackRequest
    | VoicemailStart
    | VoicemailStop
)


def _invalid(message: str) -> CallbridgeError:
    return CallbridgeError(ErrorCode.INVALID_MESSAGE, message)


def _bad_value(message: str) -> CallbridgeError:
    return CallbridgeError(ErrorCode.INVALID_ARGUMENT, message)


def _optional_str(envelope: dict[str, Any], key: str, limit: int = MAX_ID_CHARS) -> str | None:
    value = envelope.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _invalid(f"{key} must be a string")
    if len(value) > limit:
        raise _bad_value(f"{key} is too long")
    return value


def _required_str(envelope: dict[str, Any], key: str) -> str:
    value = _optional_str(envelope, key)
    if value is None:
        raise _invalid(f"{key} is required")
    return value


def _auth_token(envelope: dict[str, Any]) -> str:
    token = envelope.get("authToken")
    if token is None or token == "":
        raise CallbridgeError(ErrorCode.UNAUTHORIZED, "Auth token required")
    if not isinstance(token, str) or len(token) > 256:
        raise CallbridgeError(ErrorCode.UNAUTHORIZED, "Invalid authentication token")
    return token


def _data(envelope: dict[str, Any]) -> dict[str, Any]:
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise _invalid("data must be an object")
    return data


def _offer(envelope: dict[str, Any], dialect: Dialect) -> Offer:
    token = _auth_token(envelope)
    data = _data(envelope)
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise _invalid("data.sdp is required")
    if data.get("type", "offer") != "offer":
        raise _bad_value("data.type must be 'offer'")
    if len(sdp) > MAX_SDP_BYTES:
        raise _bad_value("data.sdp is too large")
    if not sdp.startswith("v=0"):
        raise _bad_value("data.sdp is not an SDP offer")
    asked = _optional_str(envelope, "mode")
    try:
        mode = dialect.call_mode(asked)
    except ValueError as unknown:
        raise _bad_value(str(unknown)) from None
    call_sid = _optional_str(envelope, "callSid")
    if dialect.call_sid_is_external:
        details = _call_details(envelope, call_sid, asked or dialect.default_mode)
        return Offer(token, sdp, None, mode, details=details)
    return Offer(token, sdp, call_sid, mode, _optional_str(envelope, "queue"))


def _call_details(envelope: dict[str, Any], call_sid: str | None, mode: str) -> CallDetails:
    metadata: dict[str, Any] = {"mode": mode}  # the client's word: both agent modes bridge
    for key in KEPT_IDS:
        if (value := _optional_str(envelope, key)) is not None:
            metadata[key] = value
    override = envelope.get("agentVersionOverride")
    if override is not None:
        if not isinstance(override, dict) or len(override) > MAX_OVERRIDE_KEYS:
            raise _bad_value("agentVersionOverride must be a small object")
        for key, value in override.items():
            if len(key) > MAX_ID_CHARS or not isinstance(value, str | int | float | None):
                raise _bad_value("agentVersionOverride holds short names and plain values")
            if isinstance(value, str) and len(value) > MAX_ID_CHARS:
                raise _bad_value(f"agentVersionOverride.{key[:40]} is too long")
        metadata["agentVersionOverride"] = override
    return CallDetails(
        external_id=call_sid,
        caller=_optional_str(envelope, "caller") or "",
        callee=_optional_str(envelope, "callee") or "",
        metadata=metadata,
    )


def _ice_candidate(envelope: dict[str, Any]) -> IceCandidate:
    session_id = _required_str(envelope, "sessionId")
    data = _data(envelope)
    candidate = data.get("candidate")
    if not isinstance(candidate, str):
        raise _invalid("data.candidate is required ('' for end of candidates)")
    if len(candidate) > MAX_CANDIDATE_CHARS:
        raise _bad_value("data.candidate is too long")
    mid = data.get("sdpMid")
    if mid is not None and (not isinstance(mid, str) or len(mid) > 32):
        raise _bad_value("data.sdpMid must be a short string")
    index = data.get("sdpMLineIndex")
    if index is not None and (
        isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 64
    ):
        raise _bad_value("data.sdpMLineIndex must be a small integer")
    return IceCandidate(session_id, candidate, mid, index)


def _hangup(envelope: dict[str, Any]) -> Hangup:
    session_id = _optional_str(envelope, "sessionId")
    call_sid = _optional_str(envelope, "callSid")
    if session_id is None and call_sid is None:
        raise _invalid("hangup needs sessionId or callSid")
    return Hangup(session_id, call_sid)


def _callback_request(envelope: dict[str, Any]) -> CallbackRequest:
    token = envelope.get("authToken")
    return CallbackRequest(
        _auth_token(envelope) if token not in (None, "") else None,
        _optional_str(envelope, "sessionId"),
        _optional_str(envelope, "callSid"),
        envelope.get("note"),
    )


def _call_ref(envelope: dict[str, Any], what: str) -> tuple[str | None, str | None]:
    session_id = _optional_str(envelope, "sessionId")
    call_sid = _optional_str(envelope, "callSid")
    if session_id is None and call_sid is None:
        raise _invalid(f"{what} needs sessionId or callSid")
    return session_id, call_sid


_PARSERS: dict[str, Callable[[dict[str, Any], Dialect], Message]] = {
    "register": lambda e, _: Register(_auth_token(e)),
    "offer": _offer,
    "ice-candidate": lambda e, _: _ice_candidate(e),
    "close": lambda e, _: Close(_required_str(e, "sessionId")),
    "hangup": lambda e, _: _hangup(e),
    "callback.request": lambda e, _: _callback_request(e),
    "voicemail.start": lambda e, _: VoicemailStart(*_call_ref(e, "voicemail.start")),
    "voicemail.stop": lambda e, _: VoicemailStop(*_call_ref(e, "voicemail.stop")),
}


def parse(text: str | None, max_bytes: int, dialect: Dialect = CALLBRIDGE) -> Message:
    """One client message, validated; CallbridgeError with the contract's code if not.
    `dialect`: what the path's offers mean (modes, callSid)."""
    if text is None:
        raise _invalid("send JSON text frames, not binary")
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise _invalid(f"message too large (limit {max_bytes} bytes)")
    try:
        envelope = json.loads(text)
    except (ValueError, RecursionError):
        raise _invalid("message is not JSON") from None
    if not isinstance(envelope, dict):
        raise _invalid("message must be a JSON object")
    return parse_envelope(envelope, dialect)


def parse_envelope(envelope: dict[str, Any], dialect: Dialect = CALLBRIDGE) -> Message:
    """One client message from its decoded envelope (what `parse` checks after the JSON;
    other dialects' translators build the envelope and share every check)."""
    kind = envelope.get("type")
    if not isinstance(kind, str):
        raise _invalid("type is required")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise _invalid(f"unknown message type {kind[:40]!r}")
    session_id = envelope.get("sessionId", "")
    if session_id is not None and not isinstance(session_id, str):
        raise _invalid("sessionId must be a string")
    return parser(envelope, dialect)


def session_id_of(text: str | None) -> str:
    """Best-effort sessionId of a (possibly invalid) message, to address an error reply."""
    try:
        envelope = json.loads(text or "")
    except (ValueError, RecursionError):
        return ""
    value = envelope.get("sessionId") if isinstance(envelope, dict) else None
    return value if isinstance(value, str) and len(value) <= MAX_ID_CHARS else ""


# --- server → client ---------------------------------------------------------------------
def answer(session_id: str, call_sid: str, sdp: str) -> dict[str, Any]:
    return {
        "type": "answer",
        "sessionId": session_id,
        "callSid": call_sid,
        "data": {"type": "answer", "sdp": sdp},
    }


def event(session_id: str, call_sid: str, name: str, **data: Any) -> dict[str, Any]:
    return {
        "type": "event",
        "sessionId": session_id,
        "callSid": call_sid,
        "data": {"name": name, **data},
    }


def error(session_id: str, failure: CallbridgeError, call_sid: str = "") -> dict[str, Any]:
    message: dict[str, Any] = {"type": "error", "sessionId": session_id, "data": failure.as_body()}
    if call_sid:
        message["callSid"] = call_sid
    return message


# --- call records → wire events ------------------------------------------------------------
SUPERVISOR_EVENTS = frozenset({"supervisor.joined", "supervisor.mode_changed", "supervisor.left"})
# A leg's server-side quality (calls/media/quality.py): told to that leg's party only.
QUALITY_EVENTS = frozenset({"quality.warning", "quality.cleared"})
QUALITY_KEYS = ("metric", "value", "r", "lossPercent", "jitterMs", "rttMs")
# An attended transfer's steps: the operators' business (the caller is told the hold only).
CONSULT_EVENTS = frozenset(
    {
        "call.consult_started",
        "call.consult_answered",
        "call.consult_completed",
        "call.consult_cancelled",
    }
)
PASSED_THROUGH = frozenset(
    {
        "call.answered",
        "call.ended",
        "call.held",
        "call.resumed",
        # A transfer: the caller's page says "Transferring you…" until it is taken.
        "call.transfer_started",
        "call.transfer_completed",
        "call.transfer_failed",
        "recording.started",
        "recording.stopped",
        "consent.requested",
        "consent.granted",
        "consent.withdrawn",
        "voicemail.left",
    }
)
MEDIA_EVENTS = {
    "media.connected": "media.connected",
    "media.disconnected": "media.disconnected",
    "media.closed": "media.disconnected",
    "media.failed": "media.disconnected",
}


def wire_event_name(
    record_name: str, data: dict[str, Any], caller_role: str, my_role: str
) -> str | None:
    """The contract's event name for a recorded call event, seen from `my_role`; None: skip."""
    if record_name == "queue.voicemail_offered":
        return "queue.voicemail" if my_role == caller_role else None  # the caller's choice
    if record_name == "call.created":
        if data.get("state") != "ringing":
            return None  # echo calls start answered: the offer's answer says it all
        return "call.ringing" if my_role == caller_role else "call.incoming"
    if record_name in PASSED_THROUGH:
        return record_name
    if record_name == "callback.requested":
        return record_name if my_role == caller_role else None  # the caller's confirmation
    if data.get("role") in ("supervisor", "consult") and my_role == "user":
        return None  # a supervisor's (or consulted operator's) media: the operators' business
    if record_name in QUALITY_EVENTS:
        return record_name  # whose leg it is: payloads.party_event
    if record_name in CONSULT_EVENTS:
        return record_name if my_role != "user" else None
    if record_name in SUPERVISOR_EVENTS:
        # The end user only if the deployment tells them (recorded with the event).
        return record_name if my_role != "user" or data.get("userTold") else None
    return MEDIA_EVENTS.get(record_name)
