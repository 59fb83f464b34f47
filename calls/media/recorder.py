"""Records a call: one stereo WAV, left = end user, right = operator, on wall-clock time.
A barging supervisor (heard by both parties) is mixed into the right channel, the call
centre's side: the file stays the stereo every player and consumer reads.

Every 20 ms of wall-clock time becomes exactly 960 samples per channel: what the leg sent
meanwhile, or silence if it sent nothing (a gap, a reconnect) — so one leg's trouble never
shifts the other channel.

On the forwarding path nothing is decoded during the call: the legs' Opus packets are
captured with their arrival times (capture.py) and rendered into the WAV when the
recording stops, in a separate process (render.py). On the decode path the WAV is written
live from the decoded frames; its header's sizes are patched at every flush, so even an
interrupted file is valid up to its last flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from av import AudioFrame

from calls.media.audio import FRAME_SAMPLES, AudioFanout, AudioSubscription
from calls.media.capture import PARTIES, PacketCapture, capture_path
from calls.media.render import render
from calls.media.wav import MAX_BACKLOG, TICK_S, RecordingResult, WavWriter, measure

logger = logging.getLogger(__name__)

FLUSH_TICKS = 25  # write every 0.5 s
CHANNELS = ("user", "operator")  # left, right
PROJECT_ROOT = Path(__file__).resolve().parents[2]
RENDERS_AT_ONCE = 2  # per media worker
RENDER_IN_THREAD_MAX_S = 2.0  # shorter recordings render in a thread, not a process


class RenderFailed(OSError):
    pass


class ChannelFeed:
    """One channel's samples: drained from a leg's audio, taken 960 at a time."""

    def __init__(self) -> None:
        self.source: AudioFanout | None = None
        self.subscription: AudioSubscription | None = None
        self.buffer = np.zeros(0, dtype=np.int16)

    def listen(self, source: AudioFanout | None) -> None:
        if source is self.source:
            return
        if self.source is not None and self.subscription is not None:
            self.source.unsubscribe(self.subscription)
        self.source, self.subscription = source, source.subscribe() if source else None

    def take(self, samples: int) -> np.ndarray:
        if self.subscription is not None:
            chunks = [self.buffer, *(_first_channel(f) for f in self.subscription.drain())]
            self.buffer = np.concatenate(chunks)[-MAX_BACKLOG:]
        out = np.zeros(samples, dtype=np.int16)
        available = min(samples, len(self.buffer))
        out[:available] = self.buffer[:available]
        self.buffer = self.buffer[available:]
        return out


def mixed(*channels: np.ndarray) -> np.ndarray:
    """Samples of several parties in one channel (summed, saturating)."""
    total = np.zeros(len(channels[0]), dtype=np.int32)
    for channel in channels:
        total += channel
    clipped: np.ndarray = np.clip(total, -32768, 32767).astype(np.int16)
    return clipped


def _first_channel(frame: AudioFrame) -> np.ndarray:
    channels = len(frame.layout.channels)
    samples = frame.to_ndarray().reshape(-1)
    return samples.reshape(-1, channels)[:, 0].astype(np.int16)


async def render_in_process(capture: Path, wav: Path, duration_s: float) -> RecordingResult:
    """calls.media.render in a niced child process: decoding stays off the media loop."""
    process = await asyncio.create_subprocess_exec(
        "nice",
        "-n",
        "10",
        sys.executable,
        "-m",
        "calls.media.render",
        str(capture),
        str(wav),
        f"{duration_s:.6f}",
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RenderFailed(f"rendering {capture} failed: {err.decode(errors='replace')[-2000:]}")
    return RecordingResult(**json.loads(out))


class CallRecorder:
    def __init__(
        self,
        recording_id: str,
        path: Path,
        *,
        packets: bool = False,
        render_slots: asyncio.Semaphore | None = None,
    ) -> None:
        self.recording_id = recording_id
        self.path = path
        self.takes_packets = packets
        # Renders at once per worker: many recordings stopping together (a shutdown, a
        # burst of hang-ups) must not start a process each on a busy media core.
        self._render_slots = render_slots or asyncio.Semaphore(1)
        self.channels = {role: ChannelFeed() for role in PARTIES}
        self._capture: PacketCapture | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[RecordingResult] | None = None
        # Unix time of the WAV's first sample (its audio is on wall-clock time from there).
        self.started_wall: float | None = None
        # Unix time after which nothing may be kept (set by stop(cutoff=…)).
        self._cutoff: float | None = None

    def listen(self, role: str, source: AudioFanout | None) -> None:
        """Decode path: record the frames of `source` (what a leg says, or hears) on
        `role`'s channel."""
        if role in self.channels:
            self.channels[role].listen(source)

    def packet_sink(self, role: str) -> Callable[[bytes], None]:
        """Forwarding path: what `role`'s tap calls with every Opus payload."""
        assert self._capture is not None, "start() first"
        return self._capture.sink(PARTIES.index(role))

    async def start(self) -> None:
        """Open the file (errors surface here), then record until stop()."""
        loop = asyncio.get_running_loop()
        writer = await loop.run_in_executor(None, WavWriter, self.path)
        if self.takes_packets:
            # The WAV is a valid, empty placeholder until the capture is rendered into it.
            await loop.run_in_executor(None, writer.close)
            self._capture = await loop.run_in_executor(None, PacketCapture, capture_path(self.path))
            self.started_wall = time.time() - (time.monotonic() - self._capture.started)
            work = self._capture_packets(self._capture)
        else:
            work = self._record(writer)
        self._task = loop.create_task(work, name=f"recorder:{self.recording_id}")

    async def stop(self, cutoff: float | None = None) -> RecordingResult:
        """Finish the file. `cutoff`: keep no audio after that unix time (a withdrawal's
        instant: the stop itself arrives a little later)."""
        self._cutoff = cutoff
        self._stop.set()
        assert self._task is not None
        result = await self._task
        for feed in self.channels.values():
            feed.listen(None)
        return result

    def _kept_seconds(self, recorded_s: float) -> float:
        """How much of what was recorded may be kept: nothing past the cutoff."""
        if self._cutoff is None or self.started_wall is None:
            return recorded_s
        return max(0.0, min(recorded_s, self._cutoff - self.started_wall))

    async def _capture_packets(self, capture: PacketCapture) -> RecordingResult:
        loop = asyncio.get_running_loop()
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FLUSH_TICKS * TICK_S):
                        await self._stop.wait()
                await loop.run_in_executor(None, capture.append, capture.take_pending())
        finally:
            duration_s = self._kept_seconds(time.monotonic() - capture.started)
            await asyncio.shield(loop.run_in_executor(None, capture.append, capture.take_pending()))
            await asyncio.shield(loop.run_in_executor(None, capture.close))
        if duration_s < TICK_S:  # not one frame to keep: the empty placeholder is the file
            result = await loop.run_in_executor(None, measure, self.path, 0)
        elif duration_s <= RENDER_IN_THREAD_MAX_S:
            # A few seconds decode in milliseconds: cheaper than starting a process (~0.3 s
            # of CPU), e.g. a recording a withdrawal stopped at once.
            async with self._render_slots:
                result = await loop.run_in_executor(
                    None, render, capture.path, self.path, duration_s
                )
        else:
            async with self._render_slots:
                result = await render_in_process(capture.path, self.path, duration_s)
        capture.path.unlink()
        logger.info(
            "recording %s: %.2f s, %d bytes (rendered)",
            self.recording_id,
            result.duration_s,
            result.size_bytes,
        )
        return result

    async def _record(self, writer: WavWriter) -> RecordingResult:
        loop = asyncio.get_running_loop()
        started, self.started_wall = loop.time(), time.time()
        ticks = 0
        pending: list[bytes] = []
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(
                        max(0.0, started + (ticks + 1) * TICK_S - loop.time())
                    ):
                        await self._stop.wait()
                # Catch up to now: wall-clock time decides how much audio there is.
                due = int((loop.time() - started) / TICK_S)
                while ticks < due:
                    left = self.channels["user"].take(FRAME_SAMPLES)
                    right = mixed(
                        self.channels["operator"].take(FRAME_SAMPLES),
                        self.channels["supervisor"].take(FRAME_SAMPLES),
                    )
                    pending.append(np.column_stack((left, right)).tobytes())
                    ticks += 1
                if len(pending) >= FLUSH_TICKS:
                    await loop.run_in_executor(None, writer.append, b"".join(pending))
                    pending.clear()
        finally:
            # Stop, hang-up, shutdown or error: the file is always finalized.
            await asyncio.shield(loop.run_in_executor(None, writer.append, b"".join(pending)))
            kept_ticks = min(ticks, int(self._kept_seconds(ticks * TICK_S) / TICK_S + 1e-9))
            kept_bytes = kept_ticks * FRAME_SAMPLES * 4
            await asyncio.shield(loop.run_in_executor(None, writer.truncate, kept_bytes))
            result = await asyncio.shield(loop.run_in_executor(None, writer.close))
        logger.info(
            "recording %s: %.2f s, %d bytes",
            self.recording_id,
            result.duration_s,
            result.size_bytes,
        )
        return result
