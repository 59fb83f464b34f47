"""Every use of aiortc/aioice internals lives here (versions pinned exactly in pyproject).

What this relies on — aiortc 1.16.0, aioice 0.13.0 — and
tests/test_aiortc_internals.py fails loudly if an upgrade moves any of it:
- `aioice.ice.get_host_addresses`: the module function the gatherer calls.
- `RTCRtpSender.transport` is the `RTCDtlsTransport`, whose `_rx_srtp` / `_tx_srtp` are
  pylibsrtp Sessions once DTLS is done; `_send_rtp(data)` is the coroutine every outgoing
  RTP and RTCP packet of that transport goes through.
- `RTCDtlsTransport.transport._connection` is the aioice `Connection`; its protocols
  (`connection._protocols`, `datagram_received(data, addr)`) call
  `connection.data_received(data, component)` for every datagram that is not STUN, and
  `connection._nominated[1]` is the selected pair (`protocol.transport`, `remote_addr`).
  Audio-only, bundled, rtcp-mux: one component (1).
- aioice's `Connection.check_incoming(message, addr, protocol)`: called (as an instance
  attribute, also for checks deferred until connect()) for every authenticated incoming
  check, after the response is sent; it learns peer-reflexive candidates and starts
  triggered checks. `Connection._remote_candidates` (each with `_network_host`, `port`).
- `RTCCertificate.generateCertificate()` (a classmethod): what every RTCPeerConnection
  calls for its DTLS certificate; `RTCCertificate._create_ssl_context(srtp_profiles=)`:
  what RTCDtlsTransport.start calls on it for each handshake.
- aioice's `Connection.connect` (replaced whole, see _connect_without_a_last_tick) and the
  members it uses: `_check_periodic`, `_check_list_state`, `_check_list`, `_early_checks`.
- `aiortc.rtp.compute_audio_level_dbov(frame)`: what the sender calls on every frame it
  encodes (RFC 6465 level), a pure-Python loop over every sample.
- `RTCRtpSender._ssrc`; `RTCRtpReceiver._RTCRtpReceiver__remote_streams`, the per-SSRC
  `StreamStatistics` its RTCP receiver reports are built from (`packets_expected`,
  `packets_received`, `jitter` read; never `fraction_lost`, whose reading resets it).
- `RTCRtpSender._handle_rtcp_packet(packet)`: the coroutine the DTLS transport's RTCP
  router awaits (looked up on the instance) with every parsed RTCP packet whose report
  blocks name the sender's SSRC; `RtcpRrPacket` / `RtcpSrPacket` `.reports` with
  `ssrc`, `fraction_lost`, `packets_lost`, `jitter`, `lsr`, `dlsr`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aioice.ice
import aioice.stun
import aiortc.rtp
import numpy as np
import pylibsrtp
from aiortc import RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket
from av import AudioFrame

logger = logging.getLogger(__name__)

_original_get_host_addresses: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
_advertised: list[str] = []


def _filtered_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if not _advertised:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return [
        address
        for address in _advertised
        if (":" in address and use_ipv6) or (":" not in address and use_ipv4)
    ]


def advertise_host_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates only on `addresses` (empty: aioice's default).

    aioice has no option for this, and never offers 127.0.0.1 by itself; its gatherer
    calls the module-level `aioice.ice.get_host_addresses`, which we wrap. Process-wide.
    """
    _advertised[:] = list(addresses)
    aioice.ice.get_host_addresses = _filtered_host_addresses


# aioice 0.13.0's Connection.connect, whose source this replacement mirrors (the test
# fails if an upgrade changes it).
ORIGINAL_CONNECT_SHA256 = "da51be46190141ee23c03ab8d77c030b45e412b6430369790ba4665a7a7886d2"
_ICE_PACING_S = 0.02  # aioice's Ta: one new check per 20 ms
_original_connect = aioice.ice.Connection.connect


