"""Property-based fuzzing of /ws/signal (and PolyAI's gateway path) and /ws/operator: every
message type, SDP offers and ICE candidates. For any input: a reply with a contract code
(never HANDLER_ERROR), the socket stays usable, a refused input changes no record, and
nothing leaks.

Example counts are bounded for CI; `CALLBRIDGE_FUZZ_SCALE=N` runs N times as many with
fresh random inputs (see tests/fuzzing.py).
"""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from hypothesis import event, given
from hypothesis import strategies as st

from calls.models import (
    ApiToken,
    Call,
    CallbackRequest,
    CallEvent,
    EndUserSession,
    Leg,
    Recording,
    RecordingConsent,
)
from tests.support.fuzzing import (
    CONTRACT_CODES,
    candidate_lines,
    fuzz_settings,
    json_values,
    mutated_sdp,
    raw_json_texts,
    repeated_media_sections,
    timeout_s,
    weird_text,
)
from tests.support.media_peers import ClientPeer
from tests.support.resources import Resources, settle_to
from tests.support.signal_client import SignalClient, staff_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(timeout_s(120))]

TYPES = [
    "register",
    "offer",
    "ice-candidate",
    "close",
    "hangup",
    "voicemail.start",
    "voicemail.stop",
    "callback.request",
]


def records() -> tuple[int, ...]:
    """Everything a refused message must leave alone."""
    return tuple(
        model.objects.count()
        for model in (Call, Leg, CallEvent, Recording, RecordingConsent, CallbackRequest)
    )


@dataclass
class Socket:
    client: SignalClient
    user_token: str
    operator_token: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    probes: int = 0

    async def exchange(self, frame: str | bytes) -> list[dict[str, Any]]:
        """Send one frame, then a probe whose reply (addressed to the probe's sessionId)
        proves the socket still answers; returns what came back before the probe's reply."""
        await send_frame(self.client.communicator, frame)
        self.probes += 1
        probe = f"probe-{self.probes}"
        await self.client.send({"type": "close", "sessionId": probe})
        replies = []
        while True:
            reply = await self.client.receive(within=10)
            self.seen.append(reply)
            check_well_formed(reply)
            if reply["type"] == "error" and reply["sessionId"] == probe:
                assert reply["data"]["code"] in ("UNAUTHORIZED", "NOT_FOUND"), reply
                return replies
            replies.append(reply)


async def send_frame(communicator: WebsocketCommunicator, frame: str | bytes) -> None:
    """Any frame, empty ones included (send_to refuses those)."""
    key = "bytes" if isinstance(frame, bytes) else "text"
    await communicator.send_input({"type": "websocket.receive", key: frame})


def check_well_formed(reply: dict[str, Any]) -> None:
    assert reply["type"] in ("answer", "event", "error", "ice-candidate"), reply
    assert isinstance(reply.get("sessionId"), str), reply
    if reply["type"] == "error":
        body = reply["data"]
        assert set(body) >= {"code", "message", "recoverable"}, reply
        assert body["code"] in CONTRACT_CODES, reply  # HANDLER_ERROR means a bug
        assert "Traceback" not in body["message"], reply


@pytest.fixture
def no_rate_limits(settings: Any) -> None:
    """Fuzzing sends thousands of messages on one socket; floods are tested elsewhere. The
    socket lives for the whole run, which on a loaded machine outlasts the sign-in deadline
    before a drawn frame happens to sign in (the deadline is tested elsewhere too)."""
    settings.CALLBRIDGE_WS_RATE_LIMIT_IP = settings.CALLBRIDGE_WS_RATE_LIMIT_SOCKET = "100000/min"
    settings.CALLBRIDGE_WS_RATE_LIMIT_PRINCIPAL = "100000/min"
    settings.CALLBRIDGE_WS_SIGN_IN_DEADLINE_S = 3600


async def open_socket(asgi_app: Any, path: str) -> Socket:
    _, user_token = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    _, operator_token = await sync_to_async(ApiToken.create)("fuzz")
    client = SignalClient(asgi_app, path)
    await client.connect()
    return Socket(client, user_token, operator_token)


@pytest.fixture
async def socket(asgi_app: Any, no_rate_limits: None) -> AsyncIterator[Socket]:
    opened = await open_socket(asgi_app, "/ws/signal")
    yield opened
    await opened.client.close()


@pytest.fixture
async def gateway_socket(asgi_app: Any, no_rate_limits: None) -> AsyncIterator[Socket]:
    opened = await open_socket(asgi_app, "/api/v1/webrtc/signal")
    yield opened
    await opened.client.close()


