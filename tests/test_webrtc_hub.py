"""Voisnap's drop-in: POST /api/v1/webrtc/sessions, the WebRtcHub's negotiate (CORS) and the
hub itself (SignalR JSON protocol) in front of /ws/signal's call logic."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import AsyncClient

from calls import calling
from calls.consumers.webrtc_hub import WebRtcHubConsumer
from calls.errors import CallStateError
from calls.models import ApiToken, Call, CallEvent, EndUserSession
from calls.principals import Principal
from tests.support.hub_client import RS, HubClient
from tests.support.media_peers import ClientPeer
from tests.support.queues import make_queue
from tests.support.rest_client import bearer_client

pytestmark = [pytest.mark.django_db(transaction=True)]

PAGE = "http://127.0.0.2:8123"  # an integrator's page on another origin


def _create(token: str, body: Any) -> Any:
    return bearer_client(token).post("/api/v1/webrtc/sessions", body, format="json")


@pytest.fixture
def key() -> str:
    return ApiToken.create("voisnap-migrant")[1]


async def _session(key: str, agent: str = "echo") -> str:
    response = await sync_to_async(_create)(key, {"agentId": agent})
    assert response.status_code == 201, response.json()
    return response.json()["sessionToken"]


def test_it_creates_a_session_for_an_agent_with_turn_ending_with_it(
    key: str, settings: Any
) -> None:
    settings.CALLBRIDGE_TURN_SECRET = "turn-secret-for-tests"
    settings.CALLBRIDGE_TURN_URLS = ["turn:127.0.0.1:3478?transport=udp"]
    settings.CALLBRIDGE_TURN_TTL = 10 * 24 * 3600  # longer than the session: capped by it
    make_queue("sales", [])
    response = _create(key, {"agentId": "sales", "metadata": {"userId": "user_12345"}})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == {"sessionId", "sessionToken", "expiresAt", "iceServers"}
    assert body["expiresAt"].endswith("Z")
    expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    turn = body["iceServers"][-1]
    assert int(turn["username"].split(":")[0]) <= expires.timestamp() + 1
    session = EndUserSession.objects.get(pk=body["sessionId"])
    assert (session.agent, session.metadata) == ("sales", {"userId": "user_12345"})
    assert session.created_by_token is not None
    assert _create(key, {"agentId": "echo"}).status_code == 201

    # Unknown agents, bad bodies and end users get the contract's errors; nothing is made.
    before = EndUserSession.objects.count()
    missing = _create(key, {"agentId": "agt_01HXK8Z3MNPQRS"})
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")
    assert _create(key, {}).json()["code"] == "INVALID_MESSAGE"  # agentId is required
    assert _create(key, {"agentId": "echo", "metadata": [1]}).status_code == 400
    end_user = _create(body["sessionToken"], {"agentId": "echo"})
    assert (end_user.status_code, end_user.json()["code"]) == (403, "FORBIDDEN")
    assert bearer_client("cbk_nope").post("/api/v1/webrtc/sessions").status_code == 401
    assert EndUserSession.objects.count() == before


async def test_it_negotiates_from_an_allowed_origin_with_credentials(
    key: str, settings: Any
) -> None:
    settings.CORS_ALLOWED_ORIGINS = [PAGE]
    token = await _session(key)
    client = AsyncClient()
    preflight = await client.options(
        "/hubs/webrtc/negotiate?negotiateVersion=1",
        headers={
            "Origin": PAGE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-requested-with,x-signalr-user-agent",
        },
    )
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == PAGE  # exact: credentials are sent
    assert preflight["Access-Control-Allow-Credentials"] == "true"
    assert "x-signalr-user-agent" in preflight["Access-Control-Allow-Headers"]

    url = f"/hubs/webrtc/negotiate?negotiateVersion=1&sessionToken={token}&access_token={key}"
    negotiated = await client.post(url, headers={"Origin": PAGE})
    assert negotiated.status_code == 200
    assert negotiated["Access-Control-Allow-Origin"] == PAGE
    body = negotiated.json()
    assert body["negotiateVersion"] == 1 and body["connectionId"] and body["connectionToken"]
    assert body["availableTransports"] == [{"transport": "WebSockets", "transferFormats": ["Text"]}]
    old = await client.post(f"/hubs/webrtc/negotiate?sessionToken={token}")
    assert set(old.json()) == {"connectionId", "availableTransports"}

    # Another origin gets no CORS answer; a bad token the contract's 401, readable by the page.
    elsewhere = await client.post(url, headers={"Origin": "http://127.0.0.3:8123"})
    assert "Access-Control-Allow-Origin" not in elsewhere
    refused = await client.post(
        "/hubs/webrtc/negotiate?negotiateVersion=1&sessionToken=cbs_wrong", headers={"Origin": PAGE}
    )
    assert (refused.status_code, refused.json()["code"]) == (401, "UNAUTHORIZED")
    assert refused["Access-Control-Allow-Origin"] == PAGE
    api_key_only = await client.post(f"/hubs/webrtc/negotiate?access_token={key}")
    assert api_key_only.status_code == 401


async def test_it_echoes_a_tone_through_the_hub_and_keeps_the_end_reason(
    asgi_app: Any, key: str
) -> None:
    token = await _session(key, "echo")
    negotiated = await AsyncClient().post(
        f"/hubs/webrtc/negotiate?negotiateVersion=1&sessionToken={token}&access_token={key}"
    )
    hub = HubClient(
        asgi_app,
        sessionToken=token,
        access_token=key,
        id=negotiated.json()["connectionToken"],
    )
    assert await hub.connect() == {}
    peer = ClientPeer(1000)
    try:
        sdp = await peer.offer(trickle=True)
        first, *rest = peer.candidates()
        # Browsers trickle while the offer is on its way: held until the answer.
        sent_early = await hub.invoke("SendIceCandidateAsync", first)
        assert "error" not in await hub.completion(sent_early)
        offered = await hub.invoke("SendOfferAsync", {"sdp": sdp, "type": "offer"})
        assert "error" not in await hub.completion(offered)
        answer = await hub.event("SdpAnswerReceived")
        assert answer["type"] == "answer"
        started = await hub.event("SessionStarted")
        await peer.accept(answer["sdp"])
        for candidate in rest:  # `send`: no completion asked for
            await hub.send({"type": 1, "target": "SendIceCandidateAsync", "arguments": [candidate]})
        await peer.wait_connected()
        assert abs(await peer.hears(1000) - 1000) < 25

        ended = await hub.invoke("EndSessionAsync", "user_ended")
        assert "error" not in await hub.completion(ended)
        assert await hub.event("SessionEnded") == {"reason": "user_ended"}
        call = await Call.objects.aget(pk=started["conversationId"])
        assert (call.state, call.mode, call.end_reason) == ("ended", "echo", "hangup")
        assert call.client_reason == "user_ended"
        rest_view = await sync_to_async(bearer_client(key).get)(f"/api/calls/{call.pk}")
        assert rest_view.json()["clientReason"] == "user_ended"
        again = await hub.invoke("EndSessionAsync", "user_ended")  # nothing left: no error
        assert "error" not in await hub.completion(again)
    finally:
        await peer.close()
        await hub.close()


async def test_it_speaks_the_hub_protocol(asgi_app: Any, key: str, monkeypatch: Any) -> None:
    monkeypatch.setattr(WebRtcHubConsumer, "keepalive_interval_s", 0.3)
    token = await _session(key)
    hub = HubClient(asgi_app, sessionToken=token)
    assert await hub.connect() == {}
    await hub.send({"type": 6})  # a client's ping is not answered: it only keeps us alive
    assert await hub.receive(within=3) == {"type": 6}  # our keepalive, when quiet
    # Several records in one frame, each handled; unknown methods fail their completion.
    await hub.send_raw(
        json.dumps({"type": 1, "invocationId": "a", "target": "Nope", "arguments": []})
        + RS
        + json.dumps({"type": 1, "target": "Nope", "arguments": []})  # no id: no completion
        + RS
        + json.dumps({"type": 1, "invocationId": "b", "target": "EndSessionAsync"})
        + RS
        + json.dumps({"type": 4, "invocationId": "c", "target": "X", "arguments": []})
        + RS
        + json.dumps({"type": 1, "invocationId": "d", "target": "SendOfferAsync", "arguments": [1]})
        + RS
        + json.dumps(
            {"type": 1, "invocationId": "e", "target": "EndSessionAsync", "arguments": ["a\nb"]}
        )
        + RS
    )
    assert (await hub.completion("a"))["error"] == "Unknown hub method 'Nope'"
    assert "expects 1" in (await hub.completion("b"))["error"]
    assert "Streaming" in (await hub.completion("c"))["error"]
    assert (await hub.completion("d"))["error"].startswith("INVALID_MESSAGE")
    assert (await hub.completion("e"))["error"].startswith("INVALID_ARGUMENT")
    bad_sdp = await hub.invoke("SendOfferAsync", {"sdp": "hello", "type": "offer"})
    assert (await hub.completion(bad_sdp))["error"].startswith("INVALID_ARGUMENT")
    assert await Call.objects.acount() == 0  # bad input changed nothing

    await hub.send_raw("{not json" + RS)
    closed = await hub.closed()
    assert "not JSON" in closed["error"] and not closed.get("allowReconnect")


async def test_it_closes_with_an_error_for_bad_auth_and_handshakes(asgi_app: Any, key: str) -> None:
    token = await _session(key)
    cases = [
        ({"sessionToken": "cbs_wrongwrongwrongwrongwrong"}, "UNAUTHORIZED: Invalid"),
        ({}, "UNAUTHORIZED: Auth token required"),
        ({"access_token": key}, "needs a sessionToken"),
        ({"sessionToken": token, "access_token": "cbk_notavalidkeynotavalidkey"}, "UNAUTHORIZED"),
        ({"sessionToken": token, "id": "forged"}, "negotiate again"),
    ]
    for query, said in cases:
        hub = HubClient(asgi_app, **query)
        assert await hub.connect() == {}
        assert said in (await hub.closed())["error"], query

    hub = HubClient(asgi_app, sessionToken=token)
    await hub.connect(handshake=False)
    await hub.send_raw('{"protocol":"messagepack","version":1}' + RS)
    assert "not supported" in (await hub.receive())["error"]
    output = await hub.communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close"


async def test_it_closes_the_hub_when_the_session_is_revoked(asgi_app: Any, key: str) -> None:
    token = await _session(key)
    hub = HubClient(asgi_app, sessionToken=token)
    assert await hub.connect() == {}
    session = await sync_to_async(EndUserSession.objects.find)(token)
    assert session is not None
    await sync_to_async(session.revoke)()
    error = await hub.event("Error")
    assert error["recoverable"] is False and error["code"] == "UNAUTHORIZED"
    assert "revoked" in (await hub.closed())["error"]


async def test_it_ends_the_call_when_the_session_ends_while_the_offer_is_answered(
    asgi_app: Any, key: str
) -> None:
    token = await _session(key, "echo")
    hub = HubClient(asgi_app, sessionToken=token)
    assert await hub.connect() == {}
    peer = ClientPeer(1000)
    try:
        offer = {"sdp": await peer.offer(), "type": "offer"}
        # One frame: the hang-up is read before (or after: the same outcome) the answer.
        await hub.send_raw(
            json.dumps(
                {"type": 1, "invocationId": "1", "target": "SendOfferAsync", "arguments": [offer]}
            )
            + RS
            + json.dumps(
                {
                    "type": 1,
                    "invocationId": "2",
                    "target": "EndSessionAsync",
                    "arguments": ["user_ended"],
                }
            )
            + RS
        )
        assert "error" not in await hub.completion("1")
        assert await hub.event("SessionEnded") == {"reason": "user_ended"}
        call = await Call.objects.aget()
        assert (call.state, call.client_reason) == ("ended", "user_ended")
    finally:
        await peer.close()
        await hub.close()


async def test_it_closes_a_connection_it_stops_hearing_from(
    asgi_app: Any, key: str, monkeypatch: Any
) -> None:
    monkeypatch.setattr(WebRtcHubConsumer, "client_timeout_s", 0.5)
    hub = HubClient(asgi_app, sessionToken=await _session(key))
    assert await hub.connect() == {}
    assert "sent nothing" in (await hub.closed(within=5))["error"]


def _hang_up_together(*enders: tuple[Principal, str, str]) -> list[BaseException]:
    """Each (principal, call id, reason) hangs up in its own thread, at the same instant."""
    start = threading.Barrier(len(enders))
    failures: list[BaseException] = []

    def end(principal: Principal, call_id: str, reason: str) -> None:
        try:
            start.wait(timeout=10)
            with contextlib.suppress(CallStateError):  # the other one was first
                calling.hang_up(principal, call_id, reason)
        except BaseException as error:  # reported below: a thread's exception is lost
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=end, args=ender) for ender in enders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return failures


def test_it_ends_a_call_once_when_the_session_and_the_operator_hang_up_together(
    key: str,
) -> None:
    """EndSessionAsync against the operator's hang-up: one `call.ended`, and the reason
    belongs to whoever ended it (the row lock in Call._transition decides)."""
    operator = Principal.for_api_token(ApiToken.objects.get())
    for _ in range(6):
        session, _ = EndUserSession.create(ttl_seconds=600, agent="default")
        user = Principal.end_user(session)
        call = Call.start(by=user, mode="bridge", media_worker="embedded")
        call.answer(operator)
        failures = _hang_up_together(
            (user, str(call.pk), "user_ended"), (operator, str(call.pk), "")
        )
        assert failures == []
        call.refresh_from_db()
        ended = list(CallEvent.objects.filter(call=call, name="call.ended"))
        assert len(ended) == 1 and call.state == "ended" and call.end_reason == "hangup"
        by_user = call.ended_by_role == "user"
        assert call.client_reason == ("user_ended" if by_user else "")
        assert ended[0].data.get("clientReason") == (call.client_reason or None)
