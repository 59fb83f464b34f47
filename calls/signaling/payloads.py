"""What the sockets receive of calls and end-user sessions: one place shapes it.

calls.events turns the records into the frozen snapshots below, once per change, and sends
them through the channel layer (`to_message` / `call_event_from_message`: plain dicts,
which is all a Redis channel layer carries). Each socket then shapes what it may see:
- `party_event`, `leg_failure`, `registered`, `queue_waiting_event`: /ws/signal (end
  users and API tokens);
- `feed_event`, `feed_snapshot`: /ws/operator, the staff dashboard;
- `presence_event`: both (operators only);
- `operator_status_event`, `parse_status_request`: /ws/operator's operator statuses;
  `operator_request_type`, `parse_call_verb`: its in-call controls (hold, resume,
  transfer {to}).
Both views carry the same event details (`_details`). Only the feed also gets the record's
name and the whole call (`record`, `call`), because `call.operator` names the operator's
account (staff username, API token label) and /ws/signal serves end users, who see display
names, never those accounts (the REST API's rule: CallSerializer.to_representation,
`public_name`). An API token's /ws/signal socket gets the party view too: one shape per
socket. Pure: no Django, no aiortc.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from calls.errors import CallbridgeError, ErrorCode
from calls.signaling import protocol

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class LegSnapshot:
    leg_id: str
    role: str
    media_state: str


@dataclass(frozen=True)
class RecordingSnapshot:
    recording_id: str
    state: str
    stop_reason: str


@dataclass(frozen=True)
class OfferSnapshot:
    """A pending offer of a call: whom it rings and until when."""

    operator: str  # the staff username
    deadline: str


@dataclass(frozen=True)
class CallSnapshot:
    call_id: str
    state: str
    mode: str
    direction: str
    caller_role: str
    session_id: str | None
    display_name: str
    operator: str  # the operator's account (username or token label): operators only
    created_at: str  # ISO 8601, as every time below
    answered_at: str | None
    ended_at: str | None
    end_reason: str | None
    ring_deadline: str | None
    legs: tuple[LegSnapshot, ...]
    consent_missing: tuple[str, ...]
    recording: RecordingSnapshot | None
    # The queue an inbound bridge call waits in, and who may answer it: anyone
    # (`open_answer`, the default queue) or the operators its pending offers ring.
    queue: str | None = None  # the queue's public id
    queue_name: str = ""
    queued_at: str | None = None
    open_answer: bool = True
    offers: tuple[OfferSnapshot, ...] = ()
    # What a gateway client said of its call (PolyAI's callSid, caller, callee); "" if not.
    external_id: str = ""
    caller: str = ""
    callee: str = ""
    # The disposition code the operator picked (operators only; the notes' text never
    # travels on the sockets: GET /api/calls/{id}/disposition).
    disposition: str | None = None
    # On hold since (None: not held), and by whom (the operator's account: operators only).
    held_at: str | None = None
    held_by: str = ""
    # Ringing again after a transfer, to whom ("operator bob", "queue sales"): operators only.
    transferring: str | None = None
    # A supervisor on the call now: its mode (None: nobody) and its account (operators only).
    supervisor_mode: str | None = None
    supervised_by: str = ""
    # An attended transfer's consult under way (operators only): the consulted operator's
    # account, whether they answered, and who consults them (the call's operator).
    consulting: str | None = None
    consult_answered: bool = False
    consult_by: str = ""


@dataclass(frozen=True)
class SessionSnapshot:
    session_id: str
    display_name: str
    online: bool
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class CallEventSnapshot:
    """One recorded call event (a CallEvent row) and the call as it was once committed."""

    event_id: int
    name: str  # the record's name (`call.created`, `media.closed`, …), not the wire name
    data: Mapping[str, Any]
    call: CallSnapshot


@dataclass(frozen=True)
class OperatorStatusSnapshot:
    """One staff operator's availability (theirs to set) and activity (derived)."""

    operator: str  # the staff username: what the feed's `call.operator` names too
    name: str  # their full name ("" if none)
    availability: str
    activity: str
    changed_at: str | None


@dataclass(frozen=True)
class QueueSnapshot:
    public_id: str
    name: str
    strategy: str
    waiting: int
    longest_wait_s: float | None
    members: tuple[str, ...] = ()  # the usernames of the operators who answer it


