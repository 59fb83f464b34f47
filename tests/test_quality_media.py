"""Server-side call quality on a real call: two aiortc peers bridged through the server,
loss and delay on the end user's leg only (a relay in front of that peer) → its MOS falls,
`quality.warning` for that leg alone (its party's socket, the operators' feed, a CallEvent),
`quality.cleared` once the network heals, and each leg's summary stored at its end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from calls.background import background_tasks
from calls.media.quality import QualitySample
from calls.models import ApiToken, CallEvent, EndUserSession, Leg
from calls.signaling.protocol import QUALITY_EVENTS
from tests.support.live_call import OPERATOR_TONE, USER_TONE
from tests.support.lossy_relay import LossyRelay
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.signal_client import SignalClient, operator_feed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media, pytest.mark.timeout(120)]


@pytest.fixture
def quality_every_second(settings: Any, tmp_path: Path) -> None:
    """Set before the media worker starts (asgi_app): a sample a second keeps this short."""
    settings.CALLBRIDGE_QUALITY_INTERVAL_S = 1
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
async def relay() -> AsyncIterator[LossyRelay]:
    relay = LossyRelay()
    await relay.start()
    yield relay
    relay.close()


async def summarised(leg_id: str) -> Leg:
    for _ in range(200):  # the worker reports after the leg's connection closed (10 s)
        leg = await Leg.objects.aget(pk=leg_id)
        if leg.quality_samples:
            return leg
        await asyncio.sleep(0.05)
    raise AssertionError(f"leg {leg_id} has no quality summary")


async def test_it_warns_of_the_lossy_leg_only_and_clears_when_it_heals(
    quality_every_second: None, asgi_app: Any, relay: LossyRelay
) -> None:
    # Where every sample goes besides the leg's judgement (metrics observe the MOS here).
    samples: list[QualitySample] = []
    background_tasks.get("media-worker").quality_sample_hook = samples.append
    _, user_token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    _, operator_token = await sync_to_async(ApiToken.create)("desk")
    feed = await operator_feed(asgi_app, "alice")
    user, operator = SignalClient(asgi_app), SignalClient(asgi_app)
    user_peer, operator_peer = ClientPeer(USER_TONE), ClientPeer(OPERATOR_TONE)
    try:
        await user.connect()
        await operator.connect()
        # The user's leg goes through the relay; the operator's is direct.
        user_answer = await user.offer(user_token, relay.offer(await user_peer.offer()))
        call_id, user_leg = user_answer["callSid"], user_answer["sessionId"]
        operator_answer = await operator.offer(
            operator_token, await operator_peer.offer(), callSid=call_id
        )
        operator_leg = operator_answer["sessionId"]
        await user_peer.accept(relay.answer(user_answer["data"]["sdp"]))
        await operator_peer.accept(operator_answer["data"]["sdp"])
        await user_peer.wait_connected()
        await operator_peer.wait_connected()
        await hear_each_other((operator_peer, USER_TONE), (user_peer, OPERATOR_TONE))

        relay.loss, relay.delay_s = 0.3, 0.15  # each way: the round trip grows by 300 ms
        warning = await user.expect("event", "quality.warning", within=30)
        assert warning["sessionId"] == user_leg and warning["callSid"] == call_id
        data = warning["data"]
        assert (data["legID"], data["role"], data["metric"]) == (user_leg, "user", "mos")
        assert data["value"] < 3.5
        assert data["lossPercent"] > 10
        assert data["rttMs"] is not None and data["rttMs"] >= 250
        fed = await feed.expect("event", "quality.warning", within=10)
        assert (fed["data"]["legID"], fed["data"]["value"]) == (user_leg, data["value"])

        relay.loss, relay.delay_s = 0.0, 0.0
        cleared = await user.expect("event", "quality.cleared", within=30)
        assert cleared["data"]["legID"] == user_leg and cleared["data"]["value"] >= 3.5
        fed = await feed.expect("event", "quality.cleared", within=10)
        assert fed["data"]["legID"] == user_leg
        assert relay.dropped > 0

        await user.send({"type": "hangup", "sessionId": user_leg})
        await user.expect("event", "call.ended")
        # The operator's own leg never suffered, and another party's is not its business.
        await operator.drain()
        assert not QUALITY_EVENTS & set(operator.events())
        recorded = [
            (event.name, str(event.leg_id))
            async for event in CallEvent.objects.filter(call_id=call_id, name__in=QUALITY_EVENTS)
        ]
        assert recorded == [("quality.warning", user_leg), ("quality.cleared", user_leg)]

        lossy, clean = await summarised(user_leg), await summarised(operator_leg)
        assert lossy.mos_min is not None and lossy.mos_min < 3.5
        assert lossy.quality_warnings == 1 and lossy.loss_percent and lossy.loss_percent > 0
        assert lossy.mos_avg is not None and lossy.mos_min <= lossy.mos_avg
        assert clean.mos_min is not None and clean.mos_min >= 3.5
        assert clean.quality_warnings == 0
        # Every sample of both legs went to the hook: as many as the summaries counted.
        assert len(samples) == lossy.quality_samples + clean.quality_samples
        assert min(sample.mos for sample in samples) == lossy.mos_min
    finally:
        await user_peer.close()
        await operator_peer.close()
        for socket in (user, operator, feed):
            await socket.close()
