"""The daphne ↔ media-worker protocol: every message on a worker's channel, and every reply.

Pure: no Django, no aiortc, no Channels. Messages are frozen dataclasses; `encode` turns
one into the dict the channel layer carries (str, int, float, bool, None, lists and dicts
only: what msgpack, and so channels-redis, carries unchanged) and `parse` turns such a
dict back into its message, or raises ProtocolError saying what is wrong with it.

Schema — wire keys; every message also has "type" and "v" (the protocol version):

Requests, to a worker's channel `media.<name>` (`worker_channel`); handled in order per
call. Each may carry `reply_to` (a channel) and `request_id` (echoed in the reply).
`role` is user|operator|supervisor|consult, `mode` bridge|echo, `to` user|operator|both;
ids are strings.
  media.offer        Offer        {call, leg, role, mode, kind, sdp} → media.answer {sdp}.
                     `kind`: create (a new call: refused while the worker drains),
                     answer (refused when another party's leg holds that role), attach.
  media.candidate    Candidate    {call, leg, candidate, sdpMid, sdpMLineIndex}; no reply
                     unless the worker cannot use it (media.error).
  media.close        CloseLeg     {call, leg}: close that leg's media, the call stays
                     → media.closed
  media.end_call     EndCall      {call}: the call ended; stop its recordings, close its
                     legs. No reply.
  media.record_start RecordStart  {call, mode, recording, path} → media.recording
                     (refused once the call ended or that recording was stopped)
  media.record_stop  RecordStop   {call, recording, reason, by, cutoff} → media.recorded.
                     `cutoff` (unix time or null): no audio after it is kept. A stop that
                     overtakes its start is answered (nothing recorded) and the start
                     refused.
  media.play         Play         {call, playback, path, to, loop} → media.playing {durationS}
                     `loop`: play again from the start until stopped (a queue's waiting
                     audio): a looped playback also stops when an operator leg joins the
                     call, and one that comes while an operator leg is there is refused
                     (CALL_STATE), so the answer stops it whatever order its messages came
                     in. A playback with the id of one still playing replaces it.
  media.play_stop    PlayStop     {call, playback} → media.play_stopped. `playback` (null:
                     every playback of the call) stops only that one.
  media.hold         Hold         {call, held, seq, path} → media.hold_set. `held`: the
                     end user hears `path` (a library file, null: silence) looped and not
                     the operator, the operator hears nothing; false: both hear each other
                     again. `seq` (the call.held / call.resumed event's id) orders them: a
                     Hold with a seq at or below the last one applied is answered and
                     ignored, so an overtaken decision never wins. Remembered for legs that
                     (re)connect while held; refused once the call ended.
  media.transfer_out TransferOut  {call, leg, seq, path} → media.hold_set. A transfer: the
                     operator leg `leg` leaves (its connection closes) and the end user is
                     held (hears `path` looped, null: silence) in one step. `seq` as Hold's
                     (the call.transfer_started event's id).
  media.transfer_in  TransferIn   {call, leg, seq} → media.hold_set. The transfer is taken:
                     the hold ends the moment operator leg `leg` has audio here (at once if
                     it has already; its connection may come after this message), so the
                     caller hears the hold audio up to the new operator's first packet.
                     `seq` as Hold's (call.transfer_completed's id); a later Hold cancels it.
  media.supervise    Supervise    {call, mode, seq} → media.supervision_set. `mode`
                     (monitor | whisper | barge) is who hears the `supervisor` leg and whom
                     it hears; null: the supervisor left (its leg is closed). `seq` (the
                     supervisor.* event's id) orders them as Hold's does.
  media.consult_end  ConsultEnd   {call, leg, completed, leaving} → media.closed. An
                     attended transfer's consult is over. The consulted operator's leg
                     (role `consult`: while on the line it and the operator hear each other
                     only, the caller being held) is closed (`completed` false), or becomes
                     the call's `operator` leg, the first operator's leg `leaving` closed
                     (`completed` true). The hold ends by the Hold that follows.

Replies, to the request's `reply_to`, each echoing its request_id, call and leg (null for
requests without a leg):
  media.answer       Answer            {sdp}
  media.closed       Closed            {}
  media.recording    RecordingStarted  {}
  media.recorded     Recorded          {result: {size_bytes, sha256, duration_s,
                                        audio_started_at} | {} when nothing was recorded}
  media.playing      Playing           {durationS}
  media.play_stopped PlayStopped       {}
  media.hold_set     HoldSet           {held}: what the call is now (after an ignored
                                        overtaken Hold, what it still is)
  media.supervision_set SupervisionSet {mode}: the supervision now (null: none)
  media.error        Error             {code, message, recoverable}: any request refused or
                                        failed, and the answer to a message that does not
                                        parse (when it names a reply_to)
Reports, from a worker about one of its legs (no reply; the worker hands them to its
LegReporter, which records them: calls/workers/reporter.py):
  media.quality_alert   QualityAlert    {call, leg, name, mos, r, lossPercent, jitterMs,
                                         rttMs}: `name` quality.warning | quality.cleared,
                                         with the sample that decided it (rttMs null:
                                         not measured yet). calls/media/quality.py says how.
  media.quality_summary QualitySummary  {call, leg, samples, mosMin, mosAvg, lossPercent,
                                         jitterMs, rttMs, warnings}: a leg's connection
                                         ended; what its samples came to.
Keys the channel layer adds (channels-redis' `__asgi_channel__`) are ignored.

Versions: a message is accepted only if its "v" is exactly VERSION; older and newer are
refused alike. Daphne and workers are one code base with no translation between versions:
a newer message may mean what this side cannot know, and accepting older ones would mean
keeping their parsers and guessing their defaults — worth it only once a deploy must mix
versions for long. So a mix fails loudly instead of half-working: the worker replies with
an Error (MEDIA_BRIDGE_FAILURE) and logs it, daphne raises MEDIA_BRIDGE_FAILURE and logs
it. Bump VERSION with any change to this schema; while a deploy mixes versions, requests
between old and new processes fail until every process runs the new one. (A worker from
before v1 cannot refuse: it ignores "v" and reads v1 messages as before, which is why v1
kept the keys of those unversioned dicts.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeAlias, TypeGuard, TypeVar

from calls.errors import CallbridgeError, ErrorCode
from calls.media.quality import Summary

# v2: Play.loop, PlayStop.playback (waiting audio); v3: Hold (hold / resume);
# v4: TransferOut, TransferIn (blind transfer); Supervise, the supervisor role;
# v5: reports QualityAlert, QualitySummary (server-side call quality);
# v6: ConsultEnd and the consult role (attended transfer)
VERSION = 6
QUALITY_VERDICTS = ("quality.warning", "quality.cleared")

ROLES = ("user", "operator", "supervisor", "consult")
SUPERVISOR_MODES = ("monitor", "whisper", "barge")
MODES = ("bridge", "echo")
PLAY_TARGETS = ("user", "operator", "both")

Wire: TypeAlias = "str | int | float | bool | list[Wire] | dict[str, Wire] | None"


def worker_channel(name: str) -> str:
    """The channel a media worker listens on."""
    return f"media.{name}"


class OfferKind(StrEnum):
    CREATE = "create"  # a new call (a draining worker refuses it)
    ANSWER = "answer"  # the first answer of a ringing call
    ATTACH = "attach"  # an existing leg gets (new) media


class ProtocolError(ValueError):
    """A dict that is not a message of this protocol version."""


class UnsupportedVersion(ProtocolError):
    """A message from another protocol version (None: from before versions)."""

    def __init__(self, version: int | None) -> None:
        if version is None:
            text = f"no protocol version (v): a sender from before v1; this side speaks v{VERSION}"
        else:
            age = "newer" if version > VERSION else "older"
            text = (
                f"protocol v{version} is {age} than this side's v{VERSION}: daphne and media"
                " workers must run one version (finish the deploy)"
            )
        super().__init__(text)
        self.version = version


# --- replies (worker → reply_to) ----------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Reply:
    TYPE: ClassVar[str]
    # Echoed from the request, to match the reply to it.
    request_id: str | None = None
    call: str | None = None
    leg: str | None = None


@dataclass(frozen=True, kw_only=True)
class Answer(Reply):
    TYPE = "media.answer"
    sdp: str


@dataclass(frozen=True, kw_only=True)
class Closed(Reply):
    TYPE = "media.closed"


@dataclass(frozen=True, kw_only=True)
class RecordingStarted(Reply):
    TYPE = "media.recording"


@dataclass(frozen=True)
class RecordedFile:
    """What a stopped recording left, as the worker measured it."""

    size_bytes: int
    sha256: str
    duration_s: float
    audio_started_at: float | None  # unix time of the file's first sample

    def as_dict(self) -> dict[str, Wire]:
        return {
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "duration_s": self.duration_s,
            "audio_started_at": self.audio_started_at,
        }


@dataclass(frozen=True, kw_only=True)
class Recorded(Reply):
    TYPE = "media.recorded"
    result: RecordedFile | None  # None: nothing was recorded (the stop overtook its start)


@dataclass(frozen=True, kw_only=True)
class Playing(Reply):
    TYPE = "media.playing"
    duration_s: float


@dataclass(frozen=True, kw_only=True)
class PlayStopped(Reply):
    TYPE = "media.play_stopped"


@dataclass(frozen=True, kw_only=True)
class HoldSet(Reply):
    TYPE = "media.hold_set"
    held: bool


@dataclass(frozen=True, kw_only=True)
class SupervisionSet(Reply):
    TYPE = "media.supervision_set"
    mode: str | None


@dataclass(frozen=True, kw_only=True)
class Error(Reply):
    TYPE = "media.error"
    code: ErrorCode
    message: str
    recoverable: bool

    @classmethod
    def of(cls, failure: CallbridgeError) -> Error:
        return cls(code=failure.code, message=failure.message, recoverable=failure.recoverable)

    def as_exception(self) -> CallbridgeError:
        return CallbridgeError(self.code, self.message, recoverable=self.recoverable)


R = TypeVar("R", bound=Reply)


# --- requests (daphne → worker) -------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Request:
    TYPE: ClassVar[str]
    call: str
    reply_to: str | None = None  # a channel; None: no reply wanted
    request_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class RequestFor(Request, Generic[R]):
    """A request the worker answers with an R (or an Error)."""

    REPLY: ClassVar[type[Reply]]


@dataclass(frozen=True, kw_only=True)
class Offer(RequestFor[Answer]):
    TYPE = "media.offer"
    REPLY = Answer
    leg: str
    role: str  # one of ROLES
    mode: str  # one of MODES
    kind: OfferKind
    sdp: str


@dataclass(frozen=True, kw_only=True)
class Candidate(Request):
    TYPE = "media.candidate"
    leg: str
    candidate: str  # "": end of candidates
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True, kw_only=True)
class CloseLeg(RequestFor[Closed]):
    TYPE = "media.close"
    REPLY = Closed
    leg: str


@dataclass(frozen=True, kw_only=True)
class EndCall(Request):
    TYPE = "media.end_call"


@dataclass(frozen=True, kw_only=True)
class RecordStart(RequestFor[RecordingStarted]):
    TYPE = "media.record_start"
    REPLY = RecordingStarted
    mode: str  # one of MODES
    recording: str
    path: str


@dataclass(frozen=True, kw_only=True)
class RecordStop(RequestFor[Recorded]):
    TYPE = "media.record_stop"
    REPLY = Recorded
    recording: str
    reason: str
    by: str
    cutoff: float | None = None  # unix time: keep no audio after it


@dataclass(frozen=True, kw_only=True)
class Play(RequestFor[Playing]):
    TYPE = "media.play"
    REPLY = Playing
    playback: str
    path: str
    to: str  # one of PLAY_TARGETS
    loop: bool = False  # until stopped, or an operator leg joins (waiting audio)


@dataclass(frozen=True, kw_only=True)
class PlayStop(RequestFor[PlayStopped]):
    TYPE = "media.play_stop"
    REPLY = PlayStopped
    playback: str | None = None  # None: every playback of the call


@dataclass(frozen=True, kw_only=True)
class Hold(RequestFor[HoldSet]):
    TYPE = "media.hold"
    REPLY = HoldSet
    held: bool
    seq: int  # the deciding CallEvent's id: later decisions have higher ones
    path: str | None = None  # the hold audio (held only); None: silence


@dataclass(frozen=True, kw_only=True)
class TransferOut(RequestFor[HoldSet]):
    TYPE = "media.transfer_out"
    REPLY = HoldSet
    leg: str  # the operator leg that leaves
    seq: int
    path: str | None = None  # the hold audio; None: silence


@dataclass(frozen=True, kw_only=True)
class TransferIn(RequestFor[HoldSet]):
    TYPE = "media.transfer_in"
    REPLY = HoldSet
    leg: str  # the operator leg that takes the call
    seq: int


@dataclass(frozen=True, kw_only=True)
class Supervise(RequestFor[SupervisionSet]):
    TYPE = "media.supervise"
    REPLY = SupervisionSet
    mode: str | None  # one of SUPERVISOR_MODES; None: the supervisor left
    seq: int  # the deciding CallEvent's id: later decisions have higher ones


@dataclass(frozen=True, kw_only=True)
class ConsultEnd(RequestFor[Closed]):
    TYPE = "media.consult_end"
    REPLY = Closed
    leg: str | None  # the consulted operator's leg (None: it never answered)
    completed: bool  # True: that leg becomes the operator's; False: it is closed
    leaving: str | None = None  # completed: the first operator's leg, closed


# --- reports (worker → its LegReporter) ---------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Report:
    TYPE: ClassVar[str]
    call: str
    leg: str


@dataclass(frozen=True, kw_only=True)
class QualityAlert(Report):
    TYPE = "media.quality_alert"
    name: str  # one of QUALITY_VERDICTS
    mos: float
    r: float
    loss_percent: float
    jitter_ms: float
    rtt_ms: float | None


@dataclass(frozen=True, kw_only=True)
class QualitySummary(Report):
    TYPE = "media.quality_summary"
    samples: int
    mos_min: float
    mos_avg: float
    loss_percent: float
    jitter_ms: float
    rtt_ms: float | None
    warnings: int

    @classmethod
    def of(cls, call: str, leg: str, summary: Summary) -> QualitySummary:
        """The report of one connection's summary (the worker sends it)."""
        return cls(call=call, leg=leg, **asdict(summary))

    def summary(self) -> Summary:
        """The summary reported (the daphne side records it)."""
        return Summary(**{f.name: getattr(self, f.name) for f in fields(Summary)})