@dataclass(frozen=True)
class CallbackSnapshot:
    """A callback request (calls.callbacks): operators only (it names who handled it)."""

    callback_id: str
    state: str
    call_id: str  # the call it came from
    queue: str
    queue_name: str
    session_id: str | None
    display_name: str
    note: str
    requested_at: str
    attempts: int
    handled_by: str  # the staff username (or a token's label) who last handled it
    handled_at: str | None
    callback_call_id: str | None  # the latest call back
    online: bool  # the end user's page is open now (when read)


@dataclass(frozen=True)
class ResumableCall:
    """An open call a (re)registering socket may resume: its leg in it, if any."""

    call_id: str
    state: str
    mode: str
    direction: str
    leg_id: str  # "" when the registering party has no leg in it yet
    media_state: str | None
    held: bool = False  # on hold: the end-user page says so after a reload
    # A supervisor's mode now (None: none, or an end user who is not told of supervisors).
    supervisor_mode: str | None = None


# --- through the channel layer ---------------------------------------------------------------
def to_message(
    snapshot: CallEventSnapshot | SessionSnapshot | OperatorStatusSnapshot,
) -> JsonObject:
    """The snapshot as plain JSON-like values (tuples become lists on a Redis layer)."""
    return asdict(snapshot)


def call_event_from_message(message: Mapping[str, Any]) -> CallEventSnapshot:
    call = message["call"]
    recording = call["recording"]
    return CallEventSnapshot(
        event_id=message["event_id"],
        name=message["name"],
        data=message["data"],
        call=CallSnapshot(
            **{
                **call,
                "legs": tuple(LegSnapshot(**leg) for leg in call["legs"]),
                "consent_missing": tuple(call["consent_missing"]),
                "recording": RecordingSnapshot(**recording) if recording else None,
                "offers": tuple(OfferSnapshot(**offer) for offer in call.get("offers", ())),
            }
        ),
    )


def session_from_message(message: Mapping[str, Any]) -> SessionSnapshot:
    return SessionSnapshot(**message)


def operator_status_from_message(message: Mapping[str, Any]) -> OperatorStatusSnapshot:
    return OperatorStatusSnapshot(**message)


# --- call events -----------------------------------------------------------------------------
def _details(wire_name: str, data: Mapping[str, Any], call: CallSnapshot) -> JsonObject:
    """What both views say about an event besides its name."""
    details: JsonObject = {"state": call.state, "mode": call.mode}
    if wire_name in ("call.ended", "recording.stopped"):
        details["reason"] = data.get("reason")
    if wire_name == "call.ended" and data.get("clientReason"):
        details["clientReason"] = data["clientReason"]  # what the party said (Voisnap)
    if wire_name.startswith("consent."):
        details.update({key: data[key] for key in ("missing", "role") if key in data})
    if wire_name.startswith("recording."):
        details["recordingID"] = data.get("recordingID")
        if "consents" in data:
            details["consents"] = data["consents"]
    if wire_name == "queue.voicemail":
        details.update({key: data[key] for key in VOICEMAIL_STAGE_KEYS if key in data})
    if wire_name == "voicemail.left" or (
        wire_name == "recording.started" and data.get("kind") == "voicemail"
    ):
        details.update({key: data[key] for key in VOICEMAIL_KEYS if key in data})
    if wire_name.startswith("media."):
        details.update(legID=data.get("legID"), role=data.get("role"), media=data.get("state"))
    if wire_name in protocol.QUALITY_EVENTS:
        details.update(legID=data.get("legID"), role=data.get("role"))
        details.update({key: data[key] for key in protocol.QUALITY_KEYS if key in data})
    if wire_name.startswith("callback.") and isinstance(data.get("callback"), Mapping):
        details["callbackID"] = data["callback"].get("callbackID")
    if wire_name in TRANSFER_EVENTS:
        details.update({key: data[key] for key in ("transferID", "outcome") if key in data})
    if wire_name in protocol.CONSULT_EVENTS:
        consult_keys = ("transferID", "outcome", "reason")
        details.update({key: data[key] for key in consult_keys if key in data})
    if wire_name in protocol.SUPERVISOR_EVENTS:
        details["supervisorMode"] = data.get("mode")  # what the supervisor does now (left: did)
    if wire_name == "transcript.ready":  # operators only: parties are never told of it
        details.update({key: data[key] for key in ("recordingID", "utterances") if key in data})
    if wire_name in HOLD_EVENTS:
        details["held"] = wire_name == "call.held"
        if "heldS" in data:
            details["heldS"] = data["heldS"]
    return details


# The voicemail stage (calls.voicemail): what the caller needs to choose, and the message.
VOICEMAIL_STAGE_KEYS = (
    "queue",
    "queueName",
    "consentText",
    "policyVersion",
    "maxS",
    "choiceDeadline",
    "callback",
)
VOICEMAIL_KEYS = ("kind", "maxS", "deadline", "recordingId", "durationS")


