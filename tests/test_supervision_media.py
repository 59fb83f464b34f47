"""Supervisor modes between real aiortc peers, by tone: one call, a supervisor who
monitors, whispers, barges and leaves, and in each mode each party's tone heard exactly
where it should be and nowhere else; nothing left behind after."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest
from django.test import AsyncClient

from calls.background import background_tasks
from tests.support.live_call import (
    USER_TONE,
    LiveCall,
    end_live_call,
    start_live_call,
)
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.media_peers import ears_are as sink_ears_are
from tests.support.resources import Resources, settle_to

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.media, pytest.mark.timeout(120)]

# No tone a harmonic (or a mixing product) of another: with the operator at 880 Hz, a
# 440 Hz tone decoded and encoded again under load carried 2-3 % of 880 Hz into an ear
# that must not hear the operator (the NOT_HEARD bound is 2 %).
OPERATOR_TONE = 660
SUPERVISOR_TONE = 1250
TONES = (USER_TONE, OPERATOR_TONE, SUPERVISOR_TONE)


async def ears_are(expected: dict[ClientPeer, Iterable[float]]) -> None:
    """Each peer hears exactly its tones and none of the others (media_peers.ears_are)."""
    await sink_ears_are([(peer.sink, tones) for peer, tones in expected.items()], TONES)


@pytest.fixture(params=["forward", "decode"])
def media_path(request: pytest.FixtureRequest, settings: Any) -> str:
    """Both media paths (set before the services start)."""
    settings.CALLBRIDGE_MEDIA_PATH = request.param
    return str(request.param)


async def test_it_lets_each_party_hear_exactly_whom_each_supervisor_mode_says(
    media_path: str, asgi_app: Any, supervisor_user: Any
) -> None:
    baseline = Resources.now()
    call: LiveCall = await start_live_call(asgi_app, operator_tone=OPERATOR_TONE)
    supervise = f"/api/calls/{call.call_id}/supervise"
    supervisor = AsyncClient()
    await supervisor.aforce_login(supervisor_user)
    peer = ClientPeer(SUPERVISOR_TONE)
    user, operator = call.user_peer, call.operator_peer

    async def switch(mode: str) -> None:
        switched = await supervisor.post(supervise, {"mode": mode}, content_type="application/json")
        assert switched.status_code == 200, switched.json()
        told = await call.user.expect("event", "supervisor.mode_changed")
        assert told["data"]["supervisorMode"] == mode

    try:
        joined = await supervisor.post(
            supervise, {"mode": "monitor"}, content_type="application/json"
        )
        assert joined.status_code == 200, joined.json()
        (leg,) = [leg for leg in joined.json()["legs"] if leg["role"] == "supervisor"]
        assert leg["supervisorMode"] == "monitor"
        told = await call.user.expect("event", "supervisor.joined")
        assert told["data"]["supervisorMode"] == "monitor"
        answered = await supervisor.post(
            f"/api/calls/{call.call_id}/webrtc/offer",
            {"type": "offer", "sdp": await peer.offer()},
            content_type="application/json",
        )
        assert answered.status_code == 200, answered.json()
        assert answered.json()["sessionId"] == leg["legID"]
        await peer.accept(answered.json()["sdp"])
        await peer.wait_connected()

        # Monitor: the supervisor hears both parties; nobody hears the supervisor.
        await ears_are(
            {peer: (USER_TONE, OPERATOR_TONE), user: (OPERATOR_TONE,), operator: (USER_TONE,)}
        )
        legs = background_tasks.get("media-worker").calls[call.call_id].legs
        if media_path == "forward":
            # Only the supervisor's ear mixes: the parties' ears still forward packets.
            encoded = legs["user"].outbound.frames_sent, legs["operator"].outbound.frames_sent
            await asyncio.sleep(0.5)
            assert (
                legs["user"].outbound.frames_sent,
                legs["operator"].outbound.frames_sent,
            ) == encoded

        # Whisper: the operator hears the user and the supervisor; the user still only the operator.
        await switch("whisper")
        await ears_are(
            {
                peer: (USER_TONE, OPERATOR_TONE),
                user: (OPERATOR_TONE,),
                operator: (USER_TONE, SUPERVISOR_TONE),
            }
        )

        # Barge: everyone hears both others.
        await switch("barge")
        await ears_are(
            {
                peer: (USER_TONE, OPERATOR_TONE),
                user: (OPERATOR_TONE, SUPERVISOR_TONE),
                operator: (USER_TONE, SUPERVISOR_TONE),
            }
        )

        # On hold (no hold audio here: silence), the caller hears nobody; the supervisor
        # may still coach the operator, and hears only the operator.
        held = await call.post(f"/api/calls/{call.call_id}/hold", call.operator_token)
        assert held.status_code == 200, held.json()
        await ears_are({peer: (OPERATOR_TONE,), user: (), operator: (SUPERVISOR_TONE,)})
        resumed = await call.post(f"/api/calls/{call.call_id}/resume", call.operator_token)
        assert resumed.status_code == 200, resumed.json()
        await ears_are(
            {
                peer: (USER_TONE, OPERATOR_TONE),
                user: (OPERATOR_TONE, SUPERVISOR_TONE),
                operator: (USER_TONE, SUPERVISOR_TONE),
            }
        )

        # Back to monitor while connected (no new offer): the supervisor is unheard again.
        await switch("monitor")
        await ears_are(
            {peer: (USER_TONE, OPERATOR_TONE), user: (OPERATOR_TONE,), operator: (USER_TONE,)}
        )

        # Leaving: the supervisor's leg closes; the parties hear each other as before.
        left = await supervisor.post(f"{supervise}/stop", content_type="application/json")
        assert left.status_code == 200, left.json()
        told = await call.user.expect("event", "supervisor.left")
        assert told["data"]["supervisorMode"] == "monitor"
        await hear_each_other((operator, USER_TONE), (user, OPERATOR_TONE))
        for _ in range(100):  # the worker closes the leg after the event (5 s)
            if "supervisor" not in legs:
                break
            await asyncio.sleep(0.05)
        assert "supervisor" not in legs
        if media_path == "forward":
            encoded = legs["user"].outbound.frames_sent, legs["operator"].outbound.frames_sent
            await asyncio.sleep(0.5)
            assert (
                legs["user"].outbound.frames_sent,
                legs["operator"].outbound.frames_sent,
            ) == encoded

        hung_up = await call.post(f"/api/calls/{call.call_id}/hangup", call.user_token)
        assert hung_up.status_code == 200, hung_up.json()
        await call.user.expect("event", "call.ended")
    finally:
        await peer.close()
        await end_live_call(call)

    worker = background_tasks.get("media-worker")
    assert worker.peer_count == 0 and worker.calls == {}
    assert await settle_to(baseline) == baseline