# --- every message type, any field --------------------------------------------------------
def token_like() -> st.SearchStrategy[str]:
    return st.builds(
        lambda kind, rest: f"{kind}_{rest}",
        st.sampled_from(["cbs", "cbk", "cbx"]),
        st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=80),
    )


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Plausible values three times in four, anything at all otherwise: deep enough to get
    past the first check, wide enough to try every branch of it."""
    anything = st.one_of(weird_text, json_values)
    return st.integers(0, 3).flatmap(lambda pick: valid if pick else anything)


def envelopes(user_token: str, operator_token: str) -> st.SearchStrategy[dict[str, Any]]:
    uuids = st.uuids().map(str)
    data = mostly(
        st.fixed_dictionaries(
            {},
            optional={
                "type": mostly(st.sampled_from(["offer", "answer"])),
                "sdp": mostly(st.text(max_size=200).map(lambda t: "v=0\r\n" + t)),
                "candidate": mostly(st.one_of(candidate_lines(), st.just(""))),
                "sdpMid": mostly(st.sampled_from(["0", "1", "audio", None])),
                "sdpMLineIndex": mostly(st.one_of(st.integers(-3, 70), st.none())),
            },
        )
    )
    return st.fixed_dictionaries(
        {"type": mostly(st.sampled_from(TYPES))},
        optional={
            "sessionId": mostly(st.one_of(st.just(""), uuids)),
            "authToken": mostly(
                st.one_of(st.sampled_from([user_token, operator_token]), token_like())
            ),
            "data": data,
            "callSid": mostly(uuids),
            "mode": mostly(st.sampled_from(["bridge", "echo"])),
            "caller": mostly(st.text(max_size=20)),
            "callee": mostly(st.text(max_size=20)),
            "note": mostly(st.text(max_size=600)),
        },
    )


@pytest.mark.slow
@given(st.data())
@fuzz_settings(examples=300)
async def test_it_survives_any_message_on_the_signal_socket(
    socket: Socket, data: st.DataObject
) -> None:
    frame = data.draw(
        st.one_of(
            envelopes(socket.user_token, socket.operator_token).map(json.dumps),
            raw_json_texts(),
            st.binary(max_size=64),
        )
    )
    before = await sync_to_async(records)()
    replies = await socket.exchange(frame)
    # Nothing here carries a usable SDP, a real call or a real leg: no record may change.
    assert await sync_to_async(records)() == before, (frame, replies)
    for reply in replies:
        event(reply["data"].get("code") or reply["data"].get("name"))
        assert reply["type"] in ("error", "event"), reply
        if reply["type"] == "event":
            assert reply["data"]["name"] == "registered", reply


def gateway_envelopes(user_token: str, operator_token: str) -> st.SearchStrategy[dict[str, Any]]:
    """The same, with PolyAI's modes and the fields its gateway keeps."""
    names = st.text(max_size=120)
    polyai = st.fixed_dictionaries(
        {},
        optional={
            "mode": mostly(st.sampled_from(["end-to-end", "traditional", "echo"])),
            "callSid": mostly(names),
            "accountId": mostly(names),
            "projectId": mostly(names),
            "variantId": mostly(names),
            "agentVersionOverride": mostly(
                st.dictionaries(names, st.one_of(names, st.integers(), st.none()), max_size=10)
            ),
        },
    )
    return st.builds(
        lambda base, extra: {**base, **extra}, envelopes(user_token, operator_token), polyai
    )


@given(st.data())
@fuzz_settings(examples=150)
async def test_it_survives_any_message_on_the_gateway_path(
    gateway_socket: Socket, data: st.DataObject
) -> None:
    socket = gateway_socket
    frame = data.draw(
        st.one_of(
            gateway_envelopes(socket.user_token, socket.operator_token).map(json.dumps),
            raw_json_texts(),
        )
    )
    before = await sync_to_async(records)()
    replies = await socket.exchange(frame)
    assert await sync_to_async(records)() == before, (frame, replies)
    for reply in replies:
        event(reply["data"].get("code") or reply["data"].get("name"))
        assert reply["type"] in ("error", "event"), reply