async def _connect_without_a_last_tick(self: aioice.Connection) -> None:
    """aioice's `Connection.connect`, less a wait. aioice starts one check per 20 ms tick
    and only reads the check list's result after the tick that finds nothing left to
    start: on loopback, where the first check and its nomination take under a
    millisecond, every connection waited ~20 ms with ICE already done (a third of a whole
    set-up, on each side). The same checks at the same pace; the pacing wait ends as soon
    as the check list completes or fails."""
    if not self._local_candidates_end:
        raise ConnectionError("Local candidates gathering was not performed")
    if self.remote_username is None or self.remote_password is None:
        raise ConnectionError("Remote username or password is missing")
    for remote_candidate in self._remote_candidates:
        self._pair_remote_candidate(remote_candidate)
    self.sort_check_list()
    self._unfreeze_initial()
    for early_check in self._early_checks:
        self.check_incoming(*early_check)
    self._early_checks.clear()
    self._early_checks_done = True

    state = self._check_list_state
    while self._check_periodic():
        if state.empty():
            getting = asyncio.ensure_future(state.get())
            await asyncio.wait([getting], timeout=_ICE_PACING_S)
            if getting.done():
                state.put_nowait(getting.result())  # read again below, as aioice does
            else:
                getting.cancel()

    result = await state.get() if self._check_list else aioice.ice.ICE_FAILED
    for check in self._check_list:
        if check.task:
            check.task.cancel()
    if result != aioice.ice.ICE_COMPLETED:
        raise ConnectionError("ICE negotiation failed")
    self._query_consent_task = asyncio.create_task(self.query_consent())


def end_ice_pacing_when_done() -> None:
    """Process-wide: ICE connections finish as soon as their check list does (above)."""
    aioice.ice.Connection.connect = _connect_without_a_last_tick  # type: ignore[method-assign]


class _SharedDtlsCertificate:
    """What `RTCCertificate.generateCertificate` returns once installed: one certificate
    for every peer connection of this process, made again every `lifetime_s`, with one
    SSL context per SRTP profile list (aiortc made a key pair and certificate for each
    connection and a context for each handshake: ~0.8 ms of the media loop per leg). A
    browser likewise keeps one certificate for many connections; the fingerprint in each
    answer names it, and its private key never leaves this process."""

    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._certificate: RTCCertificate | None = None
        self._made_at = 0.0

    def __call__(self) -> RTCCertificate:
        now = time.monotonic()
        if self._certificate is None or now - self._made_at > self.lifetime_s:
            self._certificate = self._with_shared_contexts(_original_generate_certificate())
            self._made_at = now
        return self._certificate

    @staticmethod
    def _with_shared_contexts(certificate: RTCCertificate) -> RTCCertificate:
        make_context = certificate._create_ssl_context
        contexts: dict[tuple[bytes, ...], Any] = {}

        def shared_context(srtp_profiles: list[Any]) -> Any:
            key = tuple(profile.openssl_profile for profile in srtp_profiles)
            if key not in contexts:
                contexts[key] = make_context(srtp_profiles=srtp_profiles)
            return contexts[key]

        # An instance attribute: RTCDtlsTransport.start calls it on the certificate.
        certificate._create_ssl_context = shared_context  # type: ignore[method-assign]
        return certificate


_original_generate_certificate = RTCCertificate.generateCertificate
DTLS_CERTIFICATE_LIFETIME_S = 3600.0  # aiortc's certificates are valid for 30 days


def share_dtls_certificate(lifetime_s: float = DTLS_CERTIFICATE_LIFETIME_S) -> None:
    """Process-wide: peer connections share one DTLS certificate (see above)."""
    RTCCertificate.generateCertificate = _SharedDtlsCertificate(lifetime_s)  # type: ignore[method-assign]


def ice_connections(transceivers: Sequence[RTCRtpTransceiver]) -> list[aioice.Connection]:
    """The aioice connections under these transceivers (one when bundled)."""
    connections: dict[int, aioice.Connection] = {}
    for transceiver in transceivers:
        dtls = transceiver.sender.transport
        if isinstance(dtls, RTCDtlsTransport):
            connection = dtls.transport._connection
            connections[id(connection)] = connection
    return list(connections.values())


