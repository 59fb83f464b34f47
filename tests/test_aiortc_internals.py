"""Fails loudly when an aiortc/aioice upgrade moves what calls/media/aiortc_internals.py uses.

Two real aiortc peers on 127.0.0.1; every LegTransport operation is exercised on the wire.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
import struct
import tomllib
from collections.abc import AsyncIterator, Callable
from importlib.metadata import version
from pathlib import Path

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import SRTP_PROFILES
from aiortc.stats import RTCInboundRtpStreamStats

from calls.media import aiortc_internals
from calls.media.aiortc_internals import (
    LegTransport,
    QualityProbe,
    ReceiverReport,
    advertise_host_addresses,
    audio_level_dbov,
    is_rtcp,
    use_numpy_audio_level,
)
from tests.support.media_peers import ToneTrack

ROOT = Path(__file__).resolve().parent.parent


def test_the_versions_it_was_written_for_are_pinned_exactly() -> None:
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "aiortc==1.16.0" in pins and "aioice==0.13.0" in pins
    assert version("aiortc") == "1.16.0" and version("aioice") == "0.13.0"


@pytest.mark.parametrize("layout", ["mono", "stereo"])
@pytest.mark.parametrize("amplitude", [0, 1, 30, 1000, 32767])
def test_the_numpy_audio_level_is_aiortcs_number(layout: str, amplitude: int) -> None:
    import numpy as np
    from av import AudioFrame

    channels = 2 if layout == "stereo" else 1
    noise = np.random.default_rng(amplitude).integers(-amplitude, amplitude + 1, 960 * channels)
    frame = AudioFrame.from_ndarray(
        noise.astype(np.int16).reshape(1, -1), format="s16", layout=layout
    )
    assert audio_level_dbov(frame) == aiortc_internals.python_audio_level(frame)


def test_the_sender_calls_the_replaced_audio_level() -> None:
    import aiortc.rtcrtpsender

    source = Path(aiortc.rtcrtpsender.__file__).read_text()
    assert "rtp.compute_audio_level_dbov(data)" in source, "aiortc's sender moved its level call"
    use_numpy_audio_level()
    import aiortc.rtp

    assert aiortc.rtp.compute_audio_level_dbov is audio_level_dbov


def test_aioice_learns_peer_reflexive_addresses_where_admit_peer_reflexive_wraps() -> None:
    # admit_peer_reflexive replaces Connection.check_incoming on the instance: both places
    # that handle a client's check must call it through `self`, after the response is sent.
    import inspect

    from aioice.ice import Connection

    received = inspect.getsource(Connection.request_received)
    assert received.index("protocol.send_stun(response, addr)") < received.index(
        "self.check_incoming(message, addr, protocol)"
    )
    assert "self.check_incoming(*early_check)" in inspect.getsource(Connection.connect)
    learning = inspect.getsource(Connection.check_incoming)
    assert "self._remote_candidates" in learning and "c._network_host" in learning
    assert '"prflx"' in learning and "self.check_start_task(pair)" in learning


class Pair:
    """A sender `a` (tone) and a receiver `b`, connected, with `b`'s transport internals."""

    def __init__(self) -> None:
        advertise_host_addresses(["127.0.0.1"])
        self.a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.a.addTrack(ToneTrack(440))
        self.b.addTransceiver("audio", direction="recvonly")

    async def connect(self, before_media: Callable[[], None] = lambda: None) -> None:
        """Negotiate; `before_media` runs once the transports exist, before any RTP flows."""
        both = asyncio.Event()

        def connected() -> None:
            if self.a.connectionState == self.b.connectionState == "connected":
                both.set()

        self.a.on("connectionstatechange", connected)
        self.b.on("connectionstatechange", connected)
        await self.a.setLocalDescription(await self.a.createOffer())
        await self.b.setRemoteDescription(self.a.localDescription)
        await self.b.setLocalDescription(await self.b.createAnswer())
        await self.a.setRemoteDescription(self.b.localDescription)
        before_media()
        async with asyncio.timeout(10):
            await both.wait()

    def transport(self, pc: RTCPeerConnection) -> LegTransport:
        return LegTransport(pc.getTransceivers()[0])

    def opus_payload_type(self) -> int:
        match = re.search(r"a=rtpmap:(\d+) opus/48000", self.a.localDescription.sdp)
        assert match is not None
        return int(match.group(1))

    async def close(self) -> None:
        await self.a.close()
        await self.b.close()


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    connected = Pair()
    await connected.connect()
    yield connected
    await connected.close()