Message = Request | Reply | Report

REQUEST_TYPES: tuple[type[Request], ...] = (
    Offer,
    Candidate,
    CloseLeg,
    EndCall,
    RecordStart,
    RecordStop,
    Play,
    PlayStop,
    Hold,
    TransferOut,
    TransferIn,
    Supervise,
    ConsultEnd,
)
REPLY_TYPES: tuple[type[Reply], ...] = (
    Answer,
    Closed,
    RecordingStarted,
    Recorded,
    Playing,
    PlayStopped,
    HoldSet,
    SupervisionSet,
    Error,
)
REPORT_TYPES: tuple[type[Report], ...] = (QualityAlert, QualitySummary)


def leg_of(request: Request) -> str | None:
    """The leg a request is about (None: the whole call)."""
    return request.leg if isinstance(request, Offer | Candidate | CloseLeg) else None


def answers(reply: Reply, request: RequestFor[R]) -> TypeGuard[R]:
    """Is `reply` what `request` asks for (not an Error, not another request's reply)?"""
    return isinstance(reply, request.REPLY)


def reply_to(request: Request, reply: R) -> R:
    """`reply` addressed as the answer to `request`."""
    return replace(reply, request_id=request.request_id, call=request.call, leg=leg_of(request))


# --- encode --------------------------------------------------------------------------------
_WIRE_NAMES = {
    "sdp_mid": "sdpMid",
    "sdp_mline_index": "sdpMLineIndex",
    "duration_s": "durationS",
    "loss_percent": "lossPercent",
    "jitter_ms": "jitterMs",
    "rtt_ms": "rttMs",
    "mos_min": "mosMin",
    "mos_avg": "mosAvg",
}


