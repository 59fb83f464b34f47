"""Echo over /ws/signal and over REST: a 1 kHz tone comes back."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from calls.models import ApiToken, Call, EndUserSession
from tests.support.media_peers import ClientPeer
from tests.support.signal_client import SignalClient

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
async def user_token() -> str:
    _, token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    return token


async def test_it_echoes_a_tone_over_the_websocket(asgi_app: Any, user_token: str) -> None:
    client = SignalClient(asgi_app)
    await client.connect()
    peer = ClientPeer(1000)
    try:
        answer = await client.offer(user_token, await peer.offer(), mode="echo")
        assert answer["sessionId"] and answer["callSid"]
        await peer.accept(answer["data"]["sdp"])
        await peer.wait_connected()
        await client.expect("event", "media.connected")
        heard = await peer.hears(1000)
        assert abs(heard - 1000) < 25
        call = await Call.objects.aget(pk=answer["callSid"])
        assert (call.state, call.mode) == ("active", "echo")
    finally:
        await peer.close()
        await client.close()


async def test_it_echoes_a_tone_over_rest_the_wago_way(asgi_app: Any) -> None:
    from django.test import AsyncClient

    _, token = await sync_to_async(ApiToken.create)("wago-style")
    client = AsyncClient()
    wago = {"token": token}  # AsyncClient passes only per-request headers to ASGI

    async def post(path: str, body: dict[str, Any]) -> Any:
        return await client.post(path, body, content_type="application/json", headers=wago)

    config = (await client.get("/call/webrtc/config", headers=wago)).json()
    assert config["iceServers"] == []
    made = await post("/call/make", {"mode": "echo"})
    assert made.status_code == 201
    call_id = made.json()["callID"]

    peer = ClientPeer(1000)
    try:
        offer_sdp = await peer.offer()  # aiortc gathers every candidate into the SDP
        response = await post(
            "/call/webrtc/offer", {"callID": call_id, "type": "offer", "sdp": offer_sdp}
        )
        assert response.status_code == 200, response.json()
        answer = response.json()
        payload = answer.get("data") or answer  # as WaGo's browser example reads it
        assert payload["type"] == "answer" and answer["turn"] == {
            "enabled": False,
            "status": "not_configured",
        }
        await peer.accept(payload["sdp"])
        await peer.wait_connected()
        assert abs(await peer.hears(1000) - 1000) < 25

        closed = await post("/call/webrtc/close", {"callID": call_id})
        assert closed.status_code == 200
        assert closed.json()["state"] == "active"  # closing media is not hanging up
        assert closed.json()["legs"][0]["mediaState"] == "closed"
        hung_up = await post("/call/hangup", {"callID": call_id})
        assert (hung_up.json()["state"], hung_up.json()["endReason"]) == ("ended", "hangup")
    finally:
        await peer.close()