async def collect(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def test_incoming_rtp_can_be_taken_off_the_wire_and_decrypted(pair: Pair) -> None:
    receiving = pair.transport(pair.b)
    clear_packets: list[bytes] = []

    def take(datagram: bytes) -> bool:
        if is_rtcp(datagram) or not 127 < datagram[0] < 192:
            return False  # DTLS / RTCP: aiortc keeps them
        clear = receiving.unprotect(datagram)
        assert clear is not None, "SRTP session moved: RTCDtlsTransport._rx_srtp"
        clear_packets.append(clear)
        return True

    receiving.intercept_datagrams(take)
    await collect(0.5)
    assert len(clear_packets) > 10, "aioice no longer calls Connection.data_received"
    payload_type = clear_packets[0][1] & 0x7F
    assert payload_type == pair.opus_payload_type()
    # A forged packet is refused, not raised.
    assert receiving.unprotect(b"\x80" + bytes(40)) is None


async def test_counted_packets_reach_the_receivers_statistics(pair: Pair) -> None:
    receiving = pair.transport(pair.b)
    receiving.intercept_datagrams(lambda datagram: not is_rtcp(datagram) and datagram[0] > 127)
    for sequence in range(100, 150):
        receiving.count_received(0x1234, sequence, sequence * 960)
    report = await asyncio.wait_for(pair.b.getStats(), 5)
    inbound = [s for s in report.values() if isinstance(s, RTCInboundRtpStreamStats)]
    assert [s.packetsReceived for s in inbound if s.ssrc == 0x1234] == [50], (
        "RTCRtpReceiver.__remote_streams moved: receiver reports would be empty"
    )


async def test_outgoing_rtp_can_be_taken_and_sent_ourselves() -> None:
    # As the media worker does: aiortc's sender is intercepted before it sends anything,
    # so SRTP's replay window starts at our numbering.
    pair = Pair()
    from_aiortc: list[bytes] = []
    rtcp_seen: list[int] = []

    def rtcp(data: bytes) -> bytes:
        rtcp_seen.append(data[1])
        return data

    def intercept() -> None:
        pair.transport(pair.a).intercept_outgoing(on_rtp=from_aiortc.append, on_rtcp=rtcp)

    try:
        await pair.connect(before_media=intercept)
        await check_our_own_packets_arrive(pair, from_aiortc, rtcp_seen)
    finally:
        await pair.close()


async def check_our_own_packets_arrive(
    pair: Pair, from_aiortc: list[bytes], rtcp_seen: list[int]
) -> None:
    sending = pair.transport(pair.a)
    receiving = pair.transport(pair.b)
    arrived: list[bytes] = []

    def take(datagram: bytes) -> bool:
        if is_rtcp(datagram) or not 127 < datagram[0] < 192:
            return False
        clear = receiving.unprotect(datagram)
        if clear is not None:
            arrived.append(clear)
        return True

    receiving.intercept_datagrams(take)
    await collect(0.3)
    arrived.clear()
    await collect(1.8)  # aiortc sends RTCP every 0.5-1.5 s
    assert len(from_aiortc) > 20, "RTCRtpSender no longer sends through _send_rtp"
    assert 200 in rtcp_seen, "sender reports no longer pass through _send_rtp"
    assert arrived == [], "aiortc's RTP still reached the wire"
    # What we send ourselves arrives, byte for byte, under the sender's SSRC.
    header = struct.pack("!BBHII", 0x80, pair.opus_payload_type(), 7, 960, sending.sender_ssrc)
    packet = header + b"\xfc" + bytes(40)
    assert sending.protect_and_send(packet), "the nominated pair moved: Connection._nominated"
    await collect(0.2)
    assert arrived == [packet]
    assert f"a=ssrc:{sending.sender_ssrc} " in pair.a.localDescription.sdp


async def test_the_quality_probe_reads_reports_and_measures_the_round_trip() -> None:
    # Installed before RTP flows, as LegPeer does: every sender report leaving is seen, and
    # the peer's receiver reports (aiortc sends one about every second) reach it parsed.
    pair = Pair()
    probes: list[QualityProbe] = []

    def install() -> None:
        probes.extend(QualityProbe(pc.getTransceivers()[0]) for pc in (pair.a, pair.b))

    await pair.connect(install)
    probe, receiving = probes
    try:
        reports: list[ReceiverReport] = []
        async with asyncio.timeout(10):
            while not any(r.rtt_s is not None for r in reports):
                await asyncio.sleep(0.2)
                reports += probe.take_reports()
        assert reports, "RTCRtpSender._handle_rtcp_packet no longer gets the receiver reports"
        measured = [r.rtt_s for r in reports if r.rtt_s is not None]
        assert all(0 <= rtt < 1 for rtt in measured), measured  # loopback: well under 1 s
        assert reports[-1].highest_sequence > 0 and reports[-1].upstream_gaps == 0
        received = receiving.received()
        assert received.expected >= received.received > 10, (
            "RTCRtpReceiver.__remote_streams or StreamStatistics moved"
        )
        # aiortc still gets them: its own stats name the remote-inbound stream.
        stats = await asyncio.wait_for(pair.a.getSenders()[0].getStats(), 5)
        assert any(s.type == "remote-inbound-rtp" for s in stats.values())
    finally:
        await pair.close()


def test_the_replaced_ice_connect_mirrors_aioices_own() -> None:
    """end_ice_pacing_when_done replaces aioice's Connection.connect with a copy less one
    wait: an aioice whose connect() changed must be read again before it is replaced."""
    source = inspect.getsource(aioice.ice.Connection.connect)
    if aioice.ice.Connection.connect is aiortc_internals._connect_without_a_last_tick:
        source = inspect.getsource(aiortc_internals._original_connect)
    assert hashlib.sha256(source.encode()).hexdigest() == aiortc_internals.ORIGINAL_CONNECT_SHA256


async def test_ice_connects_as_before_with_the_pacing_wait_ended() -> None:
    aiortc_internals.end_ice_pacing_when_done()
    connected = Pair()
    try:
        await connected.connect()  # ICE, then DTLS over it, within its timeout
        for pc in (connected.a, connected.b):
            (connection,) = aiortc_internals.ice_connections(pc.getTransceivers())
            assert connection._query_consent_task is not None  # consent checks run, as before
            assert connection._nominated[1] is not None
    finally:
        await connected.close()


async def test_peer_connections_share_one_dtls_certificate_and_still_connect() -> None:
    aiortc_internals.share_dtls_certificate()
    connected = Pair()
    try:
        await connected.connect()
        fingerprints = {
            re.search(r"a=fingerprint:(.+)", pc.localDescription.sdp).group(1)  # type: ignore[union-attr]
            for pc in (connected.a, connected.b)
        }
        assert len(fingerprints) == 1  # one certificate: both peers of this process show it
    finally:
        await connected.close()
    shared = aiortc_internals._SharedDtlsCertificate(lifetime_s=60)
    certificate = shared()
    assert shared() is certificate
    context = certificate._create_ssl_context(srtp_profiles=SRTP_PROFILES)
    assert certificate._create_ssl_context(srtp_profiles=SRTP_PROFILES) is context
    renewed = aiortc_internals._SharedDtlsCertificate(lifetime_s=0.0)
    assert renewed() is not renewed()  # a new certificate once its lifetime has passed