HOLD_EVENTS = ("call.held", "call.resumed")
TRANSFER_EVENTS = ("call.transfer_started", "call.transfer_completed", "call.transfer_failed")
# What the feed adds of a transfer (operators only: it names operators' accounts).
TRANSFER_KEYS = ("kind", "toOperator", "toQueue", "party")
# An attended transfer's steps (calls/models/consult.py): the feed names the operators;
# /ws/signal's operator party gets transferID / outcome / reason, its end user nothing
# (they hear the hold, and are told `call.held` / `call.resumed`).
CONSULT_EVENTS = protocol.CONSULT_EVENTS
CONSULT_KEYS = ("transferID", "kind", "outcome", "reason", "toOperator", "toQueue", "party")


def party_event(event: CallEventSnapshot, viewer_role: str, my_leg: str) -> JsonObject | None:
    """/ws/signal: the event as the party in `viewer_role` (its leg `my_leg`, or "") sees
    it; None when that party is not told (see protocol.wire_event_name)."""
    call = event.call
    name = protocol.wire_event_name(event.name, dict(event.data), call.caller_role, viewer_role)
    if name is None:
        return None
    if name in protocol.QUALITY_EVENTS and (not my_leg or event.data.get("legID") != my_leg):
        return None  # another party's network is not this party's business
    return protocol.event(my_leg, call.call_id, name, **_details(name, event.data, call))


def leg_failure(event: CallEventSnapshot, my_leg: str) -> JsonObject | None:
    """The error the owner of a leg whose media failed gets, besides the event."""
    if event.name != "media.failed" or event.data.get("legID") != my_leg:
        return None
    failure = CallbridgeError(
        ErrorCode.MEDIA_BRIDGE_FAILURE, "the media connection could not be established"
    )
    return protocol.error(my_leg, failure, call_sid=event.call.call_id)


# Why a ringing call ended without anyone taking it: its queue's overflow refused it, or
# (default queue, open-answer queues) its ring timeout passed.
NOBODY_TOOK_IT = {
    "no_operator": "no operator could take the call",
    "missed": "no operator answered the call in time",
}


def no_operator(event: CallEventSnapshot, my_leg: str, code: ErrorCode) -> JsonObject | None:
    """The error the caller gets (besides `call.ended`) when nobody took its call: PolyAI's
    clients know this as AGENT_FAILURE. None for anyone else, or any other end."""
    message = NOBODY_TOOK_IT.get(str(event.data.get("reason")))
    if event.name != "call.ended" or message is None:
        return None
    mine = next((leg for leg in event.call.legs if leg.leg_id == my_leg), None)
    if mine is None or mine.role != event.call.caller_role:
        return None
    failure = CallbridgeError(code, message, recoverable=True)
    return protocol.error(my_leg, failure, call_sid=event.call.call_id)


def feed_event(event: CallEventSnapshot) -> JsonObject:
    """/ws/operator: every record, under its wire name as an operator would be told (else
    its record name), with the record name and the whole call."""
    call = event.call
    data = dict(event.data)
    name = protocol.wire_event_name(event.name, data, call.caller_role, "operator") or event.name
    name = FEED_NAMES.get(name, name)
    # The feed always passed these three on, whatever the event.
    passed_on: JsonObject = {key: data[key] for key in ("reason", "legID", "role") if key in data}
    details: JsonObject = {
        **passed_on,
        **_details(name, data, call),
        **queue_details(data),
        **notes_details(name, data),
    }
    if name in TRANSFER_EVENTS:
        details.update({key: data[key] for key in TRANSFER_KEYS if key in data})
    if name in CONSULT_EVENTS:
        details.update({key: data[key] for key in CONSULT_KEYS if key in data})
    if "callback" in data:  # the request as it is now (callback.* records)
        details["callback"] = data["callback"]
    return protocol.event(
        "", call.call_id, name, record=event.name, call=call_summary(call), **details
    )


# The feed names one thing once: an offer that rang out is an offer that ended, `missed`.
FEED_NAMES = {"queue.offer_missed": "queue.offer_ended"}
QUEUE_KEYS = ("queue", "operator", "deadline", "outcome", "from", "to", "waitedS")


def queue_details(data: Mapping[str, Any]) -> JsonObject:
    """What the feed says of routing records (`queue.offered {operator, deadline}`,
    `queue.offer_ended {operator, outcome}`, `queue.overflowed {from, to}`): operators
    only, as they name operators' accounts."""
    return {key: data[key] for key in QUEUE_KEYS if key in data}


