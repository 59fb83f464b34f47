"""Audio routing between legs: drain what a leg sends, feed what a leg hears.

`InboundAudio` always drains a leg's remote track (an undrained aiortc track queues
without bound), notes when audio last arrived, and fans frames out to subscriptions.
`OutboundAudioTrack` is what a leg hears: frames from whatever subscription it is given,
re-timed onto its own continuous clock, with silence whenever the source has nothing.
Swapping the source (the other party reconnects) needs no renegotiation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Protocol, cast

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
TIME_BASE = Fraction(1, SAMPLE_RATE)
# How long past a frame's due time we wait for the source before sending silence.
SOURCE_SLACK_S = 0.06
# Frames a slow consumer may fall behind before the oldest are dropped (bounds latency).
SUBSCRIPTION_DEPTH = 5


def silence_frame(samples: int = FRAME_SAMPLES) -> AudioFrame:
    frame = AudioFrame(format="s16", layout="stereo", samples=samples)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = SAMPLE_RATE
    frame.time_base = TIME_BASE
    return frame


def copy_frame(frame: AudioFrame) -> AudioFrame:
    """A private copy: frames are shared between subscribers and encoded in threads."""
    copy = AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=frame.samples)
    for source, target in zip(frame.planes, copy.planes, strict=True):
        # Decoders pad their buffers: copy only what the frame holds. PyAV's stub says
        # update() takes bytes; it takes any buffer, and a bytes() copy per frame is waste.
        target.update(memoryview(source)[: target.buffer_size])  # type: ignore[arg-type]
    copy.sample_rate = frame.sample_rate
    return copy


class AudioSubscription:
    """A short queue of frames for one consumer; the oldest are dropped when it lags."""

    def __init__(self, depth: int = SUBSCRIPTION_DEPTH) -> None:
        self._frames: deque[AudioFrame] = deque(maxlen=depth)
        self._ready = asyncio.Event()
        self.dropped = 0
        self.wake: asyncio.Event | None = None  # a mix waiting for any of its parts

    def put(self, frame: AudioFrame) -> None:
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1
        self._frames.append(frame)
        self._ready.set()
        if self.wake is not None:
            self.wake.set()

    def pop(self) -> AudioFrame | None:
        """The oldest queued frame, without waiting (None: nothing queued)."""
        return self._frames.popleft() if self._frames else None

    def drain(self) -> list[AudioFrame]:
        """Every queued frame, without waiting."""
        frames = list(self._frames)
        self._frames.clear()
        return frames

    async def get(self, within: float) -> AudioFrame | None:
        """The next frame, or None if none arrives within `within` seconds."""
        if not self._frames:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):  # not wait_for: no inner task
                    await self._ready.wait()
        return self._frames.popleft() if self._frames else None


class AudioSource(Protocol):
    """What a leg hears from: one subscription, or a mix of several."""

    async def get(self, within: float) -> AudioFrame | None: ...


class AudioMix:
    """Several parties heard as one (a leg that must hear two others: a whisper to the
    operator, a barge). Paced by the hearing leg's clock, not by its sources: at each
    frame's due time one frame from each source that has one, summed (saturating); a
    source with nothing yet is silent in that frame. Following the first source to
    deliver instead would send a frame per arrival of each, twice the real rate."""

    def __init__(self, parts: list[AudioSubscription]) -> None:
        self.parts = parts
        self._wake = asyncio.Event()
        for part in parts:
            part.wake = self._wake

    async def get(self, within: float) -> AudioFrame | None:
        await asyncio.sleep(max(within - SOURCE_SLACK_S, 0.0))  # until the frame is due
        frames = [frame for part in self.parts if (frame := part.pop()) is not None]
        if not frames:  # nobody yet: wait the slack for whoever comes first
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(within, SOURCE_SLACK_S)):
                    await self._wake.wait()
            frames = [frame for part in self.parts if (frame := part.pop()) is not None]
        return sum_frames(frames) if frames else None


def sum_frames(frames: list[AudioFrame]) -> AudioFrame:
    """One stereo s16 frame that is the sum of `frames` (saturating; padded to the longest)."""
    parts = []
    for frame in frames:
        channels = len(frame.layout.channels)
        samples = frame.to_ndarray().reshape(-1, channels).astype(np.int32)
        parts.append(samples if channels == 2 else np.repeat(samples[:, :1], 2, axis=1))
    total = np.zeros((max(len(p) for p in parts), 2), dtype=np.int32)
    for samples in parts:
        total[: len(samples)] += samples
    mixed = np.clip(total, -32768, 32767).astype(np.int16).reshape(1, -1)
    out = AudioFrame.from_ndarray(mixed, format="s16", layout="stereo")
    out.sample_rate = SAMPLE_RATE
    return out


class AudioFanout:
    """Frames fanned out to subscriptions (a recorder's channel, a leg that listens)."""

    def __init__(self) -> None:
        self.frames_received = 0
        self.last_frame_at: float | None = None
        self._subscriptions: set[AudioSubscription] = set()

    @property
    def subscribed(self) -> bool:
        return bool(self._subscriptions)

    def subscribe(self) -> AudioSubscription:
        subscription = AudioSubscription()
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: AudioSubscription) -> None:
        self._subscriptions.discard(subscription)

    def push(self, frame: AudioFrame) -> None:
        self.frames_received += 1
        self.last_frame_at = time.monotonic()
        for subscription in self._subscriptions:
            subscription.put(frame)


