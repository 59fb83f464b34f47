"""The forwarding media path: Opus relayed between legs, decoded only when something needs it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiortc.stats import RTCInboundRtpStreamStats

from calls.background import background_tasks
from calls.media.audio import silence_frame
from calls.media.capture import capture_path
from calls.media.forwarding import OpusDecoder
from calls.media.peer import LegPeer
from tests.support.live_call import OPERATOR_TONE, USER_TONE, LiveCall, add_to_library
from tests.support.media_peers import ClientPeer, hear_each_other, opus_tone

pytestmark = pytest.mark.django_db(transaction=True)


def test_decoded_audio_has_the_layout_of_silence() -> None:
    # aiortc's encoder fixes its resampler on the first frame and refuses any other layout
    # (its sender then stops for good): a mix must look like the silence sent before it.
    (frame,) = OpusDecoder().decode(opus_tone(440, 0.04)[0])
    assert frame.layout.name == silence_frame().layout.name
    assert frame.format.name == silence_frame().format.name


def server_legs(call_id: str) -> dict[str, LegPeer]:
    return dict(background_tasks.get("media-worker").calls[call_id].legs)


async def inbound_stats(peer: ClientPeer) -> list[RTCInboundRtpStreamStats]:
    report = await asyncio.wait_for(peer.pc.getStats(), 5)
    return [s for s in report.values() if isinstance(s, RTCInboundRtpStreamStats)]


async def test_a_bridged_call_is_forwarded_without_decoding(live_call: LiveCall) -> None:
    legs = server_legs(live_call.call_id)
    assert set(legs) == {"user", "operator"}
    for leg in legs.values():
        assert leg.tap is not None and leg.outlet is not None
        assert leg.tap.packets > 50 and leg.outlet.packets > 50
        assert not leg.tap.decoding
        assert leg.inbound is not None and leg.inbound.frames_received == 0  # nothing decoded
        assert leg.outbound.frames_sent == 0  # nothing encoded
    # The stream each client gets is the SSRC our answer announced, with nothing lost.
    for client, leg in (
        (live_call.user_peer, legs["user"]),
        (live_call.operator_peer, legs["operator"]),
    ):
        (stream,) = await inbound_stats(client)
        assert stream.packetsReceived > 50
        assert stream.packetsLost == 0
        assert (
            leg.outlet is not None and f"a=ssrc:{leg.outlet.ssrc} " in leg.pc.localDescription.sdp
        )


async def test_recording_decodes_nothing_while_the_call_runs(
    live_call: LiveCall, settings: Any
) -> None:
    await live_call.consent_all()
    legs = server_legs(live_call.call_id)
    started = await live_call.post(
        f"/api/calls/{live_call.call_id}/record", live_call.operator_token
    )
    assert started.status_code == 201, started.json()
    wav = Path(settings.MEDIA_ROOT) / "recordings" / started.json()["fileName"]
    capture = capture_path(wav)
    await asyncio.sleep(1.5)
    # Packets are captured as they came (flushed every 0.5 s); nothing decoded or encoded.
    assert capture.stat().st_size > 20_000
    for leg in legs.values():
        assert leg.tap is not None and not leg.tap.decoding and leg.tap.captures
        assert leg.inbound is not None and leg.inbound.frames_received == 0
        assert leg.outbound.frames_sent == 0
    stopped = await live_call.post(
        f"/api/calls/{live_call.call_id}/record/stop", live_call.operator_token
    )
    assert stopped.status_code == 200, stopped.json()
    assert not capture.exists()  # rendered into the WAV, then removed
    assert not any(leg.tap is not None and leg.tap.captures for leg in legs.values())
    assert all(
        leg.inbound is not None and leg.inbound.frames_received == 0 for leg in legs.values()
    )
    assert stopped.json()["sizeBytes"] == wav.stat().st_size > 48000 * 4
    await hear_each_other(
        (live_call.operator_peer, USER_TONE), (live_call.user_peer, OPERATOR_TONE)
    )


async def test_a_playback_mixes_then_goes_back_to_forwarding(
    live_call: LiveCall, tmp_path: Path
) -> None:
    await add_to_library(tmp_path, "chime", 600, 1.5)
    legs = server_legs(live_call.call_id)
    played = await live_call.post(
        f"/api/calls/{live_call.call_id}/play",
        live_call.operator_token,
        {"file": "chime", "to": "user"},
    )
    assert played.status_code == 200, played.json()
    await asyncio.sleep(0.8)
    # The user hears the operator mixed with the file: the operator's audio is decoded and
    # the user's re-encoded; the operator still gets the user's audio forwarded.
    assert legs["operator"].tap is not None and legs["operator"].tap.decoding
    assert legs["user"].outbound.frames_sent > 0
    assert live_call.user_peer.sink.strength(600) > 0.2
    assert live_call.user_peer.sink.strength(OPERATOR_TONE) > 0.2
    assert legs["operator"].outbound.frames_sent == 0
    await asyncio.sleep(1.5)  # the file is over
    assert not legs["operator"].tap.decoding
    encoded = legs["user"].outbound.frames_sent
    await live_call.user_peer.hears(OPERATOR_TONE)
    assert legs["user"].outbound.frames_sent == encoded  # forwarded again
    # One continuous stream through the switches: one SSRC, no gap in its numbering.
    (stream,) = await inbound_stats(live_call.user_peer)
    assert stream.packetsLost == 0


async def test_the_stream_continues_when_the_other_party_reconnects(
    live_call: LiveCall,
) -> None:
    leg_id = server_legs(live_call.call_id)["user"].leg_id
    await live_call.user.send({"type": "close", "sessionId": leg_id})
    await live_call.operator.expect("event", "media.disconnected")
    await live_call.user_peer.close()
    again = ClientPeer(660)
    live_call.user_peer = again  # the fixture closes it
    answer = await live_call.user.offer(
        live_call.user_token, await again.offer(), callSid=live_call.call_id
    )
    await again.accept(answer["data"]["sdp"])
    await again.wait_connected()
    await hear_each_other((live_call.operator_peer, 660), (again, OPERATOR_TONE))
    # The operator's client saw one stream: the new source continues its numbering.
    (stream,) = await inbound_stats(live_call.operator_peer)
    assert stream.packetsLost == 0
    assert stream.packetsReceived > 100


async def test_echo_is_forwarded_back(asgi_app: Any, live_call: LiveCall) -> None:
    response = await live_call.post("/api/calls", live_call.operator_token, {"mode": "echo"})
    assert response.status_code == 201, response.json()
    call_id = response.json()["callID"]
    peer = ClientPeer(523)
    try:
        answer = await live_call.operator.offer(
            live_call.operator_token, await peer.offer(), callSid=call_id
        )
        await peer.accept(answer["data"]["sdp"])
        await peer.wait_connected()
        await peer.hears(523)
        (leg,) = server_legs(call_id).values()
        assert leg.outlet is not None and leg.outlet.packets > 20
        assert leg.inbound is not None and leg.inbound.frames_received == 0
    finally:
        await peer.close()


@pytest.fixture
def decode_path(settings: Any) -> None:
    """The stock path (the benchmark's baseline): set before the services start."""
    settings.CALLBRIDGE_MEDIA_PATH = "decode"


async def test_the_decode_path_decodes_and_reencodes_everything(
    decode_path: None, live_call: LiveCall, settings: Any
) -> None:
    legs = server_legs(live_call.call_id)
    for leg in legs.values():
        assert leg.tap is None and leg.outlet is None
        assert leg.inbound is not None and leg.inbound.frames_received > 50
        assert leg.outbound.frames_sent > 50
    # Recording there writes the WAV live from the decoded frames (no capture file).
    await live_call.consent_all()
    started = await live_call.post(
        f"/api/calls/{live_call.call_id}/record", live_call.operator_token
    )
    wav = Path(settings.MEDIA_ROOT) / "recordings" / started.json()["fileName"]
    await asyncio.sleep(1.0)
    assert not capture_path(wav).exists() and wav.stat().st_size > 48000 * 4 // 2
    stopped = await live_call.post(
        f"/api/calls/{live_call.call_id}/record/stop", live_call.operator_token
    )
    assert stopped.json()["sizeBytes"] == wav.stat().st_size