def encode(message: Message) -> dict[str, Wire]:
    """The dict the channel layer carries for `message`."""
    wire: dict[str, Wire] = {"type": message.TYPE, "v": VERSION}
    for field in fields(message):
        wire[_WIRE_NAMES.get(field.name, field.name)] = _wire_value(getattr(message, field.name))
    if isinstance(message, Recorded) and message.result is None:
        wire["result"] = {}  # the unversioned protocol's "nothing recorded"
    return wire


def _wire_value(value: object) -> Wire:
    if isinstance(value, StrEnum):  # plain str on the wire: some serializers check exact types
        return value.value
    if value is None or isinstance(value, str | int | float):  # bool is an int
        return value
    if isinstance(value, RecordedFile):
        return value.as_dict()
    raise TypeError(f"cannot encode {type(value).__name__}")


# --- parse ---------------------------------------------------------------------------------
class _Fields:
    """Typed reads of one message's fields; every problem is a ProtocolError naming it."""

    def __init__(self, raw: dict[str, Any], context: str) -> None:
        self.raw = raw
        self.context = context

    def _wrong(self, key: str, wanted: str) -> ProtocolError:
        got = type(self.raw[key]).__name__
        return ProtocolError(f"{self.context}: {key} must be {wanted}, not {got}")

    def _present(self, key: str) -> None:
        if key not in self.raw:
            raise ProtocolError(f"{self.context}: {key} is missing")

    def text(self, key: str) -> str:
        self._present(key)
        value = self.raw[key]
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self.raw.get(key) is None else self.text(key)

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in allowed:
            raise ProtocolError(
                f"{self.context}: {key} must be one of {', '.join(allowed)}, not {value[:40]!r}"
            )
        return value

    def flag(self, key: str) -> bool:
        self._present(key)
        value = self.raw[key]
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false")
        return value

    def integer(self, key: str) -> int:
        self._present(key)
        value = self.raw[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(key, "an integer")
        return value

    def optional_integer(self, key: str) -> int | None:
        return None if self.raw.get(key) is None else self.integer(key)

    def number(self, key: str) -> float:
        self._present(key)
        value = self.raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, "a number")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self.raw.get(key) is None else self.number(key)

    def nested(self, key: str) -> _Fields:
        self._present(key)
        value = self.raw[key]
        if not isinstance(value, dict):
            raise self._wrong(key, "an object")
        return _Fields(value, f"{self.context}: {key}")


