"""A cheap client leg: aiortc negotiates, then we send and count RTP ourselves.

Every use of aiortc/aioice internals in bench/ lives in this module. It relies on
(aiortc==1.16.0, aioice==0.13.0, pylibsrtp 1.0, pinned exactly in pyproject.toml):

- `RTCRtpSender.transport` is the RTCDtlsTransport; its `_tx_srtp` / `_rx_srtp` are the
  pylibsrtp Sessions keyed by the DTLS handshake (set once the leg is connected);
- `RTCDtlsTransport.transport` is the RTCIceTransport, whose `_connection` is the aioice
  Connection; `Connection._nominated[1]` is the selected CandidatePair, with `.protocol`
  (aioice StunProtocol: `.transport` is its asyncio DatagramTransport, and
  `datagram_received` is called for every datagram) and `.remote_addr`;
- `RTCRtpSender._RTCRtpSender__rtp_task` is the sender's RTP loop, which with no track
  wakes every 20 ms; we cancel it (its `stop()` copes);
- `RTCRtpSender._ssrc` is the SSRC announced in our SDP (we send with it);
- `Connection._query_consent_task` is aioice's consent-freshness loop (a STUN request
  every ~5 s that closes the leg after 6 late answers); we cancel it on load legs, so a
  generator that falls behind is reported as late instead of silently losing legs. We
  still answer the server's consent checks (STUN goes to aioice as before).

(Gathering only on 127.0.0.1 reuses the server's shim,
`calls.media.aiortc_internals.advertise_host_addresses`.) tests/test_bench_fastleg.py fails
if an upgrade moves any of this.

Why: aiortc's own path encodes and decodes every 20 ms frame in Python (plus a Python
audio-level loop), so a generator built on it would cost as much per leg as the server it
measures. Here a leg sends pre-encoded Opus payloads (bench.audio) behind a header we
build, protected with the leg's SRTP session, straight onto the nominated pair's socket;
it receives by overriding the pair protocol's `datagram_received` (an instance attribute)
so RTP never reaches aiortc: load legs only read the clear header and the length, probe
legs unprotect and decode (bench.audio.PulseDetector). STUN (ICE consent) and RTCP still
go to aioice/aiortc untouched.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from bench.audio import FRAME_SAMPLES, SOUND_MIN_BYTES, PulseDetector
from calls.media.aiortc_internals import advertise_host_addresses, end_ice_pacing_when_done

_HEADER = struct.Struct("!BBHII")
_OPUS_PT = re.compile(r"a=rtpmap:(\d+) opus/48000", re.IGNORECASE)


def _opus_only() -> list:
    return [
        codec
        for codec in RTCRtpSender.getCapabilities("audio").codecs
        if codec.mimeType.lower() == "audio/opus"
    ]


def _rtp_header_length(data: bytes) -> int:
    length = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:  # header extension: 4 bytes + its 32-bit words
        words = (data[length + 2] << 8) | data[length + 3]
        length += 4 + 4 * words
    return length


def _is_rtp(data: bytes) -> bool:
    # RFC 7983: 128..191 is RTP/RTCP; RFC 5761: packet types 192..223 are RTCP.
    return len(data) > 12 and 127 < data[0] < 192 and not 192 <= data[1] <= 223


class FastLeg:
    """One client peer connection sending pre-encoded Opus and counting what it hears."""

    def __init__(self, name: str, probe: bool = False, tracks: int = 1) -> None:
        advertise_host_addresses(["127.0.0.1"])  # aioice never offers loopback by itself
        end_ice_pacing_when_done()  # a browser's ICE ends when its checks do (as the server's)
        self.name = name
        # Audio m-lines offered: a supervisor's leg offers 2 (the second receive-only) and
        # is sent each party on its own SSRC, counted apart in received_sound_by_ssrc.
        self.tracks = tracks
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.connected = asyncio.Event()
        self.connected_at: float | None = None  # perf_counter time it became connected
        self.failed = False
        self.detector = PulseDetector() if probe else None
        # counters read by the generator
        self.sent = 0
        self.sent_sound = 0
        self.received = 0
        self.received_sound = 0
        self.received_sound_by_ssrc: Counter[int] = Counter()
        self.onsets: list[float] = []  # perf_counter times pulses began (probe legs)
        self.undecodable = 0
        self._payload_type = 111
        self._seq = 0
        self._timestamp = 0
        self._tag_length: int | None = None
        self._send: Callable[[bytes, Any], None] | None = None
        self._remote: tuple[str, int] | None = None
        self._tx: Any = None
        self._rx: Any = None
        self._ssrc = 0

        @self.pc.on("connectionstatechange")
        def _on_state() -> None:
            if self.pc.connectionState == "connected":
                self.connected_at = time.perf_counter()
                self.connected.set()
            elif self.pc.connectionState in ("failed", "closed"):
                # e.g. ICE consent expired: its socket is closed, and asyncio would only
                # log (not raise) on every later send. send() raises instead.
                self.failed = True
                self._send = None
                self.connected.set()

    def _transceiver(self) -> RTCRtpTransceiver:
        return self.pc.getTransceivers()[0]

    async def offer(self) -> str:
        """Our offer SDP (Opus only, sendrecv, every candidate included)."""
        transceiver = self.pc.addTransceiver("audio", direction="sendrecv")
        transceiver.setCodecPreferences(_opus_only())
        for _ in range(self.tracks - 1):
            self.pc.addTransceiver("audio", direction="recvonly").setCodecPreferences(_opus_only())
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        self._payload_type = int(_OPUS_PT.search(sdp).group(1))
        return sdp

    async def answer(self, offer_sdp: str) -> str:
        """Answer another leg's offer (the direct peer-to-peer pair)."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        self._transceiver().direction = "sendrecv"
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._payload_type = int(_OPUS_PT.search(self.pc.localDescription.sdp).group(1))
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def wait_connected(self, within: float) -> None:
        await asyncio.wait_for(self.connected.wait(), within)
        if self.failed:
            raise ConnectionError(f"{self.name}: peer connection failed")

    def take_over(self) -> None:
        """Once connected: stop aiortc's RTP loop and route our RTP around aiortc."""
        if self.failed:
            raise ConnectionError(f"{self.name}: {self.pc.connectionState}")
        sender = self._transceiver().sender
        dtls = sender.transport
        connection = dtls.transport._connection
        pair = connection._nominated[1]
        consent = connection._query_consent_task
        if consent is not None:
            consent.cancel()
        self._tx, self._rx = dtls._tx_srtp, dtls._rx_srtp
        self._ssrc = sender._ssrc
        self._send = pair.protocol.transport.sendto
        self._remote = pair.remote_addr
        rtp_task = sender._RTCRtpSender__rtp_task
        if rtp_task is not None:
            rtp_task.cancel()
        to_aioice = pair.protocol.datagram_received

        def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
            if _is_rtp(data):
                self._on_rtp(data)
            else:
                to_aioice(data, addr)

        pair.protocol.datagram_received = datagram_received

    def send(self, payload: bytes, sound: bool, marker: bool = False) -> None:
        """Send one 20 ms Opus payload (call on the leg's 20 ms tick)."""
        if self._send is None:
            raise ConnectionError(f"{self.name}: not connected ({self.pc.connectionState})")
        self._seq = (self._seq + 1) & 0xFFFF
        self._timestamp = (self._timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        second = self._payload_type | (0x80 if marker else 0)
        header = _HEADER.pack(0x80, second, self._seq, self._timestamp, self._ssrc)
        self._send(self._tx.protect(header + payload), self._remote)
        self.sent += 1
        if sound:
            self.sent_sound += 1

    def _on_rtp(self, data: bytes) -> None:
        self.received += 1
        if self._tag_length is None:  # learn the SRTP auth tag length from one packet
            self._tag_length = len(data) - len(self._rx.unprotect(data))
            return  # (that packet is spent: its sequence number is now replayed)
        payload_length = len(data) - _rtp_header_length(data) - self._tag_length
        if payload_length >= SOUND_MIN_BYTES:
            self.received_sound += 1
            if self.tracks > 1:
                self.received_sound_by_ssrc[int.from_bytes(data[8:12], "big")] += 1
        if self.detector is not None:
            arrival = time.perf_counter()
            try:  # an exception here would close the socket (asyncio's fatal-error path)
                clear = self._rx.unprotect(data)
                onset = self.detector.onset(clear[_rtp_header_length(clear) :], arrival)
            except Exception:
                self.undecodable += 1
                return
            if onset is not None:
                self.onsets.append(onset)

    def reset_counters(self) -> None:
        self.sent = self.sent_sound = self.received = self.received_sound = 0
        self.received_sound_by_ssrc.clear()
        self.onsets.clear()

    async def close(self) -> None:
        await self.pc.close()
