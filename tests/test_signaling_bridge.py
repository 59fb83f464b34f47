"""Bridge over /ws/signal: end user (440 Hz) ↔ operator (880 Hz), events, hang-up, leaks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from calls.background import background_tasks
from calls.models import ApiToken, Call, EndUserSession
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.resources import Resources, settle_to
from tests.support.signal_client import SignalClient, staff_cookie

pytestmark = [pytest.mark.django_db(transaction=True)]

USER_TONE, OPERATOR_TONE = 440, 880


@dataclass
class Parties:
    user: SignalClient
    operator: SignalClient
    dashboard: SignalClient
    user_token: str
    operator_token: str


@pytest.fixture
async def parties(asgi_app: Any) -> AsyncIterator[Parties]:
    _, user_token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    _, operator_token = await sync_to_async(ApiToken.create)("console")
    cookie = await sync_to_async(staff_cookie)()
    dashboard = SignalClient(asgi_app, "/ws/operator", origin="http://localhost")
    dashboard.communicator.scope["headers"].append((b"cookie", cookie.encode()))
    clients = Parties(
        SignalClient(asgi_app), SignalClient(asgi_app), dashboard, user_token, operator_token
    )
    for client in (clients.user, clients.operator, clients.dashboard):
        await client.connect()
    snapshot = await clients.dashboard.receive()
    assert snapshot["type"] == "snapshot" and snapshot["data"]["calls"] == []
    yield clients
    for client in (clients.user, clients.operator, clients.dashboard):
        await client.close()


async def connect_call(parties: Parties) -> tuple[str, ClientPeer, ClientPeer, dict, dict]:
    """The end user calls, the operator answers by sending its offer; both connect."""
    user_peer, operator_peer = ClientPeer(USER_TONE), ClientPeer(OPERATOR_TONE)
    await parties.user.send({"type": "register", "sessionId": "", "authToken": parties.user_token})
    await parties.user.expect("event", "registered")
    user_answer = await parties.user.offer(parties.user_token, await user_peer.offer())
    call_id = user_answer["callSid"]
    await parties.user.expect("event", "call.ringing")
    incoming = await parties.dashboard.expect("event", "call.incoming")
    assert incoming["callSid"] == call_id and incoming["data"]["call"]["displayName"] == "Ada"

    operator_answer = await parties.operator.offer(
        parties.operator_token, await operator_peer.offer(), callSid=call_id
    )
    assert operator_answer["callSid"] == call_id
    assert operator_answer["sessionId"] != user_answer["sessionId"]
    await user_peer.accept(user_answer["data"]["sdp"])
    await operator_peer.accept(operator_answer["data"]["sdp"])
    await user_peer.wait_connected()
    await operator_peer.wait_connected()
    return call_id, user_peer, operator_peer, user_answer, operator_answer


@pytest.mark.parametrize("who_hangs_up", ["user", "operator"])
async def test_it_bridges_two_parties_each_hearing_the_other(
    parties: Parties, who_hangs_up: str
) -> None:
    baseline = Resources.now()
    call_id, user_peer, operator_peer, user_answer, operator_answer = await connect_call(parties)
    try:
        await hear_each_other((user_peer, OPERATOR_TONE), (operator_peer, USER_TONE))

        hanger = parties.user if who_hangs_up == "user" else parties.operator
        session_id = (user_answer if who_hangs_up == "user" else operator_answer)["sessionId"]
        await hanger.send({"type": "hangup", "sessionId": session_id})
        for client in (parties.user, parties.operator, parties.dashboard):
            ended = await client.expect("event", "call.ended")
            assert ended["callSid"] == call_id and ended["data"]["reason"] == "hangup"
    finally:
        await user_peer.close()
        await operator_peer.close()

    call = await Call.objects.aget(pk=call_id)
    assert (call.state, call.end_reason, call.ended_by_role) == ("ended", "hangup", who_hangs_up)
    # The media worker reports each leg's closing after the call ended (its own thread).
    async with asyncio.timeout(10):
        while True:
            legs = [(leg.role, leg.media_state) async for leg in call.legs.order_by("role")]
            if legs == [("operator", "closed"), ("user", "closed")]:
                break
            await asyncio.sleep(0.05)

    # Events in order on every socket.
    def ordered(names: list[str], expected: list[str]) -> bool:
        positions = [names.index(name) for name in expected]
        return positions == sorted(positions)

    user_events = parties.user.events()
    assert ordered(user_events, ["registered", "call.ringing", "call.answered", "call.ended"])
    assert user_events.count("call.ended") == 1  # session and call groups: delivered once
    assert "media.connected" in user_events
    assert parties.user.received[1]["type"] == "answer"  # the answer came before any event
    assert ordered(parties.operator.events(), ["call.answered", "media.connected", "call.ended"])
    assert ordered(parties.dashboard.events(), ["call.incoming", "call.answered", "call.ended"])

    worker = background_tasks.get("media-worker")
    assert worker.peer_count == 0 and worker.calls == {}
    assert await settle_to(baseline) == baseline


@pytest.mark.slow
async def test_it_reconnects_a_leg_after_close(parties: Parties) -> None:
    call_id, user_peer, operator_peer, user_answer, _ = await connect_call(parties)
    try:
        assert abs(await operator_peer.hears(USER_TONE) - USER_TONE) < 25
        leg = user_answer["sessionId"]
        await parties.user.send({"type": "close", "sessionId": leg})
        await parties.operator.expect("event", "media.disconnected")
        await user_peer.close()
        assert (await Call.objects.aget(pk=call_id)).state == "active"  # close is not hangup

        again = ClientPeer(660)
        user_peer = again
        answer = await parties.user.offer(parties.user_token, await again.offer(), callSid=call_id)
        assert answer["sessionId"] == leg  # the same leg, reconnected
        await again.accept(answer["data"]["sdp"])
        await again.wait_connected()
        await hear_each_other((operator_peer, 660), (again, OPERATOR_TONE))
    finally:
        await user_peer.close()
        await operator_peer.close()
    assert (await Call.objects.aget(pk=call_id)).state == "active"


async def test_it_connects_with_trickled_candidates(parties: Parties) -> None:
    peer = ClientPeer(1000)
    try:
        answer = await parties.user.offer(
            parties.user_token, await peer.offer(trickle=True), mode="echo"
        )
        assert "a=candidate" not in answer["data"]["sdp"].split("m=audio")[0]
        await peer.accept(answer["data"]["sdp"])
        for candidate in peer.candidates():
            await parties.user.send(
                {"type": "ice-candidate", "sessionId": answer["sessionId"], "data": candidate}
            )
        await parties.user.send(
            {
                "type": "ice-candidate",
                "sessionId": answer["sessionId"],
                "data": {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0},
            }
        )
        await peer.wait_connected()
        assert abs(await peer.hears(1000) - 1000) < 25
        assert [m for m in await parties.user.drain() if m["type"] == "error"] == []
    finally:
        await peer.close()