def _recorded_file(result: _Fields) -> RecordedFile | None:
    if not result.raw:
        return None
    return RecordedFile(
        size_bytes=result.integer("size_bytes"),
        sha256=result.text("sha256"),
        duration_s=result.number("duration_s"),
        audio_started_at=result.optional_number("audio_started_at"),
    )


def _error_code(f: _Fields) -> ErrorCode:
    code = f.text("code")
    try:
        return ErrorCode(code)
    except ValueError:
        raise ProtocolError(f"{f.context}: unknown error code {code[:40]!r}") from None


def _request(f: _Fields) -> dict[str, Any]:
    return {
        "call": f.text("call"),
        "reply_to": f.optional_text("reply_to"),
        "request_id": f.optional_text("request_id"),
    }


def _reply(f: _Fields) -> dict[str, Any]:
    return {
        "request_id": f.optional_text("request_id"),
        "call": f.optional_text("call"),
        "leg": f.optional_text("leg"),
    }


_PARSERS: dict[str, Callable[[_Fields], Message]] = {
    Offer.TYPE: lambda f: Offer(
        **_request(f),
        leg=f.text("leg"),
        role=f.choice("role", ROLES),
        mode=f.choice("mode", MODES),
        kind=OfferKind(f.choice("kind", tuple(OfferKind))),
        sdp=f.text("sdp"),
    ),
    Candidate.TYPE: lambda f: Candidate(
        **_request(f),
        leg=f.text("leg"),
        candidate=f.text("candidate"),
        sdp_mid=f.optional_text("sdpMid"),
        sdp_mline_index=f.optional_integer("sdpMLineIndex"),
    ),
    CloseLeg.TYPE: lambda f: CloseLeg(**_request(f), leg=f.text("leg")),
    EndCall.TYPE: lambda f: EndCall(**_request(f)),
    RecordStart.TYPE: lambda f: RecordStart(
        **_request(f),
        mode=f.choice("mode", MODES),
        recording=f.text("recording"),
        path=f.text("path"),
    ),
    RecordStop.TYPE: lambda f: RecordStop(
        **_request(f),
        recording=f.text("recording"),
        reason=f.text("reason"),
        by=f.text("by"),
        cutoff=f.optional_number("cutoff"),
    ),
    Play.TYPE: lambda f: Play(
        **_request(f),
        playback=f.text("playback"),
        path=f.text("path"),
        to=f.choice("to", PLAY_TARGETS),
        loop=f.flag("loop"),
    ),
    PlayStop.TYPE: lambda f: PlayStop(**_request(f), playback=f.optional_text("playback")),
    Hold.TYPE: lambda f: Hold(
        **_request(f), held=f.flag("held"), seq=f.integer("seq"), path=f.optional_text("path")
    ),
    TransferOut.TYPE: lambda f: TransferOut(
        **_request(f), leg=f.text("leg"), seq=f.integer("seq"), path=f.optional_text("path")
    ),
    TransferIn.TYPE: lambda f: TransferIn(**_request(f), leg=f.text("leg"), seq=f.integer("seq")),
    Supervise.TYPE: lambda f: Supervise(
        **_request(f),
        mode=None if f.raw.get("mode") is None else f.choice("mode", SUPERVISOR_MODES),
        seq=f.integer("seq"),
    ),
    ConsultEnd.TYPE: lambda f: ConsultEnd(
        **_request(f),
        leg=f.optional_text("leg"),
        completed=f.flag("completed"),
        leaving=f.optional_text("leaving"),
    ),
    Answer.TYPE: lambda f: Answer(**_reply(f), sdp=f.text("sdp")),
    Closed.TYPE: lambda f: Closed(**_reply(f)),
    RecordingStarted.TYPE: lambda f: RecordingStarted(**_reply(f)),
    Recorded.TYPE: lambda f: Recorded(**_reply(f), result=_recorded_file(f.nested("result"))),
    Playing.TYPE: lambda f: Playing(**_reply(f), duration_s=f.number("durationS")),
    PlayStopped.TYPE: lambda f: PlayStopped(**_reply(f)),
    HoldSet.TYPE: lambda f: HoldSet(**_reply(f), held=f.flag("held")),
    SupervisionSet.TYPE: lambda f: SupervisionSet(**_reply(f), mode=f.optional_text("mode")),
    Error.TYPE: lambda f: Error(
        **_reply(f),
        code=_error_code(f),
        message=f.text("message"),
        recoverable=f.flag("recoverable"),
    ),
    QualityAlert.TYPE: lambda f: QualityAlert(
        call=f.text("call"),
        leg=f.text("leg"),
        name=f.choice("name", QUALITY_VERDICTS),
        mos=f.number("mos"),
        r=f.number("r"),
        loss_percent=f.number("lossPercent"),
        jitter_ms=f.number("jitterMs"),
        rtt_ms=f.optional_number("rttMs"),
    ),
    QualitySummary.TYPE: lambda f: QualitySummary(
        call=f.text("call"),
        leg=f.text("leg"),
        samples=f.integer("samples"),
        mos_min=f.number("mosMin"),
        mos_avg=f.number("mosAvg"),
        loss_percent=f.number("lossPercent"),
        jitter_ms=f.number("jitterMs"),
        rtt_ms=f.optional_number("rttMs"),
        warnings=f.integer("warnings"),
    ),
}