NOTES_KEYS = ("disposition", "previous", "revision", "length")


def notes_details(name: str, data: Mapping[str, Any]) -> JsonObject:
    """What the feed says of `call.disposition_set {disposition, previous, revision}` and
    `call.notes_updated {revision, length}`: never the text (operators only; /ws/signal
    has no name for either, so end users are not told)."""
    if name not in ("call.disposition_set", "call.notes_updated"):
        return {}
    return {key: data[key] for key in NOTES_KEYS if key in data}


def call_summary(call: CallSnapshot) -> JsonObject:
    """The whole call as the dashboard draws it (operators only: see the module's note)."""
    recording = call.recording
    return {
        "callID": call.call_id,
        "state": call.state,
        "mode": call.mode,
        "direction": call.direction,
        "sessionId": call.session_id,
        "displayName": call.display_name,
        "operator": call.operator,
        "createdAt": call.created_at,
        "answeredAt": call.answered_at,
        "endedAt": call.ended_at,
        "endReason": call.end_reason,
        "ringDeadline": call.ring_deadline,
        "legs": [
            {"legID": leg.leg_id, "role": leg.role, "mediaState": leg.media_state}
            for leg in call.legs
            if leg.role != "supervisor" or leg.media_state not in ("closed", "failed")
        ],
        "consentMissing": list(call.consent_missing),
        "recording": None
        if recording is None
        else {
            "recordingID": recording.recording_id,
            "state": recording.state,
            "stopReason": recording.stop_reason,
        },
        "queue": call.queue,
        "queueName": call.queue_name,
        "queuedAt": call.queued_at,
        "openAnswer": call.open_answer,
        "offers": [{"operator": o.operator, "deadline": o.deadline} for o in call.offers],
        "externalId": call.external_id,
        "caller": call.caller,
        "callee": call.callee,
        "disposition": call.disposition,
        "heldAt": call.held_at,
        "heldBy": call.held_by or None,
        "transferring": call.transferring,
        "supervisorMode": call.supervisor_mode,
        "supervisedBy": call.supervised_by or None,
        "consult": None
        if call.consulting is None
        else {
            "operator": call.consulting,
            "answered": call.consult_answered,
            "by": call.consult_by,
        },
    }


def feed_snapshot(
    open_calls: Sequence[CallSnapshot],
    recent: Sequence[CallSnapshot],
    online: Sequence[SessionSnapshot],
    operators: Sequence[OperatorStatusSnapshot] = (),
    queues: Sequence[QueueSnapshot] = (),
    callbacks: Sequence[CallbackSnapshot] = (),
    missed: Sequence[CallSnapshot] = (),
) -> JsonObject:
    """The feed's first message: open calls, the last ended ones, end users online, every
    operator's status, the queues' waiting callers, the pending callback requests and
    today's missed calls."""
    return {
        "type": "snapshot",
        "data": {
            "calls": [call_summary(call) for call in open_calls],
            "recent": [call_summary(call) for call in recent],
            "online": [session_summary(session) for session in online],
            "operators": [operator_status_summary(status) for status in operators],
            "queues": [queue_summary(queue) for queue in queues],
            "callbacks": [callback_summary(callback) for callback in callbacks],
            "missed": [call_summary(call) for call in missed],
        },
    }


def callback_summary(callback: CallbackSnapshot) -> JsonObject:
    """A callback request as the dashboard and REST `GET /api/callbacks` show it."""
    return {
        "callbackID": callback.callback_id,
        "state": callback.state,
        "callID": callback.call_id,
        "queue": callback.queue,
        "queueName": callback.queue_name,
        "sessionId": callback.session_id,
        "displayName": callback.display_name,
        "note": callback.note,
        "requestedAt": callback.requested_at,
        "attempts": callback.attempts,
        "handledBy": callback.handled_by,
        "handledAt": callback.handled_at,
        "callbackCallID": callback.callback_call_id,
        "online": callback.online,
    }


def registered(role: str, calls: Sequence[ResumableCall]) -> JsonObject:
    """/ws/signal's reply to `register`: who you are and the open calls you may resume."""
    resumable = [
        {
            "callSid": call.call_id,
            "state": call.state,
            "mode": call.mode,
            "direction": call.direction,
            "sessionId": call.leg_id,
            "mediaState": call.media_state,
            "held": call.held,
            "supervisorMode": call.supervisor_mode,
        }
        for call in calls
    ]
    return protocol.event("", "", "registered", role=role, calls=resumable)


