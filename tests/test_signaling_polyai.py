"""PolyAI's gateway path /api/v1/webrtc/signal (seeds 003/004): the same envelope as
/ws/signal in PolyAI's dialect — agent modes reach a queue, the client's callSid is the
call's external id, `close` ends the call, AGENT_FAILURE when nobody takes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from calls.models import ApiToken, Call, CallEvent, EndUserSession, Leg, Queue
from calls.principals import Principal
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.queues import make_operator, make_queue, wait_passes
from tests.support.rest_client import bearer_client
from tests.support.signal_client import SignalClient, staff_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

GATEWAY = "/api/v1/webrtc/signal"
USER_TONE, OPERATOR_TONE = 440, 880


def seed_offer(token: str | None, sdp: str) -> dict[str, Any]:
    """Seed 004's example offer message, as written but for its token and SDP."""
    message: dict[str, Any] = {
        "type": "offer",
        "sessionId": "",
        "data": {"type": "offer", "sdp": sdp},
        "authToken": token,
        "callSid": "call-unique-id",
        "caller": "+14155551234",
        "callee": "+14155555678",
    }
    if token is None:
        del message["authToken"]
    return message


def make_user(name: str) -> tuple[EndUserSession, str]:
    return EndUserSession.create(ttl_seconds=600, display_name=name)


def counts() -> tuple[int, int, int]:
    return Call.objects.count(), Leg.objects.count(), CallEvent.objects.count()


async def offer_sdp() -> str:
    peer = ClientPeer(USER_TONE)
    sdp = await peer.offer()
    await peer.close()
    return sdp


@pytest.fixture
async def sdp() -> str:
    return await offer_sdp()


@pytest.fixture
async def gateway(asgi_app: Any) -> AsyncIterator[Any]:
    """Opens gateway sockets (closed after the test)."""
    clients: list[SignalClient] = []

    async def open_socket(path: str = GATEWAY) -> SignalClient:
        client = SignalClient(asgi_app, path)
        await client.connect()
        clients.append(client)
        return client

    yield open_socket
    for client in clients:
        await client.close()


async def test_it_routes_an_offer_without_mode_to_the_queue_its_callee_names(
    asgi_app: Any, gateway: Any, sdp: str
) -> None:
    await sync_to_async(make_queue)("support", [])
    _, token = await sync_to_async(make_user)("Ada")
    cookie = await sync_to_async(staff_cookie)("olga")
    dashboard = SignalClient(asgi_app, "/ws/operator", origin="http://localhost")
    dashboard.communicator.scope["headers"].append((b"cookie", cookie.encode()))
    await dashboard.connect()
    await dashboard.receive()  # the snapshot
    client = await gateway()
    override = {"artifactVersion": "a-17", "lambdaDeploymentVersion": 3}
    answer = await client.offer(
        token,
        sdp,
        callSid="CA-0001",
        caller="+14155551234",
        callee="support",
        accountId="acct-1",
        projectId="proj-2",
        variantId="v-3",
        agentVersionOverride=override,
    )
    call = await Call.objects.select_related("queue").aget(pk=answer["callSid"])
    assert answer["sessionId"] and answer["data"]["type"] == "answer"
    assert (call.mode, call.state, call.queue.public_id) == ("bridge", "ringing", "support")
    assert (call.external_id, call.caller, call.callee) == ("CA-0001", "+14155551234", "support")
    assert call.metadata == {
        "mode": "end-to-end",
        "accountId": "acct-1",
        "projectId": "proj-2",
        "variantId": "v-3",
        "agentVersionOverride": override,
    }
    # The operators see it with the client's numbers and id; the REST API says the same.
    incoming = await dashboard.expect("event", "call.incoming")
    shown = incoming["data"]["call"]
    assert (shown["externalId"], shown["caller"], shown["callee"]) == (
        "CA-0001",
        "+14155551234",
        "support",
    )
    read = await sync_to_async(bearer_client(token).get)(f"/api/calls/{call.pk}")
    body = read.json()
    assert (body["externalId"], body["caller"], body["callee"]) == (
        "CA-0001",
        "+14155551234",
        "support",
    )
    assert body["metadata"]["projectId"] == "proj-2"

    # `close` here ends the session: the ringing call is cancelled, both sides are told.
    await client.send({"type": "close", "sessionId": answer["sessionId"]})
    ended = await client.expect("event", "call.ended")
    assert ended["data"]["reason"] == "cancelled"
    assert (await dashboard.expect("event", "call.ended"))["callSid"] == str(call.pk)
    await call.arefresh_from_db()
    assert (call.state, call.end_reason, call.ended_by_role) == ("cancelled", "cancelled", "user")
    # A second close (the call is over) is no error.
    await client.send({"type": "close", "sessionId": answer["sessionId"]})
    assert all(message["type"] != "error" for message in await client.drain())

    # `traditional` reaches a person too; a callee that names no queue: the default queue.
    _, bob_token = await sync_to_async(make_user)("Bob")
    other = await gateway()
    answer = await other.offer(
        bob_token, await offer_sdp(), mode="traditional", callee="+14155555678"
    )
    bobs = await Call.objects.select_related("queue").aget(pk=answer["callSid"])
    assert (bobs.mode, bobs.state, bobs.external_id) == ("bridge", "ringing", None)
    assert bobs.queue.is_default and bobs.metadata == {"mode": "traditional"}
    await dashboard.close()


