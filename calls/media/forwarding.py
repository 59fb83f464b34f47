"""The forwarding path: Opus RTP payloads go from one leg to another without decode/encode.

`RtpTap` takes a leg's incoming SRTP off the wire before aiortc's receive path (no jitter
buffer prefetch, no decoder thread), decrypts it once and hands the clear packet to the
outlets listening to that leg. Only while someone needs the leg's audio as samples (a
recording, a playback mixed over its voice) does it decode the payloads, in place, and
hand the frames on.

`RtpOutlet` is everything one leg hears, as one RTP stream: forwarded packets from
whichever leg it listens to, and aiortc's own encoded packets (silence, playback mixes),
renumbered into one continuous SSRC / sequence / timestamp space, so a change of source
(the other party reconnects, a playback starts) looks to the browser like a new talkspurt
of the same stream. It rewrites the sender reports aiortc sends so that they describe
this stream.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from fractions import Fraction

import av
from av import AudioFrame

from calls.media.aiortc_internals import LegTransport, is_rtcp

CLOCK_RATE = 48000  # Opus's RTP clock, whatever the sampling rate
FRAME_TICKS = 960  # 20 ms
_FIXED_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
_SENDER_INFO = struct.Struct("!QIII")  # NTP time, RTP time, packets, octets
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970
_RTCP_SR = 200
ENCODER = "encoder"  # the source name of aiortc's own encoded packets


def ntp_now() -> int:
    return int((time.time() + _NTP_EPOCH_OFFSET) * (1 << 32))


def payload_offset(clear: bytes) -> int:
    """Where a clear RTP packet's payload starts: after its CSRCs and header extensions."""
    first = clear[0]
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        offset += 4 + 4 * int.from_bytes(clear[offset + 2 : offset + 4], "big")
    return offset


def rtp_payload(clear: bytes) -> bytes:
    """The payload of a clear RTP packet: after CSRCs and extensions, before padding."""
    end = len(clear) - clear[-1] if clear[0] & 0x20 else len(clear)
    return clear[payload_offset(clear) : end]


class OpusDecoder:
    """Opus payloads to 48 kHz s16 frames. Stereo for mixing: what a leg hears must keep one
    layout (silence and aiortc's decoder are stereo; its encoder refuses a change)."""

    def __init__(self, layout: str = "stereo") -> None:
        self._codec = av.CodecContext.create("libopus", "r")
        self._codec.format = "s16"
        self._codec.layout = layout
        self._codec.sample_rate = CLOCK_RATE

    def decode(self, payload: bytes) -> list[AudioFrame]:
        try:
            frames = self._codec.decode(av.Packet(payload))
        except av.error.FFmpegError:
            return []  # a corrupt payload is a lost packet
        for frame in frames:
            frame.time_base = _TIME_BASE
        return frames


_TIME_BASE = Fraction(1, CLOCK_RATE)