def admit_peer_reflexive(connection: aioice.Connection, admit: Callable[[str, int], bool]) -> None:
    """An authenticated check from an address no candidate named makes aioice learn it as
    peer-reflexive and start triggered checks (with retransmissions) towards it (RFC 8445
    §7.3.1.3-4); only if `admit(host, port)`. Otherwise the check was answered (aioice has
    sent the response, one packet for one) and nothing more is sent there."""
    passed_on = connection.check_incoming

    def check_incoming(
        message: aioice.stun.Message, addr: tuple[str, int], protocol: aioice.ice.StunProtocol
    ) -> None:
        known = any(
            c._network_host == addr[0] and c.port == addr[1] for c in connection._remote_candidates
        )
        if known or admit(addr[0], addr[1]):
            passed_on(message, addr, protocol)

    # Shadows aioice's method on this one connection (mypy forbids assigning to a method).
    connection.check_incoming = check_incoming  # type: ignore[method-assign]


# aiortc's own, kept for comparison.
python_audio_level: Callable[[AudioFrame], int] = aiortc.rtp.compute_audio_level_dbov


def audio_level_dbov(frame: AudioFrame) -> int:
    """aiortc's RFC 6465 audio level, the same number, with numpy (~15x faster)."""
    # memoryview: numpy's stubs do not take PyAV's plane as a buffer (numpy itself does).
    samples = np.frombuffer(memoryview(frame.planes[0]), dtype=np.int16).astype(np.float64)
    rms = math.sqrt(float(np.dot(samples, samples)) / (frame.samples * 32767 * 32767))
    if rms <= 0:
        return -127
    return round(min(max(20 * math.log10(rms), -127), 0))


def use_numpy_audio_level() -> None:
    """Every aiortc sender in this process measures its audio level with numpy. Process-wide."""
    aiortc.rtp.compute_audio_level_dbov = audio_level_dbov


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192-223 sit where RTP has M+PT."""
    return len(data) >= 2 and 192 <= data[1] <= 223


class _SequenceAndTimestamp:
    """The two fields `StreamStatistics.add` reads, without parsing a whole RtpPacket."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self) -> None:
        self.sequence_number = 0
        self.timestamp = 0


