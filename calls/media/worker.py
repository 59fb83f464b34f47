"""The media worker: owns the peer connections of its calls, reached via the channel layer.

It reads the requests of calls.workers.protocol (the schema is that module's docstring) on
its channel, handles them in order per call and replies to their `reply_to`. Leg media
states and finished recordings go to the LegReporter (the database) in the order they
happen.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from calls import setup_trace
from calls.audio_decoding import UnusableAudio, decode_mono
from calls.errors import CallbridgeError, ErrorCode
from calls.media.audio import Playback
from calls.media.leg_quality import QualityChange, SampleHook
from calls.media.peer import LegPeer, PeerSettings
from calls.media.quality import Summary
from calls.media.recorder import CHANNELS, RENDERS_AT_ONCE, CallRecorder
from calls.workers import protocol
from calls.workers.protocol import worker_channel

logger = logging.getLogger(__name__)

Req = TypeVar("Req", bound=protocol.Request)
Handler = Callable[[Any], Awaitable[protocol.Reply | None]]  # typed where registered: _on()


class ChannelLayer(Protocol):
    async def send(self, channel: str, message: dict[str, Any]) -> None: ...
    async def receive(self, channel: str) -> dict[str, Any]: ...


class LegReporter(Protocol):
    async def leg_state(self, call_id: str, leg_id: str, state: str) -> None: ...

    async def recording_finished(
        self, recording_id: str, reason: str, by: str, result: protocol.RecordedFile
    ) -> None: ...

    async def leg_quality(self, report: protocol.Report) -> None: ...


HOLD_PLAYBACK = "hold"  # the overlay id of the hold audio on the held caller's leg
HOLD_FILES_KEPT = 4  # decoded hold files kept per worker (a deployment has a few)
HELD_ROLE = "user"  # who hears the hold audio; the other party hears nothing


@dataclass
class CallMedia:
    call_id: str
    mode: str  # "echo" | "bridge"
    legs: dict[str, LegPeer] = field(default_factory=dict)  # by role
    recorders: dict[str, CallRecorder] = field(default_factory=dict)  # by recording id
    # On hold (protocol.Hold): the parties do not hear each other; the caller hears
    # `hold_audio` (None: silence).
    held: bool = False
    hold_audio: Playback | None = None
    # A transfer was taken (protocol.TransferIn): the hold ends when this operator leg
    # has audio, so the caller hears no silence between hold audio and new voice.
    resume_on: str | None = None

    def resume_if_taken_over(self) -> bool:
        """End the hold once the awaited operator leg has audio; whether it ended."""
        if self.resume_on is None:
            return False
        peer = self.legs.get("operator")
        if peer is None or peer.leg_id != self.resume_on or peer.inbound is None:
            return False
        self.held, self.hold_audio, self.resume_on = False, None, None
        return True

    # A supervisor's mode (protocol.Supervise; None: nobody supervises): see supervised_ears.
    supervision: str | None = None

    def parties_ears(self) -> dict[str, tuple[str, ...]]:
        """Whom each party hears: itself (echo), or the other party."""
        if self.mode == "echo":
            return {role: (role,) for role in self.legs}
        return {"user": ("operator",), "operator": ("user",)}

    def route(self) -> None:
        """Point every leg's ears at the right mouth: itself (echo), the other party, or
        nobody while held (silence; the caller's with the hold audio mixed in); and every
        recorder at what each party says, or while held at what the caller hears (nobody
        hears what either says then). Only audio that a recorder or a mix needs is
        decoded; the rest is forwarded as it came."""
        self._place_hold_audio()
        decoded: set[str] = set()
        ears = supervised_ears(self.parties_ears(), self.supervision)
        if self.held:
            ears = held_ears(ears)
        if CONSULT_ROLE in self.legs:
            ears = consulting_ears(ears)
        for role, peer in self.legs.items():
            if peer.track_count > 1:  # a supervisor hearing each party on its own track
                decoded |= self._listen_on_tracks(peer, ears.get(role, ()))
                continue
            mouths = [self.legs[origin] for origin in ears.get(role, ()) if origin in self.legs]
            if mouths:
                decoded |= peer.listen_to_all(mouths)
            else:  # nobody to hear (held): encoded silence, see LegPeer.listen_to
                peer.listen_to(None, silence=self.held)
        for peer in self.legs.values():
            peer.capture_into([])
            peer.capture_heard_into([])
        for recorder in self.recorders.values():
            for role in CHANNELS:
                recorded = self.legs.get(role)
                if recorder.takes_packets:  # forwarding: packets captured, rendered later
                    if recorded is None:
                        continue
                    if not self.held:
                        recorded.capture_into([recorder.packet_sink(role)])
                    elif role == HELD_ROLE:
                        recorded.capture_heard_into([recorder.packet_sink(role)])
                elif not self.held:
                    recorder.listen(role, recorded.inbound if recorded else None)
                    decoded.add(role)
                elif role == HELD_ROLE and recorded is not None:
                    recorder.listen(role, recorded.outbound.heard)
                else:
                    recorder.listen(role, None)
            decoded |= self._record_barging_supervisor(recorder)
        for role, peer in self.legs.items():
            peer.decode_inbound(role in decoded)

    def _listen_on_tracks(self, peer: LegPeer, mouths: tuple[str, ...]) -> set[str]:
        """A leg with several tracks hears each mouth on its own track (tracks_heard);
        returns the roles that must be decoded for it (none where both legs forward)."""
        per_track = [
            [self.legs[origin] for origin in track if origin in self.legs]
            for track in tracks_heard(mouths, peer.track_count)
        ]
        return peer.listen_on_tracks(per_track, silence=self.held)

    def _record_barging_supervisor(self, recorder: CallRecorder) -> set[str]:
        """While barging (and not held) the supervisor is heard by both parties, so is
        recorded: mixed into the operator's channel (recorder.py). Returns the roles that
        must be decoded for it (the decode path's recorder takes frames)."""
        supervisor = self.legs.get(SUPERVISOR_ROLE)
        recorded = supervisor if self.supervision == "barge" and not self.held else None
        if recorder.takes_packets:
            if recorded is not None:
                recorded.capture_into([recorder.packet_sink(SUPERVISOR_ROLE)])
            return set()
        recorder.listen(SUPERVISOR_ROLE, recorded.inbound if recorded else None)
        return {SUPERVISOR_ROLE} if recorded is not None else set()

    def _place_hold_audio(self) -> None:
        """The hold audio is on the held caller's leg exactly while held (also on a leg
        that reconnects meanwhile, and after a PlayStop that cleared every overlay)."""
        for role, peer in self.legs.items():
            playing = peer.outbound.overlays.get(HOLD_PLAYBACK)
            wanted = self.hold_audio if self.held and role == HELD_ROLE else None
            if wanted is None and playing is not None:
                del peer.outbound.overlays[HOLD_PLAYBACK]
            elif wanted is not None and playing is not wanted:
                peer.outbound.overlays[HOLD_PLAYBACK] = wanted

    @property
    def idle(self) -> bool:
        """Nothing left to keep (a held call keeps its hold for legs that reconnect; a
        supervision is remembered apart: MediaWorker.supervisions)."""
        return not self.legs and not self.recorders and not self.held

    def stop_waiting_audio(self) -> None:
        """End the looped playbacks (a queue's waiting audio: over once an operator joins);
        the hold audio is not one of them."""
        for peer in self.legs.values():
            for playback_id in [k for k, p in peer.outbound.overlays.items() if p.loop]:
                if playback_id != HOLD_PLAYBACK:
                    del peer.outbound.overlays[playback_id]

    def find(self, leg_id: str) -> LegPeer | None:
        return next((peer for peer in self.legs.values() if peer.leg_id == leg_id), None)


SUPERVISOR_ROLE = "supervisor"
PACKET_COUNT_INTERVAL_S = 1.0  # calls.metrics: packets forwarded / lost, per batch


def supervised_ears(
    ears: dict[str, tuple[str, ...]], mode: str | None
) -> dict[str, tuple[str, ...]]:
    """`ears` (whom each party hears) with a supervisor in `mode`: it hears both parties in
    every mode; in whisper the operator hears it too, in barge everyone does. Nobody hears
    it, and it hears nobody, before its mode is known or after it left."""
    if mode is None:
        return {**ears, SUPERVISOR_ROLE: ()}
    heard_by = {"monitor": (), "whisper": ("operator",), "barge": ("user", "operator")}[mode]
    supervised = {
        role: (*mouths, SUPERVISOR_ROLE) if role in heard_by else mouths
        for role, mouths in ears.items()
    }
    supervised[SUPERVISOR_ROLE] = ("user", "operator")
    return supervised


SUPERVISOR_TRACKS = ("user", "operator")  # a two-track supervisor's tracks, in m-line order


def tracks_heard(mouths: tuple[str, ...], tracks: int) -> list[tuple[str, ...]]:
    """What each of a leg's `tracks` hears, given whom it hears (`mouths`): on one track,
    all of them (mixed when several); on two (a supervisor's offer with two audio
    m-lines), the end user on the first and the operator on the second, each forwarded
    as it came — nothing decoded for the supervisor's ears, and a track stays its
    party's through every mode (nothing there while that party is not heard)."""
    if tracks < 2:
        return [mouths]
    return [(role,) if role in mouths else () for role in SUPERVISOR_TRACKS]


def held_ears(ears: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """`ears` while the caller is on hold: the parties do not hear each other (the caller
    hears the hold audio); a supervisor and the operator still hear each other where the
    mode lets the operator hear it (coaching during a hold reaches no caller)."""
    held: dict[str, tuple[str, ...]] = {role: () for role in ears}
    if SUPERVISOR_ROLE in ears.get("operator", ()):
        held["operator"] = (SUPERVISOR_ROLE,)
    if ears.get(SUPERVISOR_ROLE):
        held[SUPERVISOR_ROLE] = ("operator",)
    return held


CONSULT_ROLE = "consult"


def consulting_ears(ears: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """`ears` (held: the caller hears only the hold audio) with an attended transfer's
    consulted operator on the line: it and the operator hear each other, and nobody else
    hears it but a supervisor (who hears the operator's side in every mode). It hears the
    operator only: a supervisor's mode is about the call's own parties."""
    consulting = dict(ears)
    consulting["operator"] = (*ears.get("operator", ()), CONSULT_ROLE)
    consulting[CONSULT_ROLE] = ("operator",)
    if ears.get(SUPERVISOR_ROLE):
        consulting[SUPERVISOR_ROLE] = (*ears[SUPERVISOR_ROLE], CONSULT_ROLE)
    return consulting


class RecentIds:
    """The last `size` ids seen (a bounded set): calls that ended, recordings stopped.

    Messages about one call can reach a worker in another order than they were decided
    (a hang-up's end_call overtaking a record_start sent a moment earlier); remembering
    what is over keeps a late start from recording a call or a consent that is gone."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, item: str) -> None:
        self._ids[item] = None
        self._ids.move_to_end(item)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def __contains__(self, item: object) -> bool:
        return item in self._ids


@functools.lru_cache(maxsize=HOLD_FILES_KEPT)
def _decoded_once(path: str, stamp: tuple[int, int]) -> np.ndarray:
    """A hold file's samples, decoded once per version of the file (`stamp`: its mtime
    and size), shared read-only by every held call that plays it."""
    samples = decode_mono(path)
    samples.setflags(write=False)
    return samples


def hold_samples(path: str) -> np.ndarray:
    """Blocking (run it in an executor): the file's samples, from the cache if unchanged."""
    try:
        stat = os.stat(path)
    except OSError as error:
        raise UnusableAudio(f"not a readable audio file ({error.strerror})") from None
    return _decoded_once(path, (stat.st_mtime_ns, stat.st_size))


class LatestSeqs:
    """The last `seq` applied per call (a bounded map): a Hold that arrives after a later
    one was applied changes nothing, even once the call's media were forgotten (no legs)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seqs: OrderedDict[str, int] = OrderedDict()

    def advance(self, call_id: str, seq: int) -> bool:
        """Record `seq` for `call_id` if it is newer than the last one; say whether it was."""
        if seq <= self._seqs.get(call_id, 0):
            return False
        self._seqs[call_id] = seq
        self._seqs.move_to_end(call_id)
        while len(self._seqs) > self.size:
            self._seqs.popitem(last=False)
        return True


class MediaWorker:
    def __init__(
        self,
        name: str,
        layer: ChannelLayer,
        reporter: LegReporter,
        peer_settings: PeerSettings,
    ) -> None:
        self.name = name
        self.channel = worker_channel(name)
        self.layer = layer
        self.reporter = reporter
        self.peer_settings = peer_settings
        self.calls: dict[str, CallMedia] = {}
        # Off while draining: the calls it has go on, offers for new calls are refused.
        self.accepting_new_calls = True
        self._call_locks: dict[str, asyncio.Lock] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._reports: asyncio.Queue[Awaitable[None] | None] = asyncio.Queue()
        self._render_slots = asyncio.Semaphore(RENDERS_AT_ONCE)
        self.ended_calls = RecentIds()
        self.stopped_recordings = RecentIds()
        self.hold_seqs = LatestSeqs()
        self.supervise_seqs = LatestSeqs()
        # The supervision of calls whose media this worker forgot (no legs yet, or none
        # left): a leg that connects later hears by it. Bounded like the seqs.
        self.supervisions: OrderedDict[str, str] = OrderedDict()
        # Every leg's every quality sample (calls/media/quality.py), e.g. for metrics.
        self.quality_sample_hook: SampleHook | None = None
        self._handler_of: dict[type[protocol.Request], Handler] = {}
        self._on(protocol.Offer, self._offer)
        self._on(protocol.Candidate, self._candidate)
        self._on(protocol.CloseLeg, self._close)
        self._on(protocol.EndCall, self._hang_up)
        self._on(protocol.RecordStart, self._record_start)
        self._on(protocol.RecordStop, self._record_stop)
        self._on(protocol.Play, self._play)
        self._on(protocol.PlayStop, self._play_stop)
        self._on(protocol.Hold, self._hold)
        self._on(protocol.TransferOut, self._transfer_out)
        self._on(protocol.TransferIn, self._transfer_in)
        self._on(protocol.Supervise, self._supervise)
        self._on(protocol.ConsultEnd, self._consult_end)

    @property
    def peer_count(self) -> int:
        return sum(len(call.legs) for call in self.calls.values())

    async def run(self) -> None:
        reporting = asyncio.get_running_loop().create_task(self._report_in_order())
        counting = asyncio.get_running_loop().create_task(self._count_packets())
        logger.info("media worker %s listening on %s", self.name, self.channel)
        try:
            while True:
                message = await self._receive()
                task = asyncio.get_running_loop().create_task(self._handle_in_call_order(message))
                self._handlers.add(task)
                task.add_done_callback(self._handlers.discard)
        finally:
            counting.cancel()
            await self.close_all()
            await self._reports.put(None)
            await asyncio.gather(reporting, return_exceptions=True)

    async def _receive(self) -> dict[str, Any]:
        """The next message. The receive runs as its own task so that cancelling `run`
        (the shutdown) always takes at once: a cancellation can be lost inside the layer
        (redis-py retries a read that a cancel and its own read timeout ended together),
        and a worker that went on waiting there once hung its drain."""
        receiving = asyncio.get_running_loop().create_task(self.layer.receive(self.channel))
        try:
            await asyncio.wait({receiving})
        except asyncio.CancelledError:
            receiving.cancel()
            raise
        return receiving.result()

    async def close_all(self) -> None:
        """Close every peer connection (shutdown)."""
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for call_id in list(self.calls):
            await self._end_call(call_id, "shutdown")

    # --- dispatch ------------------------------------------------------------------------
    def _on(
        self, kind: type[Req], handler: Callable[[Req], Awaitable[protocol.Reply | None]]
    ) -> None:
        self._handler_of[kind] = handler

    async def _handle_in_call_order(self, raw: dict[str, Any]) -> None:
        try:
            request = protocol.parse_request(raw)
        except protocol.ProtocolError as problem:
            await self._refuse(raw, problem)
            return
        lock = self._call_locks.setdefault(request.call, asyncio.Lock())
        async with lock:
            reply = await self._answer(request)
            if reply is not None and request.reply_to:
                await self._send(request.reply_to, protocol.reply_to(request, reply))
        if request.call not in self.calls and not lock.locked():
            self._call_locks.pop(request.call, None)

    async def _answer(self, request: protocol.Request) -> protocol.Reply | None:
        try:
            return await self._handler_of[type(request)](request)
        except CallbridgeError as error:
            return protocol.Error.of(error)
        except Exception:
            logger.exception("media worker %s: %s failed", self.name, request.TYPE)
            failure = CallbridgeError(ErrorCode.MEDIA_BRIDGE_FAILURE, "media worker error")
            return protocol.Error.of(failure)

    async def _send(self, channel: str, reply: protocol.Reply) -> None:
        try:
            await self.layer.send(channel, protocol.encode(reply))
        except Exception:  # a full or gone reply channel: the sender's timeout tells it
            logger.exception("media worker %s: could not reply %s", self.name, reply.TYPE)

    async def _refuse(self, raw: dict[str, Any], problem: protocol.ProtocolError) -> None:
        """A message this worker cannot read: said in the log, and to its sender if it
        named a reply_to (a daphne of another version raises it; nothing is guessed)."""
        logger.error("media worker %s: refused %.40r: %s", self.name, raw.get("type"), problem)
        channel = protocol.reply_channel(raw)
        if channel is not None:
            await self._send(channel, protocol.refusal(raw, problem))

    # --- handlers ------------------------------------------------------------------------
    async def _offer(self, offer: protocol.Offer) -> protocol.Answer:
        call_id, leg_id, role = offer.call, offer.leg, offer.role
        setup_trace.mark(leg_id, "worker.received")
        if offer.kind == protocol.OfferKind.CREATE and not self.accepting_new_calls:
            raise CallbridgeError(
                ErrorCode.MEDIA_BRIDGE_FAILURE, "that media worker is draining; call again"
            )
        if call_id in self.ended_calls:
            raise CallbridgeError(ErrorCode.CALL_STATE, "the call has ended")
        call = self.calls.get(call_id) or CallMedia(
            call_id, offer.mode, supervision=self.supervisions.get(call_id)
        )
        holder = call.legs.get(role)
        if holder is not None and holder.leg_id != leg_id:
            # Only the same leg reconnects; another leg never replaces a party's media
            # (two parties racing to answer: the first offer here is the one that may be
            # recorded). Signaling refuses this first; this is the media's own guard.
            raise CallbridgeError(ErrorCode.CALL_STATE, "another party holds that place")
        peer = LegPeer(
            leg_id=leg_id,
            role=role,
            tracks=len(SUPERVISOR_TRACKS) if role == SUPERVISOR_ROLE else 1,
            settings=self.peer_settings,
            on_state=lambda p, state: self._report(call_id, p, state),
            on_inbound=lambda _: self._reroute(call_id),
            on_quality=lambda p, measured: self._report_quality(call_id, p, measured),
            on_quality_sample=self.quality_sample_hook,
        )
        peer.outbound.on_overlays_done = lambda: self._reroute(call_id)
        try:
            answer = await peer.answer(offer.sdp)
        except BaseException:
            await peer.close(report=False)  # a bad offer changes nothing
            raise
        setup_trace.mark(leg_id, "worker.answered")
        self.calls[call_id] = call
        previous = call.legs.get(role)
        call.legs[role] = peer
        if role == "operator":
            call.stop_waiting_audio()  # the answer: caller and operator hear each other only
        if previous is not None:
            if previous.quality is not None and peer.quality is not None:
                peer.quality.carry_on_from(previous.quality)
            await previous.close(report=False)  # reconnect: the new connection replaces it
        call.route()
        return protocol.Answer(sdp=answer)

    async def _candidate(self, candidate: protocol.Candidate) -> None:
        call = self.calls.get(candidate.call)
        peer = call.find(candidate.leg) if call else None
        if peer is None:
            raise CallbridgeError(ErrorCode.NOT_FOUND, "that leg has no media connection")
        await peer.add_candidate(candidate.candidate, candidate.sdp_mid, candidate.sdp_mline_index)

    async def _close(self, close: protocol.CloseLeg) -> protocol.Closed:
        await self._close_leg(close.call, close.leg)
        return protocol.Closed()

    async def _close_leg(self, call_id: str, leg_id: str) -> None:
        call = self.calls.get(call_id)
        peer = call.find(leg_id) if call else None
        if call is None or peer is None:
            return
        del call.legs[peer.role]
        await peer.close("closed")
        call.route()
        if call.idle:
            del self.calls[call_id]

    async def _hang_up(self, end: protocol.EndCall) -> None:
        await self._end_call(end.call, "hangup")

    async def _end_call(self, call_id: str, reason: str) -> None:
        self.ended_calls.add(call_id)
        self.supervisions.pop(call_id, None)
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        for recording_id in list(call.recorders):
            await self._finish_recording(call, recording_id, reason, "system")
        for peer in list(call.legs.values()):
            await peer.close("closed")
        call.legs.clear()

    async def _play(self, play: protocol.Play) -> protocol.Playing:
        call = self.calls.get(play.call)
        roles = ["user", "operator"] if play.to == "both" else [play.to]
        targets = [call.legs[role] for role in roles if call and role in call.legs]
        if len(targets) != len(roles):
            raise CallbridgeError(
                ErrorCode.CALL_STATE, f"no media connection to play to ({play.to})"
            )
        if play.loop and call is not None and "operator" in call.legs:
            # Waiting audio that comes after the answer's media: the wait is over.
            raise CallbridgeError(ErrorCode.CALL_STATE, "an operator is on the call")
        try:
            samples = await asyncio.get_running_loop().run_in_executor(None, decode_mono, play.path)
        except UnusableAudio as error:
            raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, str(error)) from None
        for peer in targets:
            peer.outbound.overlays[play.playback] = Playback(play.playback, samples, play.loop)
        if call is not None:
            call.route()  # mixing needs the other party's audio decoded
        return protocol.Playing(duration_s=len(samples) / 48000)

    async def _play_stop(self, stop: protocol.PlayStop) -> protocol.PlayStopped:
        call = self.calls.get(stop.call)
        for peer in call.legs.values() if call else []:
            if stop.playback is None:
                peer.outbound.overlays.clear()
            else:
                peer.outbound.overlays.pop(stop.playback, None)
        if call is not None:
            call.route()
        return protocol.PlayStopped()

    async def _hold_audio(self, call_id: str, path: str | None) -> Playback | None:
        if not path:
            return None
        try:
            samples = await asyncio.get_running_loop().run_in_executor(None, hold_samples, path)
        except UnusableAudio as error:
            # The hold itself must happen (nobody waits for this reply): in silence.
            logger.warning("call %s: unusable hold audio, held in silence: %s", call_id, error)
            return None
        if not len(samples):  # an empty file would end at once, and be put back forever
            return None
        return Playback(HOLD_PLAYBACK, samples, loop=True)

    async def _transfer_out(self, out: protocol.TransferOut) -> protocol.HoldSet:
        if out.call in self.ended_calls:
            raise CallbridgeError(ErrorCode.CALL_STATE, "the call has ended")
        call = self.calls.get(out.call) or CallMedia(out.call, "bridge")
        leaving = call.find(out.leg)
        if leaving is not None:
            del call.legs[leaving.role]
            await leaving.close("closed")
        if self.hold_seqs.advance(out.call, out.seq):
            audio = await self._hold_audio(out.call, out.path)
            call.held, call.hold_audio, call.resume_on = True, audio, None
            logger.info("call %s: transferred, the caller held", out.call)
        self.calls[out.call] = call
        call.route()
        return protocol.HoldSet(held=call.held)

    async def _transfer_in(self, taken: protocol.TransferIn) -> protocol.HoldSet:
        if taken.call in self.ended_calls:
            raise CallbridgeError(ErrorCode.CALL_STATE, "the call has ended")
        call = self.calls.get(taken.call) or CallMedia(taken.call, "bridge")
        if self.hold_seqs.advance(taken.call, taken.seq):
            call.resume_on = taken.leg
            call.resume_if_taken_over()  # at once if its audio is here already
        self.calls[taken.call] = call
        call.route()
        return protocol.HoldSet(held=call.held)

    async def _hold(self, hold: protocol.Hold) -> protocol.HoldSet:
        if hold.call in self.ended_calls:
            raise CallbridgeError(ErrorCode.CALL_STATE, "the call has ended")
        call = self.calls.get(hold.call) or CallMedia(hold.call, "bridge")
        if not self.hold_seqs.advance(hold.call, hold.seq):
            return protocol.HoldSet(held=call.held)  # overtaken by a later decision
        audio = await self._hold_audio(hold.call, hold.path) if hold.held else None
        call.held, call.hold_audio, call.resume_on = hold.held, audio, None
        logger.info(
            "call %s %s (%s)",
            hold.call,
            "on hold" if hold.held else "resumed",
            "hold audio" if audio else "silence",
        )
        if call.idle:
            self.calls.pop(hold.call, None)
        else:
            self.calls[hold.call] = call
        call.route()
        return protocol.HoldSet(held=call.held)

    async def _supervise(self, supervise: protocol.Supervise) -> protocol.SupervisionSet:
        """A supervisor's mode (see supervised_ears), or its leaving: its leg is closed."""
        if supervise.call in self.ended_calls:
            raise CallbridgeError(ErrorCode.CALL_STATE, "the call has ended")
        call = self.calls.get(supervise.call) or CallMedia(
            supervise.call, "bridge", supervision=self.supervisions.get(supervise.call)
        )
        if not self.supervise_seqs.advance(supervise.call, supervise.seq):
            return protocol.SupervisionSet(mode=call.supervision)  # overtaken
        call.supervision = supervise.mode
        self.supervisions.pop(supervise.call, None)
        if supervise.mode is not None:
            self.supervisions[supervise.call] = supervise.mode
            while len(self.supervisions) > self.supervise_seqs.size:
                self.supervisions.popitem(last=False)
        leaving = call.legs.pop(SUPERVISOR_ROLE, None) if supervise.mode is None else None
        logger.info("call %s supervision: %s", supervise.call, supervise.mode or "none")
        if call.idle:
            self.calls.pop(supervise.call, None)
        else:
            self.calls[supervise.call] = call
        call.route()
        if leaving is not None:
            await leaving.close("closed")
        return protocol.SupervisionSet(mode=call.supervision)

    async def _consult_end(self, end: protocol.ConsultEnd) -> protocol.Closed:
        """A consult is over: the consulted leg is closed, or (completed) takes the
        operator's place and the first operator's leg is closed (see consulting_ears)."""
        call = self.calls.get(end.call)
        if call is None:
            return protocol.Closed()
        consulted = call.find(end.leg) if end.leg else None
        closing: list[LegPeer] = []
        if end.completed:
            leaving = call.find(end.leaving) if end.leaving else None
            if leaving is not None and leaving.role == "operator":
                del call.legs["operator"]
                closing.append(leaving)
            if consulted is not None and consulted.role == CONSULT_ROLE:
                del call.legs[CONSULT_ROLE]
                consulted.role = "operator"
                call.legs["operator"] = consulted
        elif consulted is not None and consulted.role == CONSULT_ROLE:
            del call.legs[CONSULT_ROLE]
            closing.append(consulted)
        logger.info("call %s: consult %s", end.call, "completed" if end.completed else "ended")
        call.route()
        for peer in closing:
            await peer.close("closed")
        if call.idle:
            self.calls.pop(end.call, None)
        return protocol.Closed()

    async def _record_start(self, start: protocol.RecordStart) -> protocol.RecordingStarted:
        call_id, recording_id = start.call, start.recording
        if call_id in self.ended_calls:
            raise CallbridgeError(ErrorCode.CALL_STATE, "the call has ended")
        if recording_id in self.stopped_recordings:
            raise CallbridgeError(ErrorCode.CALL_STATE, "that recording was stopped")
        call = self.calls.get(call_id) or CallMedia(call_id, start.mode)
        recorder = CallRecorder(
            recording_id,
            Path(start.path),
            packets=self.peer_settings.forwarding,
            render_slots=self._render_slots,
        )
        try:
            await recorder.start()
        except OSError as error:
            raise CallbridgeError(
                ErrorCode.MEDIA_BRIDGE_FAILURE, f"cannot write the recording: {error.strerror}"
            ) from None
        self.calls[call_id] = call
        call.recorders[recording_id] = recorder
        call.route()
        return protocol.RecordingStarted()

    async def _record_stop(self, stop: protocol.RecordStop) -> protocol.Recorded:
        self.stopped_recordings.add(stop.recording)
        call = self.calls.get(stop.call)
        if call is None or stop.recording not in call.recorders:
            # Overtook its start (refused when it comes), or long gone: no audio.
            return protocol.Recorded(result=None)
        result = await self._finish_recording(
            call, stop.recording, stop.reason, stop.by, stop.cutoff
        )
        call.route()  # nothing needs the audio decoded any more
        if call.idle:
            self.calls.pop(stop.call, None)
        return protocol.Recorded(result=result)

    async def _finish_recording(
        self, call: CallMedia, recording_id: str, reason: str, by: str, cutoff: float | None = None
    ) -> protocol.RecordedFile:
        recorder = call.recorders.pop(recording_id)
        stopped = await recorder.stop(cutoff=cutoff)
        result = protocol.RecordedFile(
            size_bytes=stopped.size_bytes,
            sha256=stopped.sha256,
            duration_s=stopped.duration_s,
            audio_started_at=recorder.started_wall,
        )
        self._reports.put_nowait(self.reporter.recording_finished(recording_id, reason, by, result))
        return result

    def _reroute(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            if call.resume_if_taken_over():
                logger.info("call %s: transfer taken, resumed", call_id)
            call.route()

    # --- reporting -----------------------------------------------------------------------
    def _report(self, call_id: str, peer: LegPeer, state: str) -> None:
        self._reports.put_nowait(self.reporter.leg_state(call_id, peer.leg_id, state))
        if state == "failed":
            asyncio.get_running_loop().create_task(self._drop_failed(call_id, peer))

    def _report_quality(
        self, call_id: str, peer: LegPeer, measured: QualityChange | Summary
    ) -> None:
        """A warning raised or cleared, or a closing connection's summary: to the reporter,
        in order with the leg's states (a summary after its `closed`)."""
        report: protocol.Report
        if isinstance(measured, QualityChange):
            sample = measured.sample
            report = protocol.QualityAlert(
                call=call_id,
                leg=peer.leg_id,
                name=measured.verdict.value,
                mos=sample.mos,
                r=sample.r,
                loss_percent=round(sample.loss_percent, 2),
                jitter_ms=round(sample.jitter_ms, 1),
                rtt_ms=None if sample.rtt_ms is None else round(sample.rtt_ms, 1),
            )
        else:
            report = protocol.QualitySummary.of(call_id, peer.leg_id, measured)
        self._reports.put_nowait(self.reporter.leg_quality(report))

    async def _drop_failed(self, call_id: str, peer: LegPeer) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.legs.get(peer.role) is peer:
            del call.legs[peer.role]
            call.route()
            if call.idle:
                self.calls.pop(call_id, None)
        await peer.close("failed")

    async def _count_packets(self) -> None:
        """Packets forwarded and lost into calls.metrics, in batches: once a second for
        every leg (and at each leg's close), never per packet."""
        while True:
            await asyncio.sleep(PACKET_COUNT_INTERVAL_S)
            try:
                for call in list(self.calls.values()):
                    for peer in list(call.legs.values()):
                        peer.count_packets()
            except Exception:
                logger.exception("media worker %s: packet counts failed", self.name)

    async def _report_in_order(self) -> None:
        while (report := await self._reports.get()) is not None:
            try:
                await report
            except Exception:
                logger.exception("media worker %s: could not record a leg state", self.name)
