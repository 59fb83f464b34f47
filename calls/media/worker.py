"""The media worker: owns the peer connections of its calls, reached via the channel layer.

Messages on its channel (`media.<name>`), each handled in order per call:
  media.offer      {call, kind, mode, leg, role, sdp, reply_to, request_id}
                   → media.answer | media.error (refused: kind "create" while draining;
                   kind "answer" when another party's answer already holds that role)
  media.candidate  {call, leg, candidate, sdpMid, sdpMLineIndex, reply_to?, request_id?}
  media.close      {call, leg, reply_to?} close that leg's media; the call stays → media.closed
  media.end_call   {call}               the call ended: stop its recordings, close its legs
  media.record_start {call, mode, recording, path, reply_to} → media.recording
                   (refused once the call ended or that recording was stopped)
  media.record_stop  {call, recording, reason, by, cutoff?, reply_to?} → media.recorded
                   {result}; `cutoff` (unix time): no audio after it is kept. A stop that
                   overtakes its start is answered (nothing recorded) and the start refused.
  media.play       {call, playback, path, to, reply_to} → media.playing {durationS}
  media.play_stop  {call, reply_to?} → media.play_stopped
Leg media states go to the LegReporter (the database) in the order they happen.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from calls.audio_decoding import UnusableAudio, decode_mono
from calls.errors import CallbridgeError, ErrorCode
from calls.media.audio import Playback
from calls.media.peer import LegPeer, PeerSettings
from calls.media.recorder import CHANNELS, RENDERS_AT_ONCE, CallRecorder

logger = logging.getLogger(__name__)


def worker_channel(name: str) -> str:
    return f"media.{name}"


class ChannelLayer(Protocol):
    async def send(self, channel: str, message: dict[str, Any]) -> None: ...
    async def receive(self, channel: str) -> dict[str, Any]: ...


class LegReporter(Protocol):
    async def leg_state(self, call_id: str, leg_id: str, state: str) -> None: ...

    async def recording_finished(
        self, recording_id: str, reason: str, by: str, result: dict[str, Any]
    ) -> None: ...


@dataclass
class CallMedia:
    call_id: str
    mode: str  # "echo" | "bridge"
    legs: dict[str, LegPeer] = field(default_factory=dict)  # by role
    recorders: dict[str, CallRecorder] = field(default_factory=dict)  # by recording id

    def route(self) -> None:
        """Point every leg's ears at the right mouth: itself (echo) or the other party;
        and every recorder at the legs' current audio. Only audio that a recorder or a
        mix needs is decoded; the rest is forwarded as it came."""
        decoded: set[str] = set()
        for role, peer in self.legs.items():
            origin = role if self.mode == "echo" else ("operator" if role == "user" else "user")
            if peer.listen_to(self.legs.get(origin)):
                decoded.add(origin)
        for peer in self.legs.values():
            peer.capture_into([])
        for recorder in self.recorders.values():
            for role in CHANNELS:
                peer = self.legs.get(role)
                if recorder.takes_packets:  # forwarding: packets captured, rendered later
                    if peer is not None:
                        peer.capture_into([recorder.packet_sink(role)])
                else:
                    recorder.listen(role, peer.inbound if peer else None)
                    decoded.add(role)
        for role, peer in self.legs.items():
            peer.decode_inbound(role in decoded)

    @property
    def idle(self) -> bool:
        return not self.legs and not self.recorders

    def find(self, leg_id: str) -> LegPeer | None:
        return next((peer for peer in self.legs.values() if peer.leg_id == leg_id), None)


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

    @property
    def peer_count(self) -> int:
        return sum(len(call.legs) for call in self.calls.values())

    async def run(self) -> None:
        reporting = asyncio.get_running_loop().create_task(self._report_in_order())
        logger.info("media worker %s listening on %s", self.name, self.channel)
        try:
            while True:
                message = await self.layer.receive(self.channel)
                task = asyncio.get_running_loop().create_task(self._handle_in_call_order(message))
                self._handlers.add(task)
                task.add_done_callback(self._handlers.discard)
        finally:
            await self.close_all()
            await self._reports.put(None)
            await asyncio.gather(reporting, return_exceptions=True)

    async def close_all(self) -> None:
        """Close every peer connection (shutdown)."""
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for call_id in list(self.calls):
            await self._end_call(call_id, "shutdown")

    # --- dispatch ------------------------------------------------------------------------
    async def _handle_in_call_order(self, message: dict[str, Any]) -> None:
        call_id = str(message.get("call", ""))
        lock = self._call_locks.setdefault(call_id, asyncio.Lock())
        async with lock:
            try:
                await self._handle(message)
            except CallbridgeError as error:
                await self._reply(message, {"type": "media.error", **error.as_body()})
            except Exception:
                logger.exception("media worker %s: %s failed", self.name, message.get("type"))
                failure = CallbridgeError(ErrorCode.MEDIA_BRIDGE_FAILURE, "media worker error")
                await self._reply(message, {"type": "media.error", **failure.as_body()})
        if call_id not in self.calls and not lock.locked():
            self._call_locks.pop(call_id, None)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "media.offer":
            await self._offer(message)
        elif kind == "media.candidate":
            await self._candidate(message)
        elif kind == "media.close":
            await self._close_leg(message["call"], message["leg"])
            await self._reply(message, {"type": "media.closed"})
        elif kind == "media.end_call":
            await self._end_call(message["call"], "hangup")
        elif kind == "media.record_start":
            await self._record_start(message)
            await self._reply(message, {"type": "media.recording"})
        elif kind == "media.play":
            duration = await self._play(message)
            await self._reply(message, {"type": "media.playing", "durationS": duration})
        elif kind == "media.play_stop":
            call = self.calls.get(message["call"])
            for peer in call.legs.values() if call else []:
                peer.outbound.overlays.clear()
            if call is not None:
                call.route()
            await self._reply(message, {"type": "media.play_stopped"})
        elif kind == "media.record_stop":
            result = await self._record_stop(
                message["call"],
                message["recording"],
                message["reason"],
                message["by"],
                message.get("cutoff"),
            )
            await self._reply(message, {"type": "media.recorded", "result": result})
        else:
            logger.warning("media worker %s: unknown message %r", self.name, kind)

    async def _reply(self, message: dict[str, Any], reply: dict[str, Any]) -> None:
        if message.get("reply_to"):
            reply.update(request_id=message.get("request_id"), call=message.get("call"))
            reply.setdefault("leg", message.get("leg"))
            await self.layer.send(message["reply_to"], reply)

    # --- handlers ------------------------------------------------------------------------
    async def _offer(self, message: dict[str, Any]) -> None:
        call_id, leg_id, role = message["call"], message["leg"], message["role"]
        if message.get("kind") == "create" and not self.accepting_new_calls:
            raise CallbridgeError(
                ErrorCode.MEDIA_BRIDGE_FAILURE, "that media worker is draining; call again"
            )
        if call_id in self.ended_calls:
            raise CallbridgeError(ErrorCode.CALL_STATE, "the call has ended")
        call = self.calls.get(call_id) or CallMedia(call_id, message["mode"])
        holder = call.legs.get(role)
        if holder is not None and holder.leg_id != leg_id:
            # Only the same leg reconnects; another leg never replaces a party's media
            # (two parties racing to answer: the first offer here is the one that may be
            # recorded). Signaling refuses this first; this is the media's own guard.
            raise CallbridgeError(ErrorCode.CALL_STATE, "another party holds that place")
        peer = LegPeer(
            leg_id=leg_id,
            role=role,
            settings=self.peer_settings,
            on_state=lambda p, state: self._report(call_id, p, state),
            on_inbound=lambda _: self._reroute(call_id),
        )
        peer.outbound.on_overlays_done = lambda: self._reroute(call_id)
        try:
            answer = await peer.answer(message["sdp"])
        except BaseException:
            await peer.close(report=False)  # a bad offer changes nothing
            raise
        self.calls[call_id] = call
        previous = call.legs.get(role)
        call.legs[role] = peer
        if previous is not None:
            await previous.close(report=False)  # reconnect: the new connection replaces it
        call.route()
        await self._reply(message, {"type": "media.answer", "sdp": answer})

    async def _candidate(self, message: dict[str, Any]) -> None:
        call = self.calls.get(message["call"])
        peer = call.find(message["leg"]) if call else None
        if peer is None:
            raise CallbridgeError(ErrorCode.NOT_FOUND, "that leg has no media connection")
        await peer.add_candidate(
            message.get("candidate", ""), message.get("sdpMid"), message.get("sdpMLineIndex")
        )

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

    async def _end_call(self, call_id: str, reason: str) -> None:
        self.ended_calls.add(call_id)
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        for recording_id in list(call.recorders):
            await self._finish_recording(call, recording_id, reason, "system")
        for peer in list(call.legs.values()):
            await peer.close("closed")
        call.legs.clear()

    async def _play(self, message: dict[str, Any]) -> float:
        call = self.calls.get(message["call"])
        roles = ["user", "operator"] if message["to"] == "both" else [message["to"]]
        targets = [call.legs[role] for role in roles if call and role in call.legs]
        if len(targets) != len(roles):
            raise CallbridgeError(
                ErrorCode.CALL_STATE, f"no media connection to play to ({message['to']})"
            )
        try:
            samples = await asyncio.get_running_loop().run_in_executor(
                None, decode_mono, message["path"]
            )
        except UnusableAudio as error:
            raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, str(error)) from None
        for peer in targets:
            peer.outbound.overlays[message["playback"]] = Playback(message["playback"], samples)
        if call is not None:
            call.route()  # mixing needs the other party's audio decoded
        return len(samples) / 48000

    async def _record_start(self, message: dict[str, Any]) -> None:
        call_id, recording_id = message["call"], message["recording"]
        if call_id in self.ended_calls:
            raise CallbridgeError(ErrorCode.CALL_STATE, "the call has ended")
        if recording_id in self.stopped_recordings:
            raise CallbridgeError(ErrorCode.CALL_STATE, "that recording was stopped")
        call = self.calls.get(call_id) or CallMedia(call_id, message["mode"])
        recorder = CallRecorder(
            message["recording"],
            Path(message["path"]),
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
        call.recorders[message["recording"]] = recorder
        call.route()

    async def _record_stop(
        self, call_id: str, recording_id: str, reason: str, by: str, cutoff: float | None
    ) -> dict[str, Any]:
        self.stopped_recordings.add(recording_id)
        call = self.calls.get(call_id)
        if call is None or recording_id not in call.recorders:
            return {}  # overtook its start (refused when it comes), or long gone: no audio
        result = await self._finish_recording(call, recording_id, reason, by, cutoff)
        call.route()  # nothing needs the audio decoded any more
        if call.idle:
            self.calls.pop(call_id, None)
        return result

    async def _finish_recording(
        self, call: CallMedia, recording_id: str, reason: str, by: str, cutoff: float | None = None
    ) -> dict[str, Any]:
        recorder = call.recorders.pop(recording_id)
        result = {
            **(await recorder.stop(cutoff=cutoff)).as_dict(),
            "audio_started_at": recorder.started_wall,
        }
        self._reports.put_nowait(self.reporter.recording_finished(recording_id, reason, by, result))
        return result

    def _reroute(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            call.route()

    # --- reporting -----------------------------------------------------------------------
    def _report(self, call_id: str, peer: LegPeer, state: str) -> None:
        self._reports.put_nowait(self.reporter.leg_state(call_id, peer.leg_id, state))
        if state == "failed":
            asyncio.get_running_loop().create_task(self._drop_failed(call_id, peer))

    async def _drop_failed(self, call_id: str, peer: LegPeer) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.legs.get(peer.role) is peer:
            del call.legs[peer.role]
            call.route()
            if call.idle:
                self.calls.pop(call_id, None)
        await peer.close("failed")

    async def _report_in_order(self) -> None:
        while (report := await self._reports.get()) is not None:
            try:
                await report
            except Exception:
                logger.exception("media worker %s: could not record a leg state", self.name)