async def test_it_leaks_nothing_after_fuzzed_messages(socket: Socket) -> None:
    """The process's peer connections, tasks and UDP sockets around a burst of the same
    kind of frames (the hypothesis test above checks the records per frame)."""
    frames: list[str | bytes] = []
    strategy = st.one_of(
        envelopes(socket.user_token, socket.operator_token).map(json.dumps),
        raw_json_texts(),
        st.binary(max_size=64),
    )

    @given(frame=strategy)
    @fuzz_settings(examples=100)
    def collect(frame: str | bytes) -> None:
        frames.append(frame)

    collect()
    baseline = Resources.now()
    for frame in frames:
        await socket.exchange(frame)
    assert await settle_to(baseline) == baseline


@pytest.fixture
async def operator_socket(
    asgi_app: Any, no_rate_limits: None
) -> AsyncIterator[WebsocketCommunicator]:
    cookie = await sync_to_async(staff_cookie)()
    communicator = WebsocketCommunicator(
        asgi_app,
        "/ws/operator",
        headers=[
            (b"origin", b"http://localhost"),
            (b"host", b"localhost"),
            (b"cookie", cookie.encode()),
        ],
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert json.loads(await communicator.receive_from(timeout=5))["type"] == "snapshot"
    yield communicator
    await communicator.disconnect(timeout=5)


@given(frame=st.one_of(raw_json_texts(), st.binary(max_size=64)))
@fuzz_settings(examples=60)
async def test_it_survives_any_message_on_the_operator_socket(
    operator_socket: WebsocketCommunicator, frame: str | bytes
) -> None:
    before = await sync_to_async(records)()
    await send_frame(operator_socket, frame)
    reply = json.loads(await operator_socket.receive_from(timeout=5))
    assert reply["type"] == "error" and reply["data"]["code"] == "INVALID_MESSAGE", reply
    assert await sync_to_async(records)() == before


# --- SDP offers ------------------------------------------------------------------------------
def media_peers() -> int:
    from calls.background import background_tasks

    return background_tasks.get("media-worker").peer_count


async def closed_and_released(call_id: str, peers_before: int, within_s: float = 5.0) -> None:
    """After `call.ended` the worker closes the leg's peer and reports it (`media.closed`,
    a record of its own, a moment later): wait for both, so the next example's `before`
    is not taken while this one's last record is on its way — and fail if the peer stays."""

    def leg_open() -> bool:
        return (
            Leg.objects.filter(call_id=call_id)
            .exclude(media_state__in=["closed", "failed"])
            .exists()
        )

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while media_peers() != peers_before or await sync_to_async(leg_open)():
        if loop.time() > deadline:
            raise AssertionError(f"call {call_id}: {media_peers()} peers, leg still open")
        await asyncio.sleep(0.02)


@pytest.fixture
async def real_offer() -> str:
    peer = ClientPeer(440)
    sdp = await peer.offer()
    await peer.close()
    return sdp


async def next_reply(client: SignalClient) -> dict[str, Any]:
    """The next answer or error (events of earlier calls are checked and skipped)."""
    while True:
        reply = await client.receive(within=15)
        check_well_formed(reply)
        if reply["type"] != "event":
            return reply


@given(st.data())
@fuzz_settings(examples=40)
async def test_it_answers_or_refuses_any_sdp_offer(
    socket: Socket, real_offer: str, data: st.DataObject
) -> None:
    sdp = data.draw(st.one_of(mutated_sdp(real_offer), repeated_media_sections(real_offer)))
    before, peers_before = await sync_to_async(records)(), media_peers()
    offer = {"type": "offer", "sessionId": "", "authToken": socket.user_token, "mode": "echo"}
    await socket.client.send({**offer, "data": {"type": "offer", "sdp": sdp}})
    reply = await next_reply(socket.client)
    event(reply["data"].get("code", reply["type"]))
    if reply["type"] == "error":
        # A bad offer is the client's fault: never the bridge's (MEDIA_BRIDGE_FAILURE).
        assert reply["data"]["code"] in ("INVALID_ARGUMENT", "INVALID_MESSAGE"), (sdp, reply)
        assert await sync_to_async(records)() == before, sdp
        assert media_peers() == peers_before, sdp
        return
    assert reply["type"] == "answer", reply
    assert reply["data"]["sdp"].startswith("v=0"), reply
    await socket.client.send({"type": "hangup", "sessionId": reply["sessionId"]})
    await socket.client.expect("event", "call.ended")
    await closed_and_released(reply["callSid"], peers_before)


async def test_it_leaks_nothing_after_fuzzed_offers(socket: Socket, real_offer: str) -> None:
    """The resource counters around a short burst of the same offers (the hypothesis test
    above checks the worker's own count per example; this one checks the process)."""
    baseline = Resources.now()
    strategy = st.one_of(mutated_sdp(real_offer), repeated_media_sections(real_offer))

    @given(sdp=strategy)
    @fuzz_settings(examples=15)
    def collect(sdp: str) -> None:
        offers.append(sdp)

    offers: list[str] = []
    collect()
    offer = {"type": "offer", "sessionId": "", "authToken": socket.user_token, "mode": "echo"}
    for sdp in offers:
        await socket.client.send({**offer, "data": {"type": "offer", "sdp": sdp}})
        reply = await next_reply(socket.client)
        if reply["type"] == "answer":
            await socket.client.send({"type": "hangup", "sessionId": reply["sessionId"]})
            await socket.client.expect("event", "call.ended")
    assert await settle_to(baseline) == baseline


# --- ICE candidates for a live leg -----------------------------------------------------------
PROBE_CANDIDATE = "candidate:1 1 sctp 1 127.0.0.1 9 typ host"  # always refused by the worker


@pytest.fixture
async def echo_leg(socket: Socket) -> AsyncIterator[tuple[str, ClientPeer]]:
    """A connected echo call; after the fuzzing, it must still echo the caller's tone."""
    peer = ClientPeer(440)
    try:
        answer = await socket.client.offer(socket.user_token, await peer.offer(), mode="echo")
        await peer.accept(answer["data"]["sdp"])
        await peer.wait_connected()
        await socket.client.expect("event", "media.connected")  # recorded: records settle
        yield answer["sessionId"], peer
        await peer.hears(440)  # the leg survived every candidate thrown at it
    finally:
        await peer.close()


@given(
    data=st.fixed_dictionaries(
        {},
        optional={
            "candidate": mostly(st.one_of(candidate_lines(), candidate_lines(), st.just(""))),
            "sdpMid": mostly(st.sampled_from(["0", "1", "", None])),
            "sdpMLineIndex": mostly(st.one_of(st.integers(-3, 70), st.none())),
        },
    )
)
@fuzz_settings(examples=150)
async def test_it_takes_or_refuses_any_candidate_for_a_live_leg(
    socket: Socket, echo_leg: tuple[str, ClientPeer], data: dict[str, Any]
) -> None:
    leg, _ = echo_leg
    before = await sync_to_async(records)()
    await socket.client.send({"type": "ice-candidate", "sessionId": leg, "data": data})
    probe = {"candidate": PROBE_CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}
    await socket.client.send({"type": "ice-candidate", "sessionId": leg, "data": probe})
    # Replies: at most one for the fuzzed candidate, then exactly one for the probe (worker
    # messages of one call are handled in order).
    while True:
        reply = await next_reply(socket.client)
        event(reply["data"].get("code", reply["type"]))
        assert reply["type"] == "error", reply
        assert reply["data"]["code"] in ("INVALID_ARGUMENT", "INVALID_MESSAGE"), (data, reply)
        if reply["data"]["message"] == "unsupported candidate transport":
            break
    assert await sync_to_async(records)() == before


# --- regressions found by the fuzzing above --------------------------------------------------
def test_it_gives_media_sections_without_a_direction_the_default() -> None:
    from calls.media.peer import with_explicit_directions

    sdp = (
        "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"
        "m=video 9 X 97\r\na=recvonly\r\n"
    )
    assert with_explicit_directions(sdp) == (
        "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendrecv\r\n"
        "m=video 9 X 97\r\na=recvonly\r\n"
    )
    session_level = "v=0\na=sendonly\nm=audio 9 X 96\na=mid:0"
    assert with_explicit_directions(session_level) == session_level + "\na=sendonly"
    assert with_explicit_directions("v=0\r\n") == "v=0\r\n"


async def test_it_answers_an_offer_without_a_direction_attribute(
    socket: Socket, real_offer: str
) -> None:
    """Fuzzing found: an offer with no a=sendrecv line (sendrecv by default, RFC 4566) made
    aiortc fail in createAnswer: MEDIA_BRIDGE_FAILURE and a traceback in the log."""
    peer = ClientPeer(440)
    try:
        sdp = (await peer.offer()).replace("a=sendrecv\r\n", "")
        assert "a=sendrecv" not in sdp
        answer = await socket.client.offer(socket.user_token, sdp, mode="echo")
        await peer.accept(answer["data"]["sdp"])
        await peer.hears(440)
    finally:
        await peer.close()
