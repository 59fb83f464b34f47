"""One leg's peer connection: answer an offer, take candidates, watch the media, close.

Media states (as the records name them): new → connecting → connected ⇄ disconnected,
then closed or failed. Every change goes through `_set_state`, which logs and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Protocol

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from av import AudioFrame

from calls import metrics, setup_trace
from calls.errors import CallbridgeError, ErrorCode
from calls.media.aiortc_internals import (
    LegTransport,
    QualityProbe,
    admit_peer_reflexive,
    ice_connections,
)
from calls.media.audio import AudioMix, AudioSubscription, InboundAudio, OutboundAudioTrack
from calls.media.candidates import (
    CandidateBudget,
    CandidateRules,
    Verdict,
    filter_offer,
    withhold_end_of_candidates,
)
from calls.media.forwarding import RtpOutlet, RtpTap
from calls.media.leg_quality import LegQuality, QualityChange, SampleHook
from calls.media.quality import Summary
from calls.signaling.protocol import MAX_SDP_BYTES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeerSettings:
    ice_servers: tuple[RTCIceServer, ...] = ()
    ice_timeout_s: float = 20.0
    # No audio from a connected leg for this long: it is `disconnected` until audio returns.
    inactivity_s: float = 3.0
    watchdog_interval_s: float = 0.5
    # Forward Opus between legs (False: decode every frame and re-encode it, as stock aiortc).
    forwarding: bool = True
    # Which remote ICE candidates a connection may use, and how many (candidates.py).
    candidate_rules: CandidateRules = field(default_factory=CandidateRules)
    # How often a connected leg's quality is sampled (calls/media/quality.py).
    quality_interval_s: float = 5.0


StateCallback = Callable[["LegPeer", str], None]
# A quality warning raised or cleared while connected, or the leg's summary as it closes.
QualityCallback = Callable[["LegPeer", "QualityChange | Summary"], None]
MAX_TRACKS = 2  # audio tracks one leg may hear on (a supervisor: each party apart)


def _opus_only() -> list[RTCRtpCodecCapability]:
    return [
        codec
        for codec in RTCRtpSender.getCapabilities("audio").codecs
        if codec.mimeType.lower() == "audio/opus"
    ]


_OPUS_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/48000", re.IGNORECASE | re.MULTILINE)


def _bad_offer(message: str) -> CallbridgeError:
    return CallbridgeError(ErrorCode.INVALID_ARGUMENT, message)


_DIRECTIONS = frozenset({"a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"})


def with_explicit_directions(sdp: str) -> str:
    """Give every media section a direction attribute. Without one, RFC 4566 §6 means the
    session-level direction, else sendrecv; aiortc instead fails to answer (found by fuzzing)."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    head, *sections = sdp.split(newline + "m=")
    session = next((line for line in head.split(newline) if line in _DIRECTIONS), "a=sendrecv")
    fixed = []
    for section in sections:
        lines = section.split(newline)
        if not any(line in _DIRECTIONS for line in lines):
            end = len(lines) - 1 if lines[-1] == "" else len(lines)
            lines.insert(end, session)
        fixed.append(newline.join(lines))
    return newline.join([head, *("m=" + section for section in fixed)])


