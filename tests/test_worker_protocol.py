"""The daphne ↔ media-worker protocol (calls/workers/protocol.py): every message survives
the channel layer, and anything else — another version, a malformed or unknown message —
is refused out loud, by the parser, by a real media worker and by daphne's link."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from callbridge.channel_layer import EmbeddedChannelLayer, configured_layer
from calls.errors import CallbridgeError, ErrorCode
from calls.media.peer import PeerSettings
from calls.media.worker import MediaWorker
from calls.workers import link, protocol

ROUTED: dict[str, Any] = {"reply_to": "specific.abc!def", "request_id": "r-1"}
ECHOED: dict[str, Any] = {"request_id": "r-1", "call": "c-1", "leg": "l-1"}
FILE = protocol.RecordedFile(
    size_bytes=1_000_080, sha256="ab" * 32, duration_s=5.2, audio_started_at=1_790_000_000.25
)
EVERY_MESSAGE: list[protocol.Message] = [
    protocol.Offer(
        call="c-1",
        leg="l-1",
        role="user",
        mode="bridge",
        kind=protocol.OfferKind.CREATE,
        sdp="v=0\r\n",
        **ROUTED,
    ),
    protocol.Offer(
        call="c-1", leg="l-1", role="operator", mode="echo", kind=protocol.OfferKind.ATTACH, sdp=""
    ),
    protocol.Candidate(
        call="c-1",
        leg="l-1",
        candidate="candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
        sdp_mid="0",
        sdp_mline_index=0,
        reply_to="specific.abc!def",
    ),
    protocol.Candidate(call="c-1", leg="l-1", candidate="", sdp_mid=None, sdp_mline_index=None),
    protocol.CloseLeg(call="c-1", leg="l-1", **ROUTED),
    protocol.EndCall(call="c-1"),
    protocol.RecordStart(call="c-1", mode="bridge", recording="r", path="/r/a.wav", **ROUTED),
    protocol.RecordStop(call="c-1", recording="r", reason="stopped", by="operator x", **ROUTED),
    protocol.RecordStop(
        call="c-1", recording="r", reason="consent_withdrawn", by="system", cutoff=1_790_000_001.5
    ),
    protocol.Play(call="c-1", playback="p", path="/lib/a.wav", to="both", **ROUTED),
    protocol.Play(call="c-1", playback="w", path="/lib/b.wav", to="user", loop=True),
    protocol.PlayStop(call="c-1", **ROUTED),
    protocol.PlayStop(call="c-1", playback="w"),
    protocol.Hold(call="c-1", held=True, seq=41, path="/lib/hold.wav", **ROUTED),
    protocol.Hold(call="c-1", held=False, seq=42),
    protocol.TransferOut(call="c-1", leg="l-1", seq=43, path="/lib/hold.wav", **ROUTED),
    protocol.TransferOut(call="c-1", leg="l-1", seq=44),
    protocol.TransferIn(call="c-1", leg="l-2", seq=45, **ROUTED),
    protocol.Supervise(call="c-1", mode="whisper", seq=46, **ROUTED),
    protocol.Supervise(call="c-1", mode=None, seq=47),
    protocol.ConsultEnd(call="c-1", leg="l-3", completed=True, leaving="l-2", **ROUTED),
    protocol.ConsultEnd(call="c-1", leg=None, completed=False),
    protocol.Answer(sdp="v=0\r\n", **ECHOED),
    protocol.Closed(**ECHOED),
    protocol.RecordingStarted(request_id="r-1", call="c-1"),
    protocol.Recorded(result=FILE, request_id="r-1", call="c-1"),
    protocol.Recorded(result=None, request_id="r-1", call="c-1"),
    protocol.Recorded(result=protocol.RecordedFile(80, "00" * 32, 0.0, None)),
    protocol.Playing(duration_s=2.5, request_id="r-1", call="c-1"),
    protocol.PlayStopped(request_id="r-1", call="c-1"),
    protocol.HoldSet(held=True, request_id="r-1", call="c-1"),
    protocol.SupervisionSet(mode="barge", request_id="r-1", call="c-1"),
    protocol.SupervisionSet(mode=None, request_id="r-1", call="c-1"),
    protocol.Error(code=ErrorCode.CALL_STATE, message="the call has ended", recoverable=False),
    protocol.Error(
        code=ErrorCode.MEDIA_BRIDGE_FAILURE,
        message="media worker error",
        recoverable=True,
        **ECHOED,
    ),
    protocol.QualityAlert(
        call="c-1",
        leg="l-1",
        name="quality.warning",
        mos=2.61,
        r=50.9,
        loss_percent=20.0,
        jitter_ms=12.5,
        rtt_ms=None,
    ),
    protocol.QualityAlert(
        call="c-1",
        leg="l-1",
        name="quality.cleared",
        mos=4.4,
        r=93.2,
        loss_percent=0.0,
        jitter_ms=1.0,
        rtt_ms=2.5,
    ),
    protocol.QualitySummary(
        call="c-1",
        leg="l-1",
        samples=12,
        mos_min=2.61,
        mos_avg=3.9,
        loss_percent=4.17,
        jitter_ms=3.2,
        rtt_ms=None,
        warnings=1,
    ),
]
SAFE_TYPES = (str, int, float, bool, type(None), list, dict)
OFFER = protocol.encode(EVERY_MESSAGE[0])
CANDIDATE = protocol.encode(EVERY_MESSAGE[2])
STOP_WITH_CUTOFF = protocol.encode(EVERY_MESSAGE[8])
RECORDED = protocol.encode(protocol.Recorded(result=FILE))
ERROR = protocol.encode(EVERY_MESSAGE[-4])
ALERT = protocol.encode(EVERY_MESSAGE[-3])
SUMMARY = protocol.encode(EVERY_MESSAGE[-1])


def assert_channel_layer_safe(value: Any) -> None:
    assert isinstance(value, SAFE_TYPES), value
    assert type(value) in SAFE_TYPES, f"{value!r} is a {type(value).__name__}"  # no subclasses
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_channel_layer_safe(item)
    elif isinstance(value, list):
        for item in value:
            assert_channel_layer_safe(item)


def test_it_has_an_example_of_every_message_type() -> None:
    kinds = (*protocol.REQUEST_TYPES, *protocol.REPLY_TYPES, *protocol.REPORT_TYPES)
    assert {type(m) for m in EVERY_MESSAGE} == set(kinds)
    types = [t.TYPE for t in kinds]
    assert len(set(types)) == len(types)


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_it_round_trips_every_message(message: protocol.Message) -> None:
    wire = protocol.encode(message)
    assert wire["type"] == message.TYPE
    assert wire["v"] == protocol.VERSION
    assert_channel_layer_safe(wire)
    assert protocol.parse(wire) == message
    assert protocol.parse(protocol.encode(protocol.parse(wire))) == message


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_it_round_trips_every_message_through_redis_serialization(
    message: protocol.Message,
) -> None:
    serializers = pytest.importorskip("channels_redis.serializers")
    msgpack = serializers.registry.get_serializer("msgpack")
    carried = msgpack.deserialize(msgpack.serialize(protocol.encode(message)))
    carried["__asgi_channel__"] = "specific.abc!def"  # channels-redis' own key is ignored
    assert protocol.parse(carried) == message


def test_it_keeps_the_unversioned_wire_keys() -> None:
    """A daphne from before v1 reads v1 replies (it only ignores "v")."""
    assert CANDIDATE["sdpMid"] == "0" and CANDIDATE["sdpMLineIndex"] == 0
    assert protocol.encode(protocol.Playing(duration_s=1.0))["durationS"] == 1.0
    assert protocol.encode(protocol.Recorded(result=None))["result"] == {}
    assert (ERROR["type"], ERROR["code"], ERROR["message"]) == (
        "media.error",
        "MEDIA_BRIDGE_FAILURE",
        "media worker error",
    )


@pytest.mark.parametrize(
    ("version", "says"),
    [(protocol.VERSION + 1, "newer"), (protocol.VERSION - 1, "older"), (None, "before v1")],
)
def test_it_refuses_a_message_of_another_version(version: int | None, says: str) -> None:
    wire = protocol.encode(protocol.PlayStop(call="c-1", **ROUTED))
    if version is None:
        del wire["v"]
    else:
        wire["v"] = version
    with pytest.raises(protocol.UnsupportedVersion) as refused:
        protocol.parse(wire)
    assert refused.value.version == version
    assert says in str(refused.value)


def test_it_refuses_a_loop_that_is_not_a_flag() -> None:
    wire = protocol.encode(protocol.Play(call="c-1", playback="p", path="/a.wav", to="user"))
    with pytest.raises(protocol.ProtocolError, match="loop must be true or false"):
        protocol.parse({**wire, "loop": "yes"})


def test_it_checks_the_version_before_anything_else() -> None:
    """A newer version may have types and fields this one does not know: the version is
    what is wrong, not the type."""
    with pytest.raises(protocol.UnsupportedVersion):
        protocol.parse({"type": "media.transfer", "v": protocol.VERSION + 1, "to": ["x"]})


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (["media.offer"], "a message must be a dict, not list"),
        ({**OFFER, "v": "1"}, "v must be an integer, not str"),
        ({**OFFER, "v": True}, "v must be an integer, not bool"),
        ({"v": protocol.VERSION}, "type is missing"),
        (
            {"type": "media.transfer", "v": protocol.VERSION},
            "unknown message type 'media.transfer'",
        ),
        ({k: v for k, v in OFFER.items() if k != "sdp"}, "media.offer: sdp is missing"),
        ({**OFFER, "sdp": None}, "media.offer: sdp must be a string, not NoneType"),
        ({**OFFER, "call": 7}, "media.offer: call must be a string, not int"),
        ({**OFFER, "kind": "steal"}, "media.offer: kind must be one of create, answer, attach"),
        ({**OFFER, "role": "admin"}, "media.offer: role must be one of user, operator"),
        ({**OFFER, "reply_to": ["x"]}, "media.offer: reply_to must be a string, not list"),
        ({**CANDIDATE, "sdpMLineIndex": "0"}, "sdpMLineIndex must be an integer, not str"),
        ({**CANDIDATE, "sdpMLineIndex": True}, "sdpMLineIndex must be an integer, not bool"),
        (
            {**STOP_WITH_CUTOFF, "cutoff": "soon"},
            "media.record_stop: cutoff must be a number, not str",
        ),
        (
            {**RECORDED, "result": {"sha256": "x"}},
            "media.recorded: result: size_bytes is missing",
        ),
        (
            {**RECORDED, "result": None},
            "media.recorded: result must be an object, not NoneType",
        ),
        (
            {**ERROR, "code": "TEAPOT"},
            "media.error: unknown error code 'TEAPOT'",
        ),
        (
            {**ERROR, "recoverable": 1},
            "media.error: recoverable must be true or false, not int",
        ),
        (
            {**protocol.encode(protocol.Hold(call="c-1", held=True, seq=1)), "seq": "1"},
            "media.hold: seq must be an integer, not str",
        ),
        (
            {**protocol.encode(protocol.Hold(call="c-1", held=True, seq=1)), "held": None},
            "media.hold: held must be true or false, not NoneType",
        ),
        (
            {**protocol.encode(protocol.Supervise(call="c-1", mode="barge", seq=1)), "mode": "x"},
            "media.supervise: mode must be one of monitor, whisper, barge, not 'x'",
        ),
        (
            {**ALERT, "name": "quality.great"},
            "media.quality_alert: name must be one of quality.warning, quality.cleared,"
            " not 'quality.great'",
        ),
        (
            {**SUMMARY, "mosAvg": "3.9"},
            "media.quality_summary: mosAvg must be a number, not str",
        ),
    ],
)
def test_it_says_what_is_wrong_with_a_malformed_message(raw: Any, says: str) -> None:
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.parse(raw)
    assert says in str(refused.value)
    assert not isinstance(refused.value, protocol.UnsupportedVersion)


def test_it_tells_requests_from_replies() -> None:
    with pytest.raises(protocol.ProtocolError, match=r"media\.answer is a reply, not a request"):
        protocol.parse_request(protocol.encode(protocol.Answer(sdp="v=0")))
    with pytest.raises(protocol.ProtocolError, match=r"media\.play_stop is a request, not a reply"):
        protocol.parse_reply(protocol.encode(protocol.PlayStop(call="c-1")))


def test_it_addresses_a_reply_as_its_request() -> None:
    offer = protocol.parse_request(OFFER)
    assert protocol.reply_to(offer, protocol.Answer(sdp="x")) == protocol.Answer(sdp="x", **ECHOED)
    stop = protocol.PlayStop(call="c-1", **ROUTED)
    assert protocol.reply_to(stop, protocol.PlayStopped()) == protocol.PlayStopped(
        request_id="r-1", call="c-1", leg=None
    )


def test_it_addresses_the_refusal_of_a_message_it_cannot_read() -> None:
    raw = {**OFFER, "v": protocol.VERSION + 1}
    assert protocol.reply_channel(raw) == "specific.abc!def"
    refusal = protocol.refusal(raw, protocol.UnsupportedVersion(protocol.VERSION + 1))
    assert (refusal.code, refusal.request_id, refusal.call, refusal.leg) == (
        ErrorCode.MEDIA_BRIDGE_FAILURE,
        "r-1",
        "c-1",
        "l-1",
    )
    assert f"v{protocol.VERSION + 1} is newer" in refusal.message
    assert protocol.reply_channel({"reply_to": 5}) is None
    assert protocol.reply_channel(["not", "a", "dict"]) is None


# --- a real media worker on the embedded channel layer -------------------------------------
class NoReports:
    async def leg_state(self, call_id: str, leg_id: str, state: str) -> None:
        raise AssertionError("no leg has media in these tests")

    async def recording_finished(
        self, recording_id: str, reason: str, by: str, result: protocol.RecordedFile
    ) -> None:
        raise AssertionError("nothing is recorded in these tests")

    async def leg_quality(self, report: protocol.Report) -> None:
        raise AssertionError("no leg has media in these tests")


@dataclass
class RunningWorker:
    worker: MediaWorker
    layer: EmbeddedChannelLayer

    async def ask(self, raw: dict[str, Any]) -> protocol.Reply:
        """Send `raw` to the worker with a fresh reply channel; its reply, parsed."""
        async with asyncio.timeout(5):
            reply_to = await self.layer.new_channel()
            await self.tell({**raw, "reply_to": reply_to, "request_id": "q"})
            return protocol.parse_reply(await self.layer.receive(reply_to))

    async def tell(self, raw: dict[str, Any]) -> None:
        async with asyncio.timeout(5):
            await self.layer.send(self.worker.channel, raw)


@pytest.fixture
async def running_worker() -> AsyncIterator[RunningWorker]:
    layer = EmbeddedChannelLayer()
    worker = MediaWorker("protocol-test", layer, NoReports(), PeerSettings())
    task = asyncio.create_task(worker.run())
    yield RunningWorker(worker, layer)
    task.cancel()
    async with asyncio.timeout(5):
        await asyncio.gather(task, return_exceptions=True)


async def test_it_serves_typed_requests(running_worker: RunningWorker) -> None:
    stop = protocol.encode(protocol.PlayStop(call="c-1"))
    assert await running_worker.ask(stop) == protocol.PlayStopped(request_id="q", call="c-1")
    record_stop = protocol.encode(
        protocol.RecordStop(call="c-1", recording="r", reason="stopped", by="operator x")
    )
    recorded = await running_worker.ask(record_stop)
    assert recorded == protocol.Recorded(result=None, request_id="q", call="c-1")
    missing = protocol.encode(protocol.CloseLeg(call="c-1", leg="l-9"))
    assert await running_worker.ask(missing) == protocol.Closed(
        request_id="q", call="c-1", leg="l-9"
    )


async def test_it_refuses_a_newer_versions_message_with_a_typed_error(
    running_worker: RunningWorker, caplog: pytest.LogCaptureFixture
) -> None:
    newer = {**protocol.encode(protocol.PlayStop(call="c-1")), "v": protocol.VERSION + 1}
    with caplog.at_level(logging.ERROR, logger="calls.media.worker"):
        reply = await running_worker.ask(newer)
    assert isinstance(reply, protocol.Error)
    assert reply.code == ErrorCode.MEDIA_BRIDGE_FAILURE
    assert "is newer than this side's" in reply.message
    assert (reply.request_id, reply.call) == ("q", "c-1")
    assert any(
        record.levelno == logging.ERROR and "newer" in record.getMessage()
        for record in caplog.records
    )


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"type": "media.transfer", "v": protocol.VERSION, "call": "c-1"}, "unknown message type"),
        ({k: v for k, v in OFFER.items() if k != "sdp"}, "sdp is missing"),
        ({**protocol.encode(protocol.Answer(sdp="x")), "call": "c-1"}, "is a reply"),
        ({"type": "media.play_stop", "call": "c-1"}, "no protocol version"),
    ],
)
async def test_it_answers_a_message_it_cannot_read_with_a_typed_error_and_serves_on(
    running_worker: RunningWorker, caplog: pytest.LogCaptureFixture, raw: dict[str, Any], says: str
) -> None:
    with caplog.at_level(logging.ERROR, logger="calls.media.worker"):
        reply = await running_worker.ask(raw)
    assert isinstance(reply, protocol.Error)
    assert reply.code == ErrorCode.MEDIA_BRIDGE_FAILURE and says in reply.message
    assert reply.request_id == "q"
    assert [r.levelno for r in caplog.records if says in r.getMessage()] == [logging.ERROR]
    stop = protocol.encode(protocol.PlayStop(call="c-1"))
    assert isinstance(await running_worker.ask(stop), protocol.PlayStopped)


async def test_it_logs_a_message_it_cannot_read_that_wants_no_reply(
    running_worker: RunningWorker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="calls.media.worker"):
        await running_worker.tell({"type": "media.x", "v": protocol.VERSION})
        stop = protocol.encode(protocol.PlayStop(call="c-1"))
        assert isinstance(await running_worker.ask(stop), protocol.PlayStopped)
    assert any("unknown message type 'media.x'" in r.getMessage() for r in caplog.records)


def test_it_has_a_handler_for_every_request() -> None:
    worker = MediaWorker("protocol-test", EmbeddedChannelLayer(), NoReports(), PeerSettings())
    assert set(worker._handler_of) == set(protocol.REQUEST_TYPES)


# --- daphne's side: the link --------------------------------------------------------------
async def answer_once(worker: str, reply: dict[str, Any]) -> None:
    """Stand in for a media worker of another build: answer one request with `reply`."""
    layer = configured_layer()
    request = await layer.receive(protocol.worker_channel(worker))
    await layer.send(request["reply_to"], {**reply, "request_id": request["request_id"]})


async def test_it_raises_media_bridge_failure_for_a_reply_of_another_version(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = f"newer-{uuid.uuid4().hex[:8]}"
    newer = {**protocol.encode(protocol.PlayStopped()), "v": protocol.VERSION + 1}
    async with asyncio.timeout(5):
        answering = asyncio.create_task(answer_once(worker, newer))
        with (
            caplog.at_level(logging.ERROR, logger="calls.workers.link"),
            pytest.raises(CallbridgeError) as refused,
        ):
            await link.request(worker, protocol.PlayStop(call="c-1"))
        await answering
    assert refused.value.code == ErrorCode.MEDIA_BRIDGE_FAILURE
    assert "is newer than this side's" in refused.value.message
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_it_raises_the_workers_error_and_refuses_another_requests_reply() -> None:
    worker = f"odd-{uuid.uuid4().hex[:8]}"
    refusal = protocol.Error(code=ErrorCode.CALL_STATE, message="ended", recoverable=False)
    async with asyncio.timeout(5):
        answering = asyncio.create_task(answer_once(worker, protocol.encode(refusal)))
        with pytest.raises(CallbridgeError) as refused:
            await link.request(worker, protocol.PlayStop(call="c-1"))
        await answering
        assert (refused.value.code, refused.value.message) == (ErrorCode.CALL_STATE, "ended")
        assert refused.value.recoverable is False
        wrong = protocol.encode(protocol.Closed())
        answering = asyncio.create_task(answer_once(worker, wrong))
        with pytest.raises(CallbridgeError, match=r"answered media\.closed"):
            await link.request(worker, protocol.PlayStop(call="c-1"))
        await answering


async def test_it_returns_the_typed_reply_of_a_real_worker() -> None:
    worker = MediaWorker(
        f"typed-{uuid.uuid4().hex[:8]}", configured_layer(), NoReports(), PeerSettings()
    )
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(5):
            stopped = await link.request(worker.name, protocol.PlayStop(call="c-1"))
            recorded = await link.request(
                worker.name, link.record_stop_message("c-1", "r", "x", "y")
            )
        assert stopped == protocol.PlayStopped(request_id=stopped.request_id, call="c-1")
        assert recorded.result is None
    finally:
        task.cancel()
        async with asyncio.timeout(5):
            await asyncio.gather(task, return_exceptions=True)
