"""Caps on open calls, legs with media, sockets and lobby sessions (RATE_LIMITED, nothing
else changes), and the sign-in deadline of unauthenticated sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from calls.models import ApiToken, Call, CallEvent, EndUserSession, Leg
from tests.support.media_peers import ClientPeer
from tests.support.rest_client import assert_error, bearer_client
from tests.support.signal_client import SignalClient, staff_cookie

pytestmark = [pytest.mark.django_db(transaction=True)]


def rows() -> tuple[int, int, int]:
    return Call.objects.count(), Leg.objects.count(), CallEvent.objects.count()


def media_peers() -> int:
    from calls.background import background_tasks

    return background_tasks.get("media-worker").peer_count


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (polling another component's count)
            await asyncio.sleep(0.05)


@pytest.fixture
async def offer_sdp() -> str:
    """A real aiortc offer (each time it is sent, the worker makes a new peer for it)."""
    peer = ClientPeer(440)
    sdp = await peer.offer()
    await peer.close()
    return sdp


@pytest.fixture
async def user_token() -> str:
    _, token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    return token


def offer(token: str, sdp: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "offer",
        "sessionId": "",
        "authToken": token,
        "data": {"type": "offer", "sdp": sdp},
        **fields,
    }


def assert_over_limit(message: dict[str, Any], limit: str, maximum: int) -> None:
    assert message["type"] == "error", message
    error = message["data"]
    assert error["code"] == "RATE_LIMITED", error
    assert error["details"] == {"limit": limit, "max": maximum}, error


# --- open calls ------------------------------------------------------------------------------
async def test_it_caps_one_sessions_open_calls_over_the_websocket(
    asgi_app: Any, settings: Any, user_token: str, offer_sdp: str
) -> None:
    settings.CALLBRIDGE_LIMIT_OPEN_CALLS_PER_SESSION = 2
    settings.CALLBRIDGE_LIMIT_ECHO_CALLS = 10
    client = SignalClient(asgi_app)
    await client.connect()
    try:
        for _ in range(2):
            await client.offer(user_token, offer_sdp, mode="echo")
        before, peers = await sync_to_async(rows)(), media_peers()
        assert peers == 2
        await client.send(offer(user_token, offer_sdp, mode="echo"))
        assert_over_limit(await client.receive(), "openCallsPerSession", 2)
        await client.nothing_more()
        assert await sync_to_async(rows)() == before
        assert media_peers() == peers
    finally:
        await client.close()


async def test_it_caps_echo_calls_over_rest_and_changes_nothing(
    asgi_app: Any, settings: Any, user_token: str
) -> None:
    settings.CALLBRIDGE_LIMIT_ECHO_CALLS = 2
    client = bearer_client(user_token)

    def place() -> Any:
        return client.post("/api/calls", {"mode": "echo"}, format="json")

    for _ in range(2):
        assert (await sync_to_async(place)()).status_code == 201
    before = await sync_to_async(rows)()
    body = assert_error(await sync_to_async(place)(), 429, "RATE_LIMITED")
    assert body["details"] == {"limit": "echoCalls", "max": 2}
    assert await sync_to_async(rows)() == before
    assert media_peers() == 0


async def test_it_keeps_offers_at_the_same_instant_within_the_cap(
    asgi_app: Any, settings: Any, user_token: str, offer_sdp: str
) -> None:
    settings.CALLBRIDGE_LIMIT_OPEN_CALLS_PER_SESSION = 2
    settings.CALLBRIDGE_LIMIT_ECHO_CALLS = 10
    clients = [SignalClient(asgi_app) for _ in range(6)]
    for client in clients:
        await client.connect()
    try:
        await asyncio.gather(
            *(client.send(offer(user_token, offer_sdp, mode="echo")) for client in clients)
        )
        replies = [await client.receive(within=15) for client in clients]
        answered = [reply for reply in replies if reply["type"] == "answer"]
        refused = [reply for reply in replies if reply["type"] != "answer"]
        assert len(answered) == 2, replies
        for reply in refused:
            assert_over_limit(reply, "openCallsPerSession", 2)
        assert await Call.objects.open().acount() == 2
        assert await Leg.objects.acount() == 2
        await until(lambda: media_peers() == 2)  # refused at commit: the worker's peer goes
    finally:
        for client in clients:
            await client.close()


# --- legs with media -------------------------------------------------------------------------
async def test_it_caps_an_api_tokens_legs_with_media(
    asgi_app: Any, settings: Any, offer_sdp: str
) -> None:
    from django.test import AsyncClient

    settings.CALLBRIDGE_LIMIT_MEDIA_LEGS_PER_OPERATOR = 1
    _, token = await sync_to_async(ApiToken.create)("wago-style")
    client = AsyncClient()
    wago = {"token": token}

    async def post(path: str, body: dict[str, Any]) -> Any:
        return await client.post(path, body, content_type="application/json", headers=wago)

    first = (await post("/call/make", {"mode": "echo"})).json()["callID"]
    second = (await post("/call/make", {"mode": "echo"})).json()["callID"]
    answer = await post("/call/webrtc/offer", {"callID": first, "type": "offer", "sdp": offer_sdp})
    assert answer.status_code == 200, answer.json()
    before, peers = await sync_to_async(rows)(), media_peers()
    refused = await post(
        "/call/webrtc/offer", {"callID": second, "type": "offer", "sdp": offer_sdp}
    )
    body = assert_error(refused, 429, "RATE_LIMITED")
    assert body["details"] == {"limit": "mediaLegsPerOperator", "max": 1}
    assert await sync_to_async(rows)() == before
    assert media_peers() == peers == 1
    leg = await Leg.objects.aget(call_id=second)
    assert leg.media_state == "new"
    # The leg that has media may reconnect (its own peer is replaced, not added).
    again = await post("/call/webrtc/offer", {"callID": first, "type": "offer", "sdp": offer_sdp})
    assert again.status_code == 200, again.json()


async def test_it_keeps_an_api_tokens_offers_at_the_same_instant_within_its_legs_cap(
    asgi_app: Any, settings: Any, offer_sdp: str
) -> None:
    settings.CALLBRIDGE_LIMIT_MEDIA_LEGS_PER_OPERATOR = 1
    api_token, token = await sync_to_async(ApiToken.create)("crm")
    operator = bearer_client(token)

    def make_echo_call() -> str:
        return operator.post("/api/calls", {"mode": "echo"}, format="json").json()["callID"]

    call_ids = [await sync_to_async(make_echo_call)() for _ in range(2)]
    clients = [SignalClient(asgi_app) for _ in call_ids]
    for client in clients:
        await client.connect()
    try:
        await asyncio.gather(
            *(
                client.send(offer(token, offer_sdp, callSid=call_id))
                for client, call_id in zip(clients, call_ids, strict=True)
            )
        )
        replies = [await client.receive(within=15) for client in clients]
        assert sorted(reply["type"] for reply in replies) == ["answer", "error"], replies
        assert_over_limit(
            next(r for r in replies if r["type"] == "error"), "mediaLegsPerOperator", 1
        )
        with_media = Leg.objects.filter(api_token=api_token).exclude(media_state="new")
        assert await with_media.acount() == 1
        await until(lambda: media_peers() == 1)
    finally:
        for client in clients:
            await client.close()


# --- sockets ---------------------------------------------------------------------------------
def from_ip(application: Any, ip: str) -> SignalClient:
    client = SignalClient(application)
    client.communicator.scope["client"] = (ip, 50000)
    return client


def register(token: str) -> dict[str, Any]:
    return {"type": "register", "sessionId": "", "authToken": token}


async def test_it_caps_sockets_per_credential(
    asgi_app: Any, settings: Any, user_token: str
) -> None:
    settings.CALLBRIDGE_LIMIT_SOCKETS_PER_CREDENTIAL = 2
    clients = [from_ip(asgi_app, f"127.0.0.{n}") for n in (11, 12, 13)]
    for client in clients:
        await client.connect()
    try:
        for client in clients[:2]:
            await client.send(register(user_token))
            await client.expect("event", "registered")
        await clients[2].send(register(user_token))
        assert_over_limit(await clients[2].receive(), "socketsPerCredential", 2)
        await clients[2].send(register(user_token))  # still refused: not signed in
        assert_over_limit(await clients[2].receive(), "socketsPerCredential", 2)
        await clients[0].close()
        await asyncio.sleep(0.1)  # the server handles the close
        await clients[2].send(register(user_token))
        await clients[2].expect("event", "registered")
    finally:
        for client in clients[1:]:
            await client.close()


async def test_it_caps_sockets_per_address_on_both_paths(asgi_app: Any, settings: Any) -> None:
    settings.CALLBRIDGE_LIMIT_SOCKETS_PER_IP = 2
    signal = from_ip(asgi_app, "127.0.0.21")
    await signal.connect()
    cookie = await sync_to_async(staff_cookie)()
    headers = [
        (b"host", b"localhost"),
        (b"origin", b"http://localhost"),
        (b"cookie", cookie.encode()),
    ]
    feeds = [WebsocketCommunicator(asgi_app, "/ws/operator", headers=headers) for _ in range(2)]
    for feed in feeds:
        feed.scope["client"] = ("127.0.0.21", 50000)
        assert (await feed.connect(timeout=5))[0]
    try:
        assert json.loads(await feeds[0].receive_from(timeout=5))["type"] == "snapshot"
        assert_over_limit(
            json.loads(await feeds[1].receive_from(timeout=5)), "socketsPerAddress", 2
        )
        assert await feeds[1].receive_output(timeout=5) == {
            "type": "websocket.close",
            "code": 4429,
        }
        elsewhere = from_ip(asgi_app, "127.0.0.22")  # another address is not affected
        await elsewhere.connect()
        await elsewhere.nothing_more()
        await elsewhere.close()
    finally:
        await feeds[0].disconnect(timeout=5)
        await signal.close()


async def test_it_caps_operator_feed_sockets_per_staff_user(asgi_app: Any, settings: Any) -> None:
    settings.CALLBRIDGE_LIMIT_SOCKETS_PER_CREDENTIAL = 1
    cookie = await sync_to_async(staff_cookie)()
    headers = [
        (b"host", b"localhost"),
        (b"origin", b"http://localhost"),
        (b"cookie", cookie.encode()),
    ]
    feeds = [WebsocketCommunicator(asgi_app, "/ws/operator", headers=headers) for _ in range(2)]
    for n, feed in enumerate(feeds):
        feed.scope["client"] = (f"127.0.0.{31 + n}", 50000)
        assert (await feed.connect(timeout=5))[0]
    try:
        assert json.loads(await feeds[0].receive_from(timeout=5))["type"] == "snapshot"
        refused = json.loads(await feeds[1].receive_from(timeout=5))
        assert_over_limit(refused, "socketsPerCredential", 1)
    finally:
        for feed in feeds:
            await feed.disconnect(timeout=5)


async def test_it_keeps_a_signed_in_socket_past_the_sign_in_deadline(
    asgi_app: Any, settings: Any, user_token: str
) -> None:
    settings.CALLBRIDGE_WS_SIGN_IN_DEADLINE_S = 0.3
    signed_in, idle = from_ip(asgi_app, "127.0.0.41"), from_ip(asgi_app, "127.0.0.41")
    await signed_in.connect()
    await idle.connect()
    try:
        await signed_in.send(register(user_token))
        await signed_in.expect("event", "registered")
        closing = await idle.receive(within=5)
        assert closing["data"]["code"] == "UNAUTHORIZED", closing
        assert await idle.communicator.receive_output(timeout=5) == {
            "type": "websocket.close",
            "code": 4401,
        }
        await signed_in.nothing_more(within=0.5)
        await signed_in.send(register(user_token))
        await signed_in.expect("event", "registered")
    finally:
        await signed_in.close()


# --- lobby -----------------------------------------------------------------------------------
def test_it_caps_new_lobby_sessions_per_address(settings: Any) -> None:
    settings.CALLBRIDGE_PUBLIC_LOBBY = True
    settings.CALLBRIDGE_LIMIT_LOBBY_SESSIONS_PER_IP = "2/hour"
    visitors = [Client(REMOTE_ADDR="127.0.0.51") for _ in range(3)]
    first = visitors[0].get("/talk/")
    assert first.status_code == 302
    assert visitors[1].get("/talk/").status_code == 302
    assert EndUserSession.objects.count() == 2
    refused = visitors[2].get("/talk/")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert EndUserSession.objects.count() == 2
    # A returning visitor gets their own session back, without a new one.
    again = visitors[0].get("/talk/")
    assert (again.status_code, again["Location"]) == (302, first["Location"])
    assert EndUserSession.objects.count() == 2
    assert Client(REMOTE_ADDR="127.0.0.52").get("/talk/").status_code == 302