async def test_it_answers_echo_and_refuses_unknown_modes_and_offers_without_a_token(
    gateway: Any, sdp: str
) -> None:
    _, token = await sync_to_async(make_user)("Ada")
    client = await gateway()
    before = await sync_to_async(counts)()
    for mode in ("bridge", "karaoke"):  # callbridge's own `bridge` is not a PolyAI mode
        await client.send({**seed_offer(token, sdp), "mode": mode})
        error = await client.expect("error")
        assert error["data"]["code"] == "INVALID_ARGUMENT"
        assert "end-to-end, traditional or echo" in error["data"]["message"]
    await client.send(seed_offer(None, sdp))
    error = await client.expect("error")
    assert error["data"] == {
        "code": "UNAUTHORIZED",
        "message": "Auth token required",
        "recoverable": False,
    }
    assert await sync_to_async(counts)() == before

    # An integrator's API token reaches no person here (it is not a caller) but may echo.
    _, api_token = await sync_to_async(ApiToken.create)("preflight")
    console = await gateway()
    await console.send(seed_offer(api_token, sdp))
    assert (await console.expect("error"))["data"]["code"] == "INVALID_ARGUMENT"
    echo = await console.offer(api_token, sdp, mode="echo", callSid="echo-1")
    call = await Call.objects.aget(pk=echo["callSid"])
    assert (call.mode, call.state, call.external_id) == ("echo", "active", "echo-1")

    # callbridge's own path keeps its meaning: callSid names an existing call to join.
    native = await gateway("/ws/signal")
    await native.send({**seed_offer(token, sdp), "mode": "end-to-end"})
    assert (await native.expect("error"))["data"]["code"] == "INVALID_ARGUMENT"
    await native.send(seed_offer(token, sdp))
    assert (await native.expect("error"))["data"]["code"] == "NOT_FOUND"


async def first_reply(client: SignalClient) -> dict[str, Any]:
    """The offer's outcome: its answer or its error (events may come between)."""
    while True:
        message = await client.receive()
        if message["type"] in ("answer", "error"):
            return message


def bobs_call(external_id: str) -> str:
    bob, _ = make_user("Bob")
    call = Call.start(
        by=Principal.end_user(bob), mode="bridge", media_worker="embedded", external_id=external_id
    )
    return str(call.pk)


async def test_it_keeps_a_callsid_to_one_party(gateway: Any, sdp: str) -> None:
    await sync_to_async(bobs_call)("call-unique-id")
    _, token = await sync_to_async(make_user)("Ada")
    client = await gateway()
    before = await sync_to_async(counts)()
    await client.send(seed_offer(token, sdp))
    error = await client.expect("error")
    assert error["data"]["code"] == "INVALID_ARGUMENT" and "callSid" in error["data"]["message"]
    assert await sync_to_async(counts)() == before

    # Two callers send one new callSid at the same instant: one call, one refusal.
    tokens = [(await sync_to_async(make_user)(name))[1] for name in ("Cy", "Di")]
    clients = [await gateway(), await gateway()]
    offers = [{**seed_offer(t, await offer_sdp()), "callSid": "CA-race"} for t in tokens]
    await asyncio.gather(*(c.send(o) for c, o in zip(clients, offers, strict=True)))
    replies = [await first_reply(c) for c in clients]
    kinds = sorted(reply["type"] for reply in replies)
    assert kinds == ["answer", "error"], replies
    refused = next(reply for reply in replies if reply["type"] == "error")
    assert refused["data"]["code"] == "INVALID_ARGUMENT"
    assert await Call.objects.filter(external_id="CA-race").acount() == 1

    # The party that owns it, sending it again: its own leg, reconnected.
    winner = next(i for i, reply in enumerate(replies) if reply["type"] == "answer")
    again = await clients[winner].offer(tokens[winner], await offer_sdp(), callSid="CA-race")
    assert again["sessionId"] == replies[winner]["sessionId"]
    assert again["callSid"] == replies[winner]["callSid"]