# --- end-user presence -----------------------------------------------------------------------
def session_summary(session: SessionSnapshot) -> JsonObject:
    return {
        "sessionId": session.session_id,
        "displayName": session.display_name,
        "online": session.online,
        "metadata": dict(session.metadata),
    }


def presence_event(session: SessionSnapshot) -> JsonObject:
    """`presence.online` / `presence.offline`, the same on both sockets (operators only):
    the session under `session` (what the feed always sent) and flat beside `name` (what
    /ws/signal always sent)."""
    name = "presence.online" if session.online else "presence.offline"
    summary = session_summary(session)
    return protocol.event("", "", name, **summary, session=summary)


# --- operators and queues --------------------------------------------------------------------
def operator_status_summary(status: OperatorStatusSnapshot) -> JsonObject:
    return {
        "operator": status.operator,
        "displayName": status.name,
        "availability": status.availability,
        "activity": status.activity,
        "changedAt": status.changed_at,
    }


def operator_status_event(status: OperatorStatusSnapshot) -> JsonObject:
    """/ws/operator: `operator.status`, whenever an operator's availability or activity
    changes (the summary flat beside `name`)."""
    return protocol.event("", "", "operator.status", **operator_status_summary(status))


def queue_summary(queue: QueueSnapshot) -> JsonObject:
    return {
        "queue": queue.public_id,
        "name": queue.name,
        "strategy": queue.strategy,
        "waiting": queue.waiting,
        "longestWaitS": queue.longest_wait_s,
        "members": list(queue.members),
    }


def queue_waiting_event(message: Mapping[str, Any], my_leg: str) -> JsonObject:
    """/ws/signal, to the waiting caller: `queue.waiting {queue, queueName, position,
    waitedS, callback}` (calls.routing.waiting's message; `callback`: it may ask to be
    called back, `callback.request`). The queue's public id and name are what
    the caller chose or was moved to; nothing here names an operator."""
    return protocol.event(
        my_leg,
        str(message["call_id"]),
        "queue.waiting",
        queue=message["queue"],
        queueName=message["queue_name"],
        position=message["position"],
        waitedS=message["waited_s"],
        callback=bool(message.get("callback", False)),
    )


def voicemail_stage_event(call_id: str, data: Mapping[str, Any]) -> JsonObject:
    """/ws/signal, to a caller registering again while it chooses in the voicemail stage:
    the `queue.voicemail` it was told (from its `queue.voicemail_offered` record)."""
    details = {key: data[key] for key in VOICEMAIL_STAGE_KEYS if key in data}
    stage = {"state": "voicemail", "mode": "bridge", **details}
    return protocol.event("", call_id, "queue.voicemail", **stage)


# /ws/operator's client messages: `status` (availability) and the in-call controls, each
# naming its call (`{"type": "hold", "callID": …}`); the same verbs as REST.
CALL_VERBS = (
    "hold",
    "resume",
    "transfer",
    "monitor",
    "whisper",
    "barge",
    "stopSupervising",
    "consult",
    "completeConsult",
    "cancelConsult",
)
OPERATOR_REQUESTS = ("status", *CALL_VERBS)


def operator_request_type(message: Mapping[str, Any]) -> str:
    """Which /ws/operator message this is (INVALID_MESSAGE for any other)."""
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in OPERATOR_REQUESTS:
        raise CallbridgeError(
            ErrorCode.INVALID_MESSAGE,
            "this socket takes {type: status, availability}, {type: hold | resume | monitor |"
            " whisper | barge | stopSupervising | completeConsult | cancelConsult, callID} and"
            " {type: transfer | consult, callID, to}; act otherwise through /api/",
        )
    return kind


def parse_call_verb(message: Mapping[str, Any]) -> str:
    """The callID of `{"type": "hold" | "resume", "callID": …}` (INVALID_ARGUMENT if it
    has none; whether it names a call is the verb's question)."""
    call_id = message.get("callID")
    if not isinstance(call_id, str) or not call_id:
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, "callID must name a call")
    return call_id


def parse_status_request(message: Mapping[str, Any], allowed: Sequence[str]) -> str:
    """`{"type": "status", "availability": …}`: the availability asked for
    (INVALID_MESSAGE / INVALID_ARGUMENT otherwise)."""
    if message.get("type") != "status":
        raise CallbridgeError(ErrorCode.INVALID_MESSAGE, "not a status message")
    availability = message.get("availability")
    if not isinstance(availability, str) or availability not in allowed:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, "availability must be one of " + ", ".join(allowed)
        )
    return availability