class LegTransport:
    """The private parts of one leg's audio transport that the forwarding path drives.

    Built after the answer is set (the DTLS and ICE transports exist then); SRTP keys and
    the selected candidate pair only exist once connected, so sending before that is a
    no-op that says so.
    """

    def __init__(self, transceiver: RTCRtpTransceiver) -> None:
        dtls = transceiver.sender.transport
        if not isinstance(dtls, RTCDtlsTransport):
            raise RuntimeError("aiortc changed: the sender's transport is not RTCDtlsTransport")
        self.dtls = dtls
        self.connection: aioice.Connection = dtls.transport._connection
        self.receiver = transceiver.receiver
        self.sender_ssrc: int = transceiver.sender._ssrc
        self._pair: aioice.ice.CandidatePair | None = None
        self._sendto: Callable[[bytes, tuple[str, int]], None] | None = None
        self._address: tuple[str, int] | None = None
        self._probe = _SequenceAndTimestamp()
        # Name-mangled private attribute: mypy does not know it by its mangled name.
        self._statistics: dict[int, StreamStatistics] = (
            self.receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        )

    # --- incoming ------------------------------------------------------------------------
    def intercept_datagrams(self, handler: Callable[[bytes], bool]) -> None:
        """`handler(datagram)` sees every non-STUN datagram first; False passes it on."""
        passed_on = self.connection.data_received

        def data_received(data: bytes, component: int) -> None:
            try:
                taken = handler(data)
            except Exception:  # raised into aioice's protocol, it would close the socket
                logger.exception("forwarding: a datagram could not be handled")
                taken = True
            if not taken:
                passed_on(data, component)

        # Shadows aioice's method on this one connection (mypy forbids assigning to a method).
        self.connection.data_received = data_received  # type: ignore[method-assign]
        # Host sockets: RTP skips aioice's attempt to parse every datagram as STUN (an
        # exception per packet). STUN's first byte is 0-3, RTP's 128-191 (RFC 7983).
        for protocol in self.connection._protocols:
            stun_first = protocol.datagram_received

            def datagram_received(
                data: bytes,
                address: tuple[Any, ...],
                stun_first: Callable[[bytes, tuple[Any, ...]], None] = stun_first,
            ) -> None:
                if data and data[0] > 127:
                    data_received(data, 1)
                else:
                    stun_first(data, address)

            # Shadows the method on this socket's protocol. aioice annotates `data` as
            # bytes | str, but asyncio hands a datagram protocol bytes only.
            protocol.datagram_received = datagram_received  # type: ignore[method-assign,assignment]

    def unprotect(self, data: bytes) -> bytes | None:
        """The clear RTP packet; None before SRTP is keyed or if it is not authentic."""
        session = self.dtls._rx_srtp
        if session is None:
            return None
        try:
            return session.unprotect(data)
        except pylibsrtp.Error:
            return None  # replayed, forged or from an old key: dropped, as aiortc would

    def count_received(self, ssrc: int, sequence_number: int, timestamp: int) -> None:
        """Feed the receiver's RTCP statistics (its receiver reports stay truthful)."""
        statistics = self._statistics.get(ssrc)
        if statistics is None:
            statistics = self._statistics[ssrc] = StreamStatistics(48000)
        self._probe.sequence_number = sequence_number
        self._probe.timestamp = timestamp
        # add() reads only these two fields: a whole RtpPacket per packet is what the probe saves.
        statistics.add(self._probe)  # type: ignore[arg-type]

    def packets_lost(self) -> int:
        """Packets the leg sent that never arrived (sequence gaps), over its streams."""
        return sum(
            statistics.packets_lost
            for statistics in self._statistics.values()
            if statistics.max_seq is not None
        )

    # --- outgoing ------------------------------------------------------------------------
    def intercept_outgoing(
        self, on_rtp: Callable[[bytes], None], on_rtcp: Callable[[bytes], bytes]
    ) -> None:
        """aiortc's outgoing RTP of this transceiver's sender goes to `on_rtp` instead; RTCP
        passes through `on_rtcp`. Bundled senders share one transport: each interception
        takes only its own SSRC's packets and passes the rest on to the one before it."""
        send_rtp = self.dtls._send_rtp
        own_ssrc = self.sender_ssrc.to_bytes(4, "big")

        async def intercepted(data: bytes) -> None:
            if is_rtcp(data):
                await send_rtp(on_rtcp(data))
            elif data[8:12] == own_ssrc:
                on_rtp(data)
            else:
                await send_rtp(data)  # another sender's (its own interception, or the wire)

        # Shadows aiortc's method on this one transport (mypy forbids assigning to a method).
        self.dtls._send_rtp = intercepted  # type: ignore[method-assign]

    def protect_and_send(self, clear: bytes) -> bool:
        """Encrypt and send one RTP packet on the selected pair; False if not connected."""
        session = self.dtls._tx_srtp
        pair = self.connection._nominated.get(1)
        if session is None or pair is None:
            return False
        if pair is not self._pair:  # first packet, or ICE selected another pair
            self._pair = pair
            self._sendto = pair.protocol.transport.sendto
            self._address = pair.remote_addr
        assert self._sendto is not None and self._address is not None
        try:
            protected = session.protect(clear)
        except pylibsrtp.Error:  # an index SRTP has used already (a late, reordered packet)
            return False
        self._sendto(protected, self._address)
        return True


# --- what the server sees of a leg's quality (calls/media/quality.py judges it) ----------
_RTCP_SR = 200
_LSR_KEPT = 8  # sender reports remembered for RTT: a receiver reports on a recent one


@dataclass(frozen=True)
class ReceiverReport:
    """One RTCP report block about what the server sends (RFC 3550 §6.4.1)."""

    fraction_lost: int  # of 256, since the previous report
    packets_lost: int  # cumulative
    highest_sequence: int  # extended highest sequence number received
    upstream_gaps: int  # sequence numbers the server skipped itself, as the report came
    jitter: int  # in RTP timestamp units
    rtt_s: float | None  # from LSR / DLSR, when it names a sender report we sent