class RtpOutlet:
    """One leg's outgoing audio stream (see the module docstring)."""

    def __init__(self, transport: LegTransport, payload_type: int) -> None:
        self._transport = transport
        self.ssrc = transport.sender_ssrc
        self.payload_type = payload_type
        self._source: object = None
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_seq = random.getrandbits(16)
        self._last_ts = random.getrandbits(32)
        self._last_at: float | None = None
        self.packets = 0
        self.octets = 0
        # Sequence numbers skipped in what was forwarded (lost before reaching the server):
        # the client reports them lost, but they are not this leg's loss (call quality).
        self.skipped = 0
        self._last_in_seq = 0
        self.forwarded = 0  # packets of other legs (not aiortc's own): calls.metrics
        # Recordings of what this leg hears (a held caller: the hold audio): payloads sent.
        self.captures: list[Callable[[bytes], None]] = []
        transport.intercept_outgoing(
            on_rtp=lambda packet: self.send(packet, ENCODER), on_rtcp=self.sender_report
        )

    def send(self, clear: bytes, source: object) -> None:
        """Send `clear` (an RTP packet from `source`) as the next packet of this stream."""
        first, second, sequence, timestamp, _ = _FIXED_HEADER.unpack_from(clear)
        if source is not self._source:
            self._rebase(source, sequence, timestamp)
            second |= 0x80  # marker: the start of a talkspurt
        else:
            step = (sequence - self._last_in_seq) & 0xFFFF
            self.skipped += step - 1 if step < 0x8000 else -1  # a late packet fills a gap
        self._last_in_seq = sequence
        # CSRCs and header extensions are dropped: the extension ids belong to the other SDP.
        offset = payload_offset(clear)
        sequence = (sequence + self._seq_offset) & 0xFFFF
        timestamp = (timestamp + self._ts_offset) & 0xFFFFFFFF
        packet = (
            _FIXED_HEADER.pack(
                0x80 | (first & 0x20),  # keep the padding bit: the padding is in the payload
                (second & 0x80) | self.payload_type,
                sequence,
                timestamp,
                self.ssrc,
            )
            + clear[offset:]
        )
        if self._transport.protect_and_send(packet):
            self.packets += 1
            self.octets += len(packet) - 12
            self._last_seq = sequence
            self._last_ts = timestamp
            self._last_at = time.monotonic()
            if source is not ENCODER:
                self.forwarded += 1
            for capture in self.captures:
                capture(rtp_payload(clear))

    def pause(self) -> None:
        """Nothing is sent for a while (a hold): the next packet starts a new talkspurt
        continuing this stream's numbering, even if it comes from the same source (which
        went on numbering its own packets meanwhile: no gap may show as loss)."""
        self._source = None

    def _rebase(self, source: object, sequence: int, timestamp: int) -> None:
        """Map `source`'s numbering onto this stream, continuing where it left off."""
        elapsed = FRAME_TICKS
        if self._last_at is not None:
            elapsed = max(round((time.monotonic() - self._last_at) * CLOCK_RATE), FRAME_TICKS)
        self._seq_offset = self._last_seq + 1 - sequence
        self._ts_offset = self._last_ts + elapsed - timestamp
        self._source = source

    def sender_report(self, rtcp: bytes) -> bytes:
        """aiortc's RTCP for this leg, its sender report describing this stream."""
        if len(rtcp) < 28 or rtcp[1] != _RTCP_SR or self._last_at is None:
            return rtcp
        if int.from_bytes(rtcp[4:8], "big") != self.ssrc:
            return rtcp
        ticks_since = round((time.monotonic() - self._last_at) * CLOCK_RATE)
        info = _SENDER_INFO.pack(
            ntp_now() & 0xFFFFFFFFFFFFFFFF,
            (self._last_ts + ticks_since) & 0xFFFFFFFF,
            self.packets & 0xFFFFFFFF,
            self.octets & 0xFFFFFFFF,
        )
        return rtcp[:8] + info + rtcp[28:]


class RtpTap:
    """One leg's incoming audio, taken off the wire (see the module docstring)."""

    def __init__(
        self,
        transport: LegTransport,
        payload_type: int,
        name: str,
        on_frame: Callable[[AudioFrame], None],
    ) -> None:
        self._transport = transport
        self.payload_type = payload_type
        self.name = name
        self.listeners: set[RtpOutlet] = set()
        self.packets = 0
        self.last_packet_at: float | None = None
        self._on_frame = on_frame
        self.captures: list[Callable[[bytes], None]] = []  # recordings: payloads as they come
        self._decoder: OpusDecoder | None = None
        transport.intercept_datagrams(self._on_datagram)

    @property
    def decoding(self) -> bool:
        return self._decoder is not None

    def decode(self, wanted: bool) -> None:
        """Decode this leg's audio (a recording or a mix needs it) from now on, or stop."""
        if wanted and self._decoder is None:
            self._decoder = OpusDecoder()
        elif not wanted:
            self._decoder = None

    def _on_datagram(self, data: bytes) -> bool:
        # RTP only (RFC 7983 first byte 128-191, not an RTCP type): DTLS and RTCP go to aiortc.
        if len(data) < 12 or not 127 < data[0] < 192 or is_rtcp(data):
            return False
        clear = self._transport.unprotect(data)
        if clear is None or (clear[1] & 0x7F) != self.payload_type:
            return True  # not authentic, or not the negotiated Opus: dropped
        self.packets += 1
        self.last_packet_at = time.monotonic()
        for outlet in self.listeners:
            outlet.send(clear, self)
        _, _, sequence, timestamp, ssrc = _FIXED_HEADER.unpack_from(clear)
        self._transport.count_received(ssrc, sequence, timestamp)
        if self.captures or self._decoder is not None:
            payload = rtp_payload(clear)
            for capture in self.captures:
                capture(payload)
            if self._decoder is not None:
                for frame in self._decoder.decode(payload):
                    self._on_frame(frame)
        return True

    def packets_lost(self) -> int:
        return self._transport.packets_lost()

    def stop(self) -> None:
        self.listeners.clear()
        self.captures = []
        self.decode(False)