async def test_it_tells_the_caller_agent_failure_when_nobody_takes_the_call(
    gateway: Any, sdp: str
) -> None:
    def queue_nobody_answers() -> Queue:
        return make_queue("sales", [make_operator("nobody", available=False)])

    await sync_to_async(queue_nobody_answers)()
    _, token = await sync_to_async(make_user)("Ada")
    client = await gateway()
    answer = await client.offer(token, sdp, callee="sales")
    call = await Call.objects.aget(pk=answer["callSid"])
    await sync_to_async(wait_passes)(call)
    error = await client.expect("error")
    assert error["sessionId"] == answer["sessionId"]
    assert error["data"]["code"] == "AGENT_FAILURE" and error["data"]["recoverable"] is True
    ended = await client.expect("event", "call.ended")
    assert ended["data"]["reason"] == "no_operator"

    # The default queue (a callee naming no queue): its ring timeout passes, the same error.
    _, bob_token = await sync_to_async(make_user)("Bob")
    other = await gateway()
    await other.send(seed_offer(bob_token, await offer_sdp()))
    answer = await other.expect("answer")
    call = await Call.objects.aget(pk=answer["callSid"])
    await sync_to_async(wait_passes)(call)
    error = await other.expect("error")
    assert error["data"]["code"] == "AGENT_FAILURE", error
    assert (await other.expect("event", "call.ended"))["data"]["reason"] == "missed"


@pytest.mark.media
async def test_it_connects_seed_004s_offer_to_an_operator_and_ends_on_close(
    asgi_app: Any, gateway: Any
) -> None:
    operator = await sync_to_async(make_operator)("olga")
    cookie = await sync_to_async(staff_cookie)("olga")
    dashboard = SignalClient(asgi_app, "/ws/operator", origin="http://localhost")
    dashboard.communicator.scope["headers"].append((b"cookie", cookie.encode()))
    await dashboard.connect()
    await dashboard.receive()  # the snapshot
    _, token = await sync_to_async(make_user)("Ada")
    client = await gateway()
    user_peer, operator_peer = ClientPeer(USER_TONE), ClientPeer(OPERATOR_TONE)
    try:
        await client.send(seed_offer(token, await user_peer.offer()))
        answer = await client.expect("answer")
        call_id = answer["callSid"]
        await user_peer.accept(answer["data"]["sdp"])
        incoming = await dashboard.expect("event", "call.incoming")
        assert incoming["data"]["call"]["externalId"] == "call-unique-id"
        # The operator answers with their media (the dashboard's way).
        staff = AsyncClient()
        await staff.aforce_login(operator)
        reply = await staff.post(
            f"/api/calls/{call_id}/webrtc/offer",
            {"type": "offer", "sdp": await operator_peer.offer()},
            content_type="application/json",
        )
        assert reply.status_code in (200, 201), reply.json()
        await operator_peer.accept(reply.json()["sdp"])
        await client.expect("event", "call.answered")
        await user_peer.wait_connected()
        await operator_peer.wait_connected()
        await hear_each_other((operator_peer, USER_TONE), (user_peer, OPERATOR_TONE))

        await client.send({"type": "close", "sessionId": answer["sessionId"]})
        assert (await client.expect("event", "call.ended"))["data"]["reason"] == "hangup"
        told = await dashboard.expect("event", "call.ended")
        assert told["callSid"] == call_id and told["data"]["reason"] == "hangup"
    finally:
        await user_peer.close()
        await operator_peer.close()
        await dashboard.close()
    call = await Call.objects.aget(pk=call_id)
    assert (call.state, call.end_reason, call.ended_by_role) == ("ended", "hangup", "user")
    assert (call.external_id, call.caller, call.callee) == (
        "call-unique-id",
        "+14155551234",
        "+14155555678",
    )
