"""Media that never connects, goes away, or is closed and not reconnected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from calls.background import background_tasks
from calls.models import Call, EndUserSession, Leg
from tests.support.media_peers import ClientPeer
from tests.support.signal_client import SignalClient

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
async def echo_client(asgi_app: Any, settings: Any) -> AsyncIterator[tuple[SignalClient, str]]:
    settings.CALLBRIDGE_ICE_TIMEOUT_S = 1
    settings.CALLBRIDGE_MEDIA_GRACE_S = 1
    await background_tasks.stop()  # the worker reads its timeouts when it starts
    background_tasks.ensure_started()
    _, token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    client = SignalClient(asgi_app)
    await client.connect()
    yield client, token
    await client.close()


async def test_it_fails_a_leg_that_never_connects(echo_client: tuple[SignalClient, str]) -> None:
    client, token = echo_client
    peer = ClientPeer(440)
    try:
        answer = await client.offer(token, await peer.offer(), mode="echo")
        # The client never applies the answer: ICE cannot complete.
        failure = await client.expect("error", within=5)
        assert failure["data"]["code"] == "MEDIA_BRIDGE_FAILURE"
        assert failure["sessionId"] == answer["sessionId"]
        leg = await Leg.objects.aget(pk=answer["sessionId"])
        assert leg.media_state == "failed"
        assert background_tasks.get("media-worker").peer_count == 0
    finally:
        await peer.close()


async def test_it_ends_a_call_whose_media_does_not_come_back(
    echo_client: tuple[SignalClient, str],
) -> None:
    client, token = echo_client
    peer = ClientPeer(440)
    try:
        answer = await client.offer(token, await peer.offer(), mode="echo")
        await peer.accept(answer["data"]["sdp"])
        await peer.wait_connected()
        await client.expect("event", "media.connected")
        await client.send({"type": "close", "sessionId": answer["sessionId"]})
        await client.expect("event", "media.disconnected")
        ended = await client.expect("event", "call.ended", within=5)
        assert ended["data"]["reason"] == "media_timeout"
    finally:
        await peer.close()
    call = await Call.objects.aget(pk=answer["callSid"])
    assert (call.state, call.end_reason, call.ended_by_role) == ("ended", "media_timeout", "system")


@pytest.mark.slow
async def test_it_notices_a_peer_whose_network_vanished(
    echo_client: tuple[SignalClient, str], settings: Any
) -> None:
    settings.CALLBRIDGE_MEDIA_GRACE_S = 60
    client, token = echo_client
    peer = ClientPeer(440)
    answer = await client.offer(token, await peer.offer(), mode="echo")
    await peer.accept(answer["data"]["sdp"])
    await peer.wait_connected()
    await client.expect("event", "media.connected")
    await peer.close()  # gone without a word: no close, no hangup
    lost = await client.expect("event", "media.disconnected", within=6)
    assert lost["sessionId"] == answer["sessionId"]
    assert (await Call.objects.aget(pk=answer["callSid"])).state == "active"
    leg = await Leg.objects.aget(pk=answer["sessionId"])
    assert leg.media_state == "disconnected"