@dataclass(frozen=True)
class Received:
    """The server's own count of what a leg's client sent (all its SSRCs so far)."""

    expected: int
    received: int
    jitter: int  # RTP timestamp units (the latest SSRC's)


class QualityProbe:
    """Reads one leg's quality without changing aiortc's behaviour: the receiver's
    statistics (fed by aiortc, or by the forwarding tap), and the RTCP receiver reports the
    client sends about the server's stream, with the round trip measured against the sender
    reports as they left (the forwarding path rewrites them: aiortc's own RTT is then wrong).

    Install before anything else wraps the transport's `_send_rtp` (RtpOutlet does), so
    the sender reports seen are the ones on the wire."""

    def __init__(self, transceiver: RTCRtpTransceiver) -> None:
        sender = transceiver.sender
        dtls = sender.transport
        if not isinstance(dtls, RTCDtlsTransport):
            raise RuntimeError("aiortc changed: the sender's transport is not RTCDtlsTransport")
        self._ssrc: int = sender._ssrc
        self._statistics: dict[int, StreamStatistics] = (
            transceiver.receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        )
        self._sent_reports: OrderedDict[int, float] = OrderedDict()  # LSR → when it left
        self._reports: list[ReceiverReport] = []
        # The forwarding path's outlet passes on the gaps of the leg it forwards: those are
        # not this leg's loss (RtpOutlet.skipped); zero where aiortc numbers its own packets.
        self.upstream_gaps: Callable[[], int] = lambda: 0
        send_rtp = dtls._send_rtp

        async def watch_sent(data: bytes) -> None:
            self._note_sent(data)
            await send_rtp(data)

        # Shadows aiortc's method on this one transport (mypy forbids assigning to a method).
        dtls._send_rtp = watch_sent  # type: ignore[method-assign]
        handle_rtcp = sender._handle_rtcp_packet

        async def watch_rtcp(packet: Any) -> None:
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                self._note_reports(packet)
            await handle_rtcp(packet)

        # Shadows the method on this one sender (the router looks it up on the instance).
        sender._handle_rtcp_packet = watch_rtcp  # type: ignore[method-assign]

    def _note_sent(self, data: bytes) -> None:
        # A compound RTCP packet starts with our sender report: note its NTP's middle bits.
        if len(data) < 16 or data[1] != _RTCP_SR or int.from_bytes(data[4:8], "big") != self._ssrc:
            return
        self._sent_reports[int.from_bytes(data[10:14], "big")] = time.monotonic()
        while len(self._sent_reports) > _LSR_KEPT:
            self._sent_reports.popitem(last=False)

    def _note_reports(self, packet: RtcpRrPacket | RtcpSrPacket) -> None:
        now = time.monotonic()
        for block in packet.reports:
            if block.ssrc != self._ssrc:
                continue
            sent_at = self._sent_reports.get(block.lsr) if block.lsr else None
            rtt = None if sent_at is None else max(now - sent_at - block.dlsr / 65536, 0.0)
            report = ReceiverReport(
                fraction_lost=block.fraction_lost,
                packets_lost=block.packets_lost,
                highest_sequence=block.highest_sequence,
                upstream_gaps=self.upstream_gaps(),
                jitter=block.jitter,
                rtt_s=rtt,
            )
            self._reports.append(report)
            del self._reports[:-_LSR_KEPT]  # bounded if nobody reads them

    def take_reports(self) -> list[ReceiverReport]:
        """The receiver reports since the last call."""
        reports, self._reports = self._reports, []
        return reports

    def received(self) -> Received:
        streams = list(self._statistics.values())
        started = [s for s in streams if s.max_seq is not None]
        return Received(
            expected=sum(s.packets_expected for s in started),
            received=sum(s.packets_received for s in started),
            jitter=started[-1].jitter if started else 0,
        )