class InboundAudio(AudioFanout):
    """One leg's audio as frames, fanned out to subscriptions.

    Frames are pushed by the forwarding path's decoder, or (`pump`) drained from aiortc's
    remote track on the decode path.
    """

    def __init__(self, track: MediaStreamTrack, name: str, *, pump: bool = True) -> None:
        super().__init__()
        self.track = track
        self.name = name
        self._task: asyncio.Task[None] | None = None
        if pump:
            self._task = asyncio.get_running_loop().create_task(
                self._pump(), name=f"inbound-audio:{name}"
            )

    async def _pump(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return  # the peer connection closed
            # An audio track's recv() yields AudioFrames; aiortc annotates any Frame or Packet.
            self.push(cast(AudioFrame, frame))

    async def stop(self) -> None:
        self._subscriptions.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Playback:
    """Samples (48 kHz mono) played over what a leg hears: once, or `loop`ed until stopped
    (a queue's waiting audio)."""

    def __init__(self, playback_id: str, samples: np.ndarray, loop: bool = False) -> None:
        self.playback_id = playback_id
        self.samples = samples
        self.loop = loop and len(samples) > 0
        self.position = 0

    @property
    def done(self) -> bool:
        return not self.loop and self.position >= len(self.samples)

    def take(self, count: int) -> np.ndarray:
        chunk = np.zeros(count, dtype=np.int32)
        filled = 0
        while filled < count:
            piece = self.samples[self.position : self.position + count - filled]
            chunk[filled : filled + len(piece)] = piece
            filled += len(piece)
            self.position += len(piece)
            if not self.loop:
                self.position += count - filled  # the rest is silence: done
                break
            if self.position >= len(self.samples):
                self.position = 0
        return chunk


def mix(frame: AudioFrame, overlays: list[Playback]) -> AudioFrame:
    """`frame` with the overlays added (saturating), as a new s16 frame."""
    channels = len(frame.layout.channels)
    base = frame.to_ndarray().reshape(-1, channels).astype(np.int32)
    for overlay in overlays:
        base += overlay.take(len(base))[:, None]
    mixed = np.clip(base, -32768, 32767).astype(np.int16).reshape(1, -1)
    out = AudioFrame.from_ndarray(mixed, format="s16", layout=frame.layout.name)
    out.sample_rate = SAMPLE_RATE
    return out


class OutboundAudioTrack(MediaStreamTrack):
    """What one leg hears. Paced in real time; silence when its source has nothing."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._source: AudioSource | None = None
        self.overlays: dict[str, Playback] = {}
        # Called when the last overlay finishes (the leg may go back to forwarding).
        self.on_overlays_done: Callable[[], None] | None = None
        self._clock_start: float | None = None
        self._pts = 0
        self._held = False
        self._resumed = asyncio.Event()
        self.frames_sent = 0
        self.silent_frames = 0
        # What this leg hears, as frames, for whoever records it (a held caller's channel
        # on the decode path: the hold audio). Nothing is pushed while nobody subscribes.
        self.heard = AudioFanout()

    def use(self, source: AudioSource | None) -> None:
        """Hear `source` from now on (None: silence)."""
        self._source = source
        self._held = False
        self._resumed.set()

    def hold(self) -> None:
        """Produce nothing: the leg's audio is forwarded around this track."""
        self._source = None
        self._held = True

    def stop(self) -> None:
        super().stop()
        self._resumed.set()

    async def recv(self) -> AudioFrame:
        loop = asyncio.get_running_loop()
        if self._held:
            while self._held and self.readyState == "live":
                self._resumed.clear()
                await self._resumed.wait()
            # Resume on a fresh clock, or the pacing would burst to catch up the pause.
            self._clock_start = loop.time() - self._pts / SAMPLE_RATE
        if self.readyState != "live":
            raise MediaStreamError
        if self._clock_start is None:
            self._clock_start = loop.time()
        due = self._clock_start + self._pts / SAMPLE_RATE
        frame = None
        if self._source is not None:
            frame = await self._source.get(max(due + SOURCE_SLACK_S - loop.time(), 0.0))
        if frame is None:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = silence_frame()
            self.silent_frames += 1
        else:
            frame = copy_frame(frame)
        if self.overlays:
            frame = mix(frame, list(self.overlays.values()))
            for playback_id in [k for k, p in self.overlays.items() if p.done]:
                del self.overlays[playback_id]
            if not self.overlays and self.on_overlays_done is not None:
                self.on_overlays_done()
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        self._pts += frame.samples
        self.frames_sent += 1
        if self.heard.subscribed:
            self.heard.push(frame)
        return frame