def parse(raw: object) -> Message:
    """The message `raw` carries; ProtocolError (UnsupportedVersion for another version's
    message) if it is not one."""
    if not isinstance(raw, dict):
        raise ProtocolError(f"a message must be a dict, not {type(raw).__name__}")
    version = raw.get("v")
    if version is None:
        raise UnsupportedVersion(None)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError(f"v must be an integer, not {type(version).__name__}")
    if version != VERSION:
        raise UnsupportedVersion(version)
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("type is missing")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError(f"unknown message type {kind[:40]!r}")
    return parser(_Fields(raw, kind))


def parse_request(raw: object) -> Request:
    message = parse(raw)
    if not isinstance(message, Request):
        kind = "a reply" if isinstance(message, Reply) else "a report"
        raise ProtocolError(f"{message.TYPE} is {kind}, not a request")
    return message


def parse_reply(raw: object) -> Reply:
    message = parse(raw)
    if not isinstance(message, Reply):
        kind = "a request" if isinstance(message, Request) else "a report"
        raise ProtocolError(f"{message.TYPE} is {kind}, not a reply")
    return message


def parse_report(raw: object) -> Report:
    message = parse(raw)
    if not isinstance(message, Report):
        raise ProtocolError(f"{message.TYPE} is not a report")
    return message


# --- messages that do not parse -------------------------------------------------------------
def _readable(raw: object, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def reply_channel(raw: object) -> str | None:
    """Where to answer `raw`, even if it does not parse (None: it asked for no reply)."""
    return _readable(raw, "reply_to") or None


def refusal(raw: object, problem: ProtocolError) -> Error:
    """The Error answering (or standing for) `raw`, which does not parse: addressed as it
    was, as far as that can be read."""
    return Error(
        code=ErrorCode.MEDIA_BRIDGE_FAILURE,
        message=f"media worker protocol: {problem}",
        recoverable=ErrorCode.MEDIA_BRIDGE_FAILURE.recoverable,
        request_id=_readable(raw, "request_id"),
        call=_readable(raw, "call"),
        leg=_readable(raw, "leg"),
    )