class LegPeer:
    def __init__(
        self,
        *,
        leg_id: str,
        role: str,
        settings: PeerSettings,
        on_state: StateCallback,
        on_inbound: Callable[[LegPeer], None],
        on_quality: QualityCallback | None = None,
        on_quality_sample: SampleHook | None = None,
        tracks: int = 1,
    ) -> None:
        self.leg_id = leg_id
        self.role = role
        self.settings = settings
        self.state = "new"
        self.outbound = OutboundAudioTrack()
        self.inbound: InboundAudio | None = None
        # The forwarding path (settings.forwarding), set up with the answer.
        self.tap: RtpTap | None = None
        self.outlet: RtpOutlet | None = None
        self._on_state = on_state
        self._on_inbound = on_inbound
        self._on_quality = on_quality
        self._on_quality_sample = on_quality_sample
        self.quality: LegQuality | None = None  # set up with the answer
        self._sampling = False
        self._reporting = True
        self._closed = False
        self._listening: tuple[InboundAudio, AudioSubscription] | RtpTap | None = None
        self._mixing: list[tuple[InboundAudio, AudioSubscription]] = []  # listen_to_all
        # Up to `tracks` audio m-lines answered with a sender each: the first is
        # `outbound`/`outlet`, the others are these (see listen_on_tracks).
        self._tracks_wanted = max(1, min(tracks, MAX_TRACKS))
        self.extra_ears: list[ExtraEar] = []
        self._timers: list[asyncio.Task[None]] = []
        # calls.metrics: when the offer came (set-up latency), what was counted so far.
        self.offered_at: float | None = None
        self._counted_forwarded = 0
        self._counted_lost = 0
        # Per peer connection: a reconnect (a new offer) is a new connection, a new budget.
        self._candidates = CandidateBudget(settings.candidate_rules)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=list(settings.ice_servers)))
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        if setup_trace.enabled():
            self.pc.on("iceconnectionstatechange", self._trace_ice)

    # --- negotiation ---------------------------------------------------------------------
    async def answer(self, offer_sdp: str) -> str:
        """Our answer SDP, all candidates included; INVALID_ARGUMENT if the offer is unusable."""
        self.offered_at = time.monotonic()
        if len(offer_sdp.encode()) > MAX_SDP_BYTES:
            raise _bad_offer("the SDP offer is too large")
        if not offer_sdp.startswith("v=0"):
            raise _bad_offer("the SDP offer is not SDP (it must start with v=0)")
        if "\nm=audio " not in offer_sdp.replace("\r\n", "\n"):
            raise _bad_offer("the SDP offer has no audio")
        sender = self.pc.addTrack(self.outbound)
        transceiver = next(t for t in self.pc.getTransceivers() if t.sender is sender)
        transceiver.setCodecPreferences(_opus_only())
        self._add_extra_ears(offer_sdp)
        try:
            # What aiortc parses is exactly what the candidate rules have filtered.
            filtered = filter_offer(with_explicit_directions(offer_sdp), self._candidates)
            offer = RTCSessionDescription(sdp=filtered.sdp, type="offer")
            setup_trace.mark(self.leg_id, "aiortc.parsed")
            await self.pc.setRemoteDescription(offer)
            setup_trace.mark(self.leg_id, "aiortc.remote_set")
        except Exception as error:  # aiortc raises many kinds on malformed SDP
            logger.info("leg %s: unusable offer: %r", self.leg_id, error)
            if "codec" in str(error).lower():
                raise _bad_offer("the SDP offer must include Opus audio") from None
            raise _bad_offer("the SDP offer could not be parsed") from None
        if filtered.dropped:
            dropped = ", ".join(f"{n} {v.value}" for v, n in filtered.dropped.items())
            logger.info("leg %s: offered candidates dropped: %s", self.leg_id, dropped)
        for other in self.pc.getTransceivers():
            if other.kind != "audio":
                other.direction = "inactive"  # audio only: video is answered inactive
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as error:  # parsed, but not answerable (e.g. no direction attribute)
            logger.info("leg %s: unanswerable offer: %r", self.leg_id, error)
            raise _bad_offer("the SDP offer could not be answered") from None
        for connection in ice_connections(self.pc.getTransceivers()):
            admit_peer_reflexive(connection, self._admits_peer_reflexive)
        # Before the forwarding outlet wraps the transport: the probe sees the wire's reports.
        self.quality = LegQuality(QualityProbe(transceiver), self._on_quality_sample)
        if self.settings.forwarding:
            self._start_forwarding(transceiver, self.pc.localDescription.sdp)
            self._start_forwarding_extra_ears(self.pc.localDescription.sdp)
        self._set_state("connecting")
        self._start_timer(self._ice_deadline())
        return self.pc.localDescription.sdp

    async def add_candidate(self, candidate: str, sdp_mid: str | None, mline: int | None) -> None:
        if candidate == "":
            if not withhold_end_of_candidates(self._candidates):
                await self.pc.addIceCandidate(None)  # end of candidates
            return
        text = candidate.removeprefix("a=").removeprefix("candidate:")
        try:
            parsed = candidate_from_sdp(text)
        except Exception:
            raise _bad_offer("not an ICE candidate") from None
        judgement = self._candidates.judge(parsed.protocol, parsed.ip, parsed.port)
        if judgement.verdict is Verdict.IGNORE:
            return  # mDNS, TCP, a repeat: browsers send these routinely (candidates.py)
        if judgement.verdict is not Verdict.USE:
            raise _bad_offer(judgement.reason)
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = mline
        if sdp_mid is None and mline is None:
            parsed.sdpMLineIndex = 0
        await self.pc.addIceCandidate(parsed)

    def _admits_peer_reflexive(self, host: str, port: int) -> bool:
        """A client's check from a new address counts as a candidate (the same rules)."""
        verdict = self._candidates.judge("udp", host, port).verdict
        return verdict in (Verdict.USE, Verdict.IGNORE)

    def _start_forwarding(self, transceiver: RTCRtpTransceiver, answer_sdp: str) -> None:
        match = _OPUS_RTPMAP.search(answer_sdp)
        if match is None:  # cannot happen: the answer offers Opus only
            raise _bad_offer("the SDP offer must include Opus audio")
        payload_type = int(match.group(1))
        transport = LegTransport(transceiver)
        self.tap = RtpTap(transport, payload_type, name=self.leg_id, on_frame=self._decoded)
        outlet = self.outlet = RtpOutlet(transport, payload_type)
        if self.quality is not None:
            self.quality.probe.upstream_gaps = lambda: outlet.skipped

    def _add_extra_ears(self, offer_sdp: str) -> None:
        """A sender for each audio m-line past the first, up to the tracks this leg may
        hear on (added before the offer is applied: aiortc pairs them with its m-lines)."""
        offered = offer_sdp.replace("\r\n", "\n").count("\nm=audio ")
        for _ in range(min(offered, self._tracks_wanted) - 1):
            track = OutboundAudioTrack()
            sender = self.pc.addTrack(track)
            transceiver = next(t for t in self.pc.getTransceivers() if t.sender is sender)
            transceiver.setCodecPreferences(_opus_only())
            self.extra_ears.append(ExtraEar(track, transceiver))

    def _start_forwarding_extra_ears(self, answer_sdp: str) -> None:
        sections = answer_sdp.replace("\r\n", "\n").split("\nm=")[1:]
        for ear in self.extra_ears:
            mid = ear.transceiver.mid
            section = next((s for s in sections if f"\na=mid:{mid}\n" in s + "\n"), "")
            match = _OPUS_RTPMAP.search("\n" + section)
            if match is None or ear.transceiver.currentDirection in ("recvonly", "inactive"):
                continue  # no Opus or nothing to send there: this ear stays on the decode path
            # Bundled (one transport per connection): the tap is the first track's; each
            # outlet takes only its own sender's packets (LegTransport.intercept_outgoing).
            ear.outlet = RtpOutlet(LegTransport(ear.transceiver), int(match.group(1)))

    @property
    def track_count(self) -> int:
        """Audio tracks this leg hears on (1 unless the offer carried more and the leg may)."""
        return 1 + len(self.extra_ears)

    def listen_on_tracks(
        self, per_track: list[list[LegPeer]], *, silence: bool = False
    ) -> set[str]:
        """Hear `per_track[i]` on track i: the first track as listen_to_all (or nothing),
        each other one forwarded where it can be. Returns the roles that must be decoded."""
        first, *others = per_track
        decoded = self.listen_to_all(first) if first else set()
        if not first:
            self.listen_to(None, silence=silence)
        for ear, origins in zip(self.extra_ears, others, strict=False):
            origin = origins[0] if origins else None
            if ear.listen_to(origin, silence=silence) and origin is not None:
                decoded.add(origin.role)
        return decoded

    # --- routing -------------------------------------------------------------------------
    def listen_to(self, origin: LegPeer | None, *, silence: bool = False) -> bool:
        """Hear `origin`'s audio (itself for echo; None for nothing).

        Forwarded when both legs forward and nothing is mixed over it; otherwise decoded
        and re-encoded. With no origin, nothing is sent, unless `silence`: then encoded
        silence (a held party: a browser that stops getting packets conceals the loss by
        stretching the last sound it heard, the other party's voice). Returns whether
        `origin`'s audio must be decoded for this.
        """
        self._stop_listening()
        # Overlays (a playback mixed over the voice) need decoded frames, not packets.
        return _point_ear(self, origin, silence=silence, forward=not self.outbound.overlays)

    def listen_to_all(self, origins: list[LegPeer]) -> set[str]:
        """Hear every one of `origins` at once (a supervisor hearing both parties, an
        operator hearing the caller and a whisper): one origin is `listen_to`'s (forwarded
        where it can be); two or more are decoded and mixed. Returns the roles whose audio
        must be decoded for this."""
        if len(origins) <= 1:
            origin = origins[0] if origins else None
            return {origin.role} if origin and self.listen_to(origin) else set()
        self._stop_listening()
        self._mixing = [
            (origin.inbound, origin.inbound.subscribe())
            for origin in origins
            if origin.inbound is not None  # a leg that sends nothing adds nothing
        ]
        self.outbound.use(AudioMix([subscription for _, subscription in self._mixing]))
        return {origin.role for origin in origins}

    def _stop_listening(self) -> None:
        for source, subscription in self._mixing:
            source.unsubscribe(subscription)
        self._mixing = []
        _release_ear(self)

    def decode_inbound(self, wanted: bool) -> None:
        """Whether this leg's own audio must be decoded (recording, mixing)."""
        if self.tap is not None:
            self.tap.decode(wanted)

    def capture_into(self, sinks: list[Callable[[bytes], None]]) -> None:
        """Hand every Opus payload this leg sends to `sinks` (recordings)."""
        if self.tap is not None:
            self.tap.captures = sinks

    def capture_heard_into(self, sinks: list[Callable[[bytes], None]]) -> None:
        """Hand every Opus payload this leg is sent (what it hears) to `sinks`."""
        if self.outlet is not None:
            self.outlet.captures = sinks

    def _decoded(self, frame: AudioFrame) -> None:
        if self.inbound is not None:
            self.inbound.push(frame)

    def last_audio_at(self) -> float | None:
        """When audio last arrived from this leg (time.monotonic())."""
        if self.tap is not None:
            return self.tap.last_packet_at
        return self.inbound.last_frame_at if self.inbound is not None else None

    # --- events --------------------------------------------------------------------------
    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio" or self.inbound is not None:
            return
        # Forwarding: aiortc's receiver gets no RTP to decode; the tap pushes frames instead.
        self.inbound = InboundAudio(track, name=self.leg_id, pump=not self.settings.forwarding)
        self._on_inbound(self)

    def _trace_ice(self) -> None:
        setup_trace.mark(self.leg_id, f"ice.{self.pc.iceConnectionState}")

    async def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            setup_trace.mark(self.leg_id, "media.connected")
            if self.state == "connecting" and self.offered_at is not None:
                metrics.observe_setup(time.monotonic() - self.offered_at)
            self._set_state("connected")
            self._start_timer(self._watch_inbound())
            if not self._sampling:
                self._sampling = True
                self._start_timer(self._sample_quality())
        elif state == "failed":
            # Connected before: the network went away (a reconnect may follow).
            self._set_state("disconnected" if self.state != "connecting" else "failed")

    async def _ice_deadline(self) -> None:
        await asyncio.sleep(self.settings.ice_timeout_s)
        if self.state == "connecting":
            logger.info(
                "leg %s: no connection within %ss", self.leg_id, self.settings.ice_timeout_s
            )
            await self.close("failed")

    async def _watch_inbound(self) -> None:
        connected_at = time.monotonic()
        while not self._closed:
            await asyncio.sleep(self.settings.watchdog_interval_s)
            if self.inbound is None:
                continue  # a receive-only client sends nothing to watch
            silent_for = time.monotonic() - (self.last_audio_at() or connected_at)
            if self.state == "connected" and silent_for > self.settings.inactivity_s:
                self._set_state("disconnected")
            elif self.state == "disconnected" and silent_for <= self.settings.inactivity_s:
                self._set_state("connected")

    async def _sample_quality(self) -> None:
        while not self._closed and self.quality is not None:
            await asyncio.sleep(self.settings.quality_interval_s)
            if self.state != "connected":
                continue  # no media (a network gone): the watchdog's business, not quality's
            measured = self.quality.sample()
            if measured is None:
                continue
            sample, change = measured
            metrics.observe_mos(sample.mos)
            if change is not None:
                logger.info(
                    "leg %s (%s) %s: MOS %.2f (loss %.1f%%, jitter %.0f ms, RTT %s ms)",
                    self.leg_id,
                    self.role,
                    change.verdict.value,
                    sample.mos,
                    sample.loss_percent,
                    sample.jitter_ms,
                    "?" if sample.rtt_ms is None else f"{sample.rtt_ms:.0f}",
                )
                if self._on_quality is not None:
                    self._on_quality(self, change)

    def _start_timer(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._timers.append(task)

    def _set_state(self, state: str) -> None:
        if state == self.state or (self._closed and state not in ("closed", "failed")):
            return
        logger.info("leg %s (%s) media %s → %s", self.leg_id, self.role, self.state, state)
        self.state = state
        if self._reporting:
            self._on_state(self, state)

    # --- metrics -------------------------------------------------------------------------
    def count_packets(self) -> None:
        """Add what the forwarding path forwarded to this leg and lost from it since the
        last count to calls.metrics (the worker calls this periodically and at close)."""
        if self.tap is None or self.outlet is None:
            return
        forwarded, lost = self.outlet.forwarded, self.tap.packets_lost()
        metrics.count_packets(forwarded - self._counted_forwarded, lost - self._counted_lost)
        self._counted_forwarded, self._counted_lost = forwarded, max(lost, self._counted_lost)

    # --- teardown ------------------------------------------------------------------------
    async def close(self, final_state: str = "closed", *, report: bool = True) -> None:
        """Close the peer connection and everything it owns. Idempotent."""
        if self._closed:
            return
        self._reporting = report
        self._set_state(final_state)
        self._closed = True
        summary = self.quality.summary() if self.quality is not None else None
        if summary is not None and self._on_quality is not None:
            self._on_quality(self, summary)  # also a replaced connection's: the leg goes on
        self._stop_listening()
        current = asyncio.current_task()
        for task in self._timers:
            if task is not current:
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(
                *(t for t in self._timers if t is not current), return_exceptions=True
            )
        self.count_packets()
        if self.tap is not None:
            self.tap.stop()
        if self.inbound is not None:
            await self.inbound.stop()
        self.outbound.stop()
        for ear in self.extra_ears:
            ear.close()
        await self.pc.close()


class _Ear(Protocol):
    """What hears one source on one track: a leg's first track (LegPeer) or another
    (ExtraEar)."""

    outbound: OutboundAudioTrack
    outlet: RtpOutlet | None
    _listening: tuple[InboundAudio, AudioSubscription] | RtpTap | None


def _point_ear(ear: _Ear, origin: LegPeer | None, *, silence: bool, forward: bool) -> bool:
    """Point a released `ear` at `origin` (None: nobody): its packets forwarded where both
    sides forward and `forward` allows, else its decoded frames; whether `origin`'s audio
    must be decoded for this. Nobody with `silence`: encoded silence, else nothing sent."""
    if ear.outlet is not None and forward and not (origin is None and silence):
        if origin is None:
            ear.outbound.hold()  # nothing to hear: send nothing
            ear.outlet.pause()  # what comes next (the same source, later) is a new talkspurt
            return False
        if origin.tap is not None:
            origin.tap.listeners.add(ear.outlet)
            ear._listening = origin.tap
            ear.outbound.hold()
            return False
    if origin is None or origin.inbound is None:
        ear.outbound.use(None)
        return False
    subscription = origin.inbound.subscribe()
    ear._listening = (origin.inbound, subscription)
    ear.outbound.use(subscription)
    return True


def _release_ear(ear: _Ear) -> None:
    """Stop whatever `ear` listens to (a tap's packets or a decoded subscription)."""
    if isinstance(ear._listening, RtpTap):
        if ear.outlet is not None:
            ear._listening.listeners.discard(ear.outlet)
    elif ear._listening is not None:
        source, subscription = ear._listening
        source.unsubscribe(subscription)
    ear._listening = None


class ExtraEar:
    """One more audio track a leg hears on, past its first (a supervisor hears the end
    user on the first and the operator on this one): forwarded packets where both legs
    forward, else decoded frames; encoded silence or nothing when there is nobody."""

    def __init__(self, track: OutboundAudioTrack, transceiver: RTCRtpTransceiver) -> None:
        self.outbound = track
        self.transceiver = transceiver
        self.outlet: RtpOutlet | None = None  # forwarding path, set up with the answer
        self._listening: tuple[InboundAudio, AudioSubscription] | RtpTap | None = None

    def listen_to(self, origin: LegPeer | None, *, silence: bool = False) -> bool:
        """Hear `origin` (None: nobody); whether its audio must be decoded for this."""
        self._stop_listening()
        return _point_ear(self, origin, silence=silence, forward=True)

    def _stop_listening(self) -> None:
        _release_ear(self)

    def close(self) -> None:
        self._stop_listening()
        self.outbound.stop()
