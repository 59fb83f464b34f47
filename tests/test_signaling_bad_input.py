"""Bad signaling input: each gets its code, the socket stays usable, nothing changes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from calls.models import Call, CallEvent, EndUserSession, Leg, Queue
from calls.principals import Principal
from tests.support.media_peers import ClientPeer
from tests.support.resources import open_peer_connections
from tests.support.signal_client import SignalClient

pytestmark = [pytest.mark.django_db(transaction=True)]


def make_user(name: str) -> tuple[EndUserSession, str]:
    return EndUserSession.create(ttl_seconds=600, display_name=name)


def others_call() -> str:
    bob, _ = make_user("Bob")
    return str(Call.start(by=Principal.end_user(bob), mode="bridge", media_worker="embedded").pk)


def counts() -> tuple[int, int, int]:
    return Call.objects.count(), Leg.objects.count(), CallEvent.objects.count()


@pytest.fixture
async def ada(asgi_app: Any) -> AsyncIterator[tuple[SignalClient, str]]:
    _, token = await sync_to_async(make_user)("Ada")
    client = SignalClient(asgi_app)
    await client.connect()
    yield client, token
    await client.close()


async def offer_sdp(**peer_setup: Any) -> str:
    peer = ClientPeer(440)
    if peer_setup.get("video"):
        peer.pc.addTransceiver("video", direction="sendrecv")
    sdp = await peer.offer()
    await peer.close()
    return sdp


def offer(token: str | None, sdp: str, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "offer",
        "sessionId": "",
        "data": {"type": "offer", "sdp": sdp},
    }
    if token is not None:
        message["authToken"] = token
    return {**message, **fields}


SDP_PLACEHOLDER = "<a real offer>"
PCMU_ONLY = "<a real offer with Opus removed>"

CASES: list[tuple[str, Any, str]] = [
    ("not JSON", "{nope", "INVALID_MESSAGE"),
    ("not an object", "[1, 2, 3]", "INVALID_MESSAGE"),
    ("no type", {"sessionId": ""}, "INVALID_MESSAGE"),
    ("unknown type", {"type": "teleport", "sessionId": ""}, "INVALID_MESSAGE"),
    ("sessionId not a string", {"type": "close", "sessionId": 7}, "INVALID_MESSAGE"),
    ("missing token", offer(None, SDP_PLACEHOLDER), "UNAUTHORIZED"),
    ("wrong token", offer("cbs_" + "x" * 50, SDP_PLACEHOLDER), "UNAUTHORIZED"),
    ("token of the wrong type", offer(["list"], SDP_PLACEHOLDER), "UNAUTHORIZED"),
    (
        "offer without data",
        {"type": "offer", "sessionId": "", "authToken": "TOKEN"},
        "INVALID_MESSAGE",
    ),
    (
        "offer without sdp",
        {"type": "offer", "authToken": "TOKEN", "data": {"type": "offer"}},
        "INVALID_MESSAGE",
    ),
    ("unknown mode", offer("TOKEN", SDP_PLACEHOLDER, mode="karaoke"), "INVALID_ARGUMENT"),
    (
        "answer instead of offer",
        offer("TOKEN", SDP_PLACEHOLDER) | {"data": {"type": "answer", "sdp": "v=0"}},
        "INVALID_ARGUMENT",
    ),
    ("text that is not SDP", offer("TOKEN", "hello, server"), "INVALID_ARGUMENT"),
    (
        "SDP garbage after v=0",
        offer("TOKEN", "v=0\r\nm=audio banana\r\nx=?\r\n"),
        "INVALID_ARGUMENT",
    ),
    ("SDP without Opus", offer("TOKEN", PCMU_ONLY), "INVALID_ARGUMENT"),
    ("someone else's callSid", offer("TOKEN", SDP_PLACEHOLDER, callSid="OTHERS_CALL"), "FORBIDDEN"),
    (
        "unknown callSid",
        offer("TOKEN", SDP_PLACEHOLDER, callSid="5f0e6f04-6a3a-4d7c-9a55-3a4c0d1e2f3a"),
        "NOT_FOUND",
    ),
    ("callSid not an id", offer("TOKEN", SDP_PLACEHOLDER, callSid="call-123"), "NOT_FOUND"),
    ("unknown queue", offer("TOKEN", SDP_PLACEHOLDER, queue="nope"), "NOT_FOUND"),
    ("queue not a string", offer("TOKEN", SDP_PLACEHOLDER, queue=["sales"]), "INVALID_MESSAGE"),
    (
        "queue on an echo call",
        offer("TOKEN", SDP_PLACEHOLDER, mode="echo", queue="default"),
        "INVALID_ARGUMENT",
    ),
    (
        "candidate before signing in",
        {
            "type": "ice-candidate",
            "sessionId": "5f0e6f04-6a3a-4d7c-9a55-3a4c0d1e2f3a",
            "data": {"candidate": ""},
        },
        "UNAUTHORIZED",
    ),
    ("hangup without ids", {"type": "hangup", "sessionId": ""}, "INVALID_MESSAGE"),
    ("oversize message", offer("TOKEN", "v=0" + "a" * 70_000), "INVALID_MESSAGE"),
]


@pytest.mark.parametrize(("case", "message", "code"), CASES, ids=[c[0] for c in CASES])
async def test_it_answers_bad_messages_and_stays_usable(
    ada: tuple[SignalClient, str], case: str, message: Any, code: str
) -> None:
    client, token = ada
    sdp = await offer_sdp()
    text = message if isinstance(message, str) else json.dumps(message)
    text = text.replace("TOKEN", token).replace(SDP_PLACEHOLDER, sdp.replace("\r\n", "\\r\\n"))
    if PCMU_ONLY in text:
        no_opus = "\r\n".join(
            line for line in sdp.split("\r\n") if "opus" not in line.lower()
        ).replace(" 96 0 8", " 0 8")
        text = text.replace(PCMU_ONLY, no_opus.replace("\r\n", "\\r\\n"))
    if "OTHERS_CALL" in text:
        text = text.replace("OTHERS_CALL", await sync_to_async(others_call)())
    before = await sync_to_async(counts)()
    pcs_before = open_peer_connections()

    await client.send(text)
    reply = await client.receive()
    assert reply["type"] == "error", reply
    assert reply["data"]["code"] == code, reply
    assert set(reply["data"]) >= {"code", "message", "recoverable"}
    assert "Traceback" not in json.dumps(reply)

    assert await sync_to_async(counts)() == before
    assert open_peer_connections() == pcs_before
    await client.send({"type": "register", "sessionId": "", "authToken": token})
    assert (await client.expect("event", "registered"))["data"]["role"] == "user"


async def test_it_refuses_binary_frames(ada: tuple[SignalClient, str]) -> None:
    client, _ = ada
    await client.communicator.send_to(bytes_data=b"\x00\x01")
    assert (await client.receive())["data"]["code"] == "INVALID_MESSAGE"


async def test_it_refuses_candidates_for_unknown_or_foreign_sessions(
    ada: tuple[SignalClient, str],
) -> None:
    client, token = ada
    await client.send({"type": "register", "sessionId": "", "authToken": token})
    await client.expect("event", "registered")
    candidate = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", "sdpMid": "0"}
    for session_id, code in [
        ("5f0e6f04-6a3a-4d7c-9a55-3a4c0d1e2f3a", "NOT_FOUND"),
        ("not-a-session", "NOT_FOUND"),
    ]:
        await client.send({"type": "ice-candidate", "sessionId": session_id, "data": candidate})
        reply = await client.receive()
        assert (reply["type"], reply["data"]["code"], reply["sessionId"]) == (
            "error",
            code,
            session_id,
        )
    call_id = await sync_to_async(others_call)()
    bobs_leg = await sync_to_async(lambda: str(Leg.objects.get(call_id=call_id).pk))()
    await client.send({"type": "ice-candidate", "sessionId": bobs_leg, "data": candidate})
    assert (await client.receive())["data"]["code"] == "FORBIDDEN"
    await client.send({"type": "close", "sessionId": bobs_leg})
    assert (await client.receive())["data"]["code"] == "FORBIDDEN"
    await client.send({"type": "hangup", "callSid": call_id})
    assert (await client.receive())["data"]["code"] == "FORBIDDEN"
    assert (await Call.objects.aget(pk=call_id)).state == "ringing"


async def test_it_refuses_a_malformed_candidate_for_a_real_leg(
    ada: tuple[SignalClient, str],
) -> None:
    client, token = ada
    peer = ClientPeer(440)
    try:
        answer = await client.offer(token, await peer.offer(), mode="echo")
        await client.send(
            {
                "type": "ice-candidate",
                "sessionId": answer["sessionId"],
                "data": {"candidate": "candidate:garbage", "sdpMid": "0"},
            }
        )
        reply = await client.expect("error")
        assert reply["data"]["code"] == "INVALID_ARGUMENT"
        assert reply["sessionId"] == answer["sessionId"]
        await peer.accept(answer["data"]["sdp"])
        await peer.wait_connected()  # the leg is unharmed
    finally:
        await peer.close()


async def test_it_puts_an_offered_call_in_the_queue_it_names(
    ada: tuple[SignalClient, str],
) -> None:
    client, token = ada
    await Queue.objects.acreate(name="Sales", public_id="sales")
    peer = ClientPeer(440)
    try:
        answer = await client.offer(token, await peer.offer(), queue="sales")
        call = await Call.objects.select_related("queue").aget(pk=answer["callSid"])
        assert call.queue is not None and call.queue.public_id == "sales"
        assert call.queued_at is not None
    finally:
        await peer.close()


async def test_it_answers_video_inactive(ada: tuple[SignalClient, str]) -> None:
    client, token = ada
    peer = ClientPeer(440)
    peer.pc.addTransceiver("video", direction="sendrecv")
    try:
        answer = await client.offer(token, await peer.offer(), mode="echo")
        sdp = answer["data"]["sdp"]
        video = sdp[sdp.index("m=video") :]
        assert "a=inactive" in video
        audio = sdp[sdp.index("m=audio") : sdp.index("m=video")]
        assert "opus/48000/2" in audio and "PCMU" not in audio and "a=sendrecv" in audio
    finally:
        await peer.close()


async def test_it_refuses_an_offer_with_no_audio(ada: tuple[SignalClient, str]) -> None:
    client, token = ada
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        await client.send(offer(token, pc.localDescription.sdp, mode="echo"))
        reply = await client.receive()
        assert reply["data"]["code"] == "INVALID_ARGUMENT" and "audio" in reply["data"]["message"]
    finally:
        await pc.close()


@pytest.mark.parametrize(
    ("path", "origin", "accepted"),
    [
        ("/ws/signal", None, True),  # a backend or SDK client: no Origin header
        ("/ws/signal", "http://localhost", True),
        ("/ws/signal", "https://evil.example.net", False),
        ("/ws/operator", "https://evil.example.net", False),
        ("/ws/operator", "http://localhost", False),  # no staff login
        ("/ws/nothing", None, False),
    ],
)
async def test_it_checks_origins_and_logins(
    asgi_app: Any, path: str, origin: str | None, accepted: bool
) -> None:
    headers = [(b"origin", origin.encode()), (b"host", b"localhost")] if origin else []
    communicator = WebsocketCommunicator(asgi_app, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected is accepted
    await communicator.disconnect(timeout=5)
