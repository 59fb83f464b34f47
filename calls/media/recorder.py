"""Records a call: one stereo WAV, left = end user, right = operator, on wall-clock time.

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
import hashlib
import json
import logging
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from av import AudioFrame

from calls.media.audio import FRAME_SAMPLES, SAMPLE_RATE, AudioSubscription, InboundAudio
from calls.media.capture import PacketCapture, capture_path

logger = logging.getLogger(__name__)

TICK_S = FRAME_SAMPLES / SAMPLE_RATE
FLUSH_TICKS = 25  # write every 0.5 s
MAX_BACKLOG = SAMPLE_RATE // 5  # a leg may run 200 ms ahead before its oldest audio is dropped
CHANNELS = ("user", "operator")  # left, right
PROJECT_ROOT = Path(__file__).resolve().parents[2]
RENDERS_AT_ONCE = 2  # per media worker
RENDER_IN_THREAD_MAX_S = 2.0  # shorter recordings render in a thread, not a process


class RenderFailed(OSError):
    pass


@dataclass(frozen=True)
class RecordingResult:
    size_bytes: int
    sha256: str
    duration_s: float

    def as_dict(self) -> dict[str, float | int | str]:
        return {"size_bytes": self.size_bytes, "sha256": self.sha256, "duration_s": self.duration_s}


# The WAV layout every writer here uses (80 bytes before the samples): RIFF, a 28-byte JUNK
# chunk, fmt, data. A RIFF file's sizes are 32-bit, so ~6.2 h of 48 kHz 16-bit stereo is
# the most it can hold; past that the header becomes RF64 in place (EBU Tech 3306): "RF64",
# the JUNK chunk turned into "ds64" holding the 64-bit sizes, and 0xFFFFFFFF in the 32-bit
# fields. ffmpeg, sox and libsndfile read RF64 (what BWF recorders and ffmpeg's `-rf64
# auto` write); below the limit the file is plain RIFF that every reader opens.
RIFF_MAX = 0xFFFFFFFF  # the largest RIFF size field; a module constant so tests can lower it
_SIZE_IN_DS64 = 0xFFFFFFFF  # RF64's 32-bit size fields say "read the ds64 chunk"
_RIFF = struct.Struct("<4sI4s")
_DS64 = struct.Struct("<4sIQQQI")  # id, 28, RIFF size, data size, sample frames, table length
_FMT = struct.Struct("<4sIHHIIHH")
_DATA = struct.Struct("<4sI")
HEADER_BYTES = _RIFF.size + _DS64.size + _FMT.size + _DATA.size
_LEGACY_HEADER_BYTES = _RIFF.size + _FMT.size + _DATA.size  # before RF64: no JUNK chunk
_FRAME_BYTES = 4  # a stereo 16-bit sample frame
_FMT_CHUNK = _FMT.pack(b"fmt ", 16, 1, 2, SAMPLE_RATE, SAMPLE_RATE * _FRAME_BYTES, 4, 16)


def wav_header(data_bytes: int) -> bytes:
    """The HEADER_BYTES before `data_bytes` of samples: RIFF while the sizes fit, else RF64."""
    riff_size = HEADER_BYTES - 8 + data_bytes
    if riff_size <= RIFF_MAX:
        return (
            _RIFF.pack(b"RIFF", riff_size, b"WAVE")
            + _DS64.pack(b"JUNK", 28, 0, 0, 0, 0)  # room for ds64, skipped by RIFF readers
            + _FMT_CHUNK
            + _DATA.pack(b"data", data_bytes)
        )
    frames = data_bytes // _FRAME_BYTES
    return (
        _RIFF.pack(b"RF64", _SIZE_IN_DS64, b"WAVE")
        + _DS64.pack(b"ds64", 28, riff_size, data_bytes, frames, 0)
        + _FMT_CHUNK
        + _DATA.pack(b"data", _SIZE_IN_DS64)
    )


def _legacy_header(data_bytes: int) -> bytes:
    """The 44-byte RIFF header of files written before RF64 (only ever repaired)."""
    return (
        _RIFF.pack(b"RIFF", 36 + data_bytes, b"WAVE") + _FMT_CHUNK + _DATA.pack(b"data", data_bytes)
    )


class WavWriter:
    """48 kHz 16-bit stereo PCM. Blocking: call it from a thread."""

    def __init__(self, path: Path, *, fresh: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # fresh: never an existing file. Otherwise (rendering) the placeholder is replaced.
        self.file = path.open("xb" if fresh else "wb")
        self.data_bytes = 0
        self._write_header()

    @classmethod
    def header(cls, data_bytes: int) -> bytes:
        return wav_header(data_bytes)

    def _write_header(self) -> None:
        self.file.seek(0)
        self.file.write(wav_header(self.data_bytes))
        self.file.seek(0, 2)

    def append(self, pcm: bytes) -> None:
        self.file.write(pcm)
        self.data_bytes += len(pcm)
        self._write_header()
        self.file.flush()

    def truncate(self, data_bytes: int) -> None:
        """Keep only the first `data_bytes` of audio (a consent withdrawn before now)."""
        if data_bytes < self.data_bytes:
            self.data_bytes = max(0, data_bytes // 4 * 4)
            self.file.truncate(HEADER_BYTES + self.data_bytes)
            self._write_header()

    def close(self) -> RecordingResult:
        self._write_header()
        self.file.close()
        return _measure(self.path, self.data_bytes)


def _measure(path: Path, data_bytes: int) -> RecordingResult:
    digest = hashlib.sha256()
    with path.open("rb") as written:
        for block in iter(lambda: written.read(1 << 20), b""):
            digest.update(block)
    return RecordingResult(
        size_bytes=path.stat().st_size,
        sha256=digest.hexdigest(),
        duration_s=data_bytes / _FRAME_BYTES / SAMPLE_RATE,
    )


def repair_wav(path: Path) -> RecordingResult:
    """Finalize a WAV that a killed process left behind: keep every whole stereo frame
    written, cut a torn last frame, and rewrite the header's sizes from the file length
    (the header only caught up at the last flush). ValueError if it is not our WAV."""
    return _measure(path, repair_wav_header(path))


def repair_wav_header(path: Path) -> int:
    """repair_wav without the checksum: the samples kept (bytes)."""
    with path.open("r+b") as file:
        head = file.read(HEADER_BYTES)
        if len(head) < _LEGACY_HEADER_BYTES or head[:4] not in (b"RIFF", b"RF64"):
            raise ValueError(f"{path.name} is not a WAV file this recorder wrote")
        if head[8:16] in (b"WAVEJUNK", b"WAVEds64") and len(head) == HEADER_BYTES:
            header_bytes, header = HEADER_BYTES, wav_header
        elif head[8:16] == b"WAVEfmt ":  # written before RF64: it stopped at RIFF's limit
            header_bytes, header = _LEGACY_HEADER_BYTES, _legacy_header
        else:
            raise ValueError(f"{path.name} is not a WAV file this recorder wrote")
        file.seek(0, 2)
        data_bytes = (file.tell() - header_bytes) // _FRAME_BYTES * _FRAME_BYTES
        if header is _legacy_header:  # its writer crashed on samples past the 32-bit sizes
            data_bytes = min(data_bytes, (RIFF_MAX - 36) // _FRAME_BYTES * _FRAME_BYTES)
        file.truncate(header_bytes + data_bytes)
        file.seek(0)
        file.write(header(data_bytes))
    return data_bytes


class ChannelFeed:
    """One channel's samples: drained from a leg's audio, taken 960 at a time."""

    def __init__(self) -> None:
        self.source: InboundAudio | None = None
        self.subscription: AudioSubscription | None = None
        self.buffer = np.zeros(0, dtype=np.int16)

    def listen(self, source: InboundAudio | None) -> None:
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
        self.channels = {role: ChannelFeed() for role in CHANNELS}
        self._capture: PacketCapture | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[RecordingResult] | None = None
        # Unix time of the WAV's first sample (its audio is on wall-clock time from there).
        self.started_wall: float | None = None
        # Unix time after which nothing may be kept (set by stop(cutoff=…)).
        self._cutoff: float | None = None

    def listen(self, role: str, source: InboundAudio | None) -> None:
        """Decode path: record the frames of `source` on `role`'s channel."""
        if role in self.channels:
            self.channels[role].listen(source)

    def packet_sink(self, role: str) -> Callable[[bytes], None]:
        """Forwarding path: what `role`'s tap calls with every Opus payload."""
        assert self._capture is not None, "start() first"
        return self._capture.sink(CHANNELS.index(role))

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
            result = await loop.run_in_executor(None, _measure, self.path, 0)
        elif duration_s <= RENDER_IN_THREAD_MAX_S:
            # A few seconds decode in milliseconds: cheaper than starting a process (~0.3 s
            # of CPU), e.g. a recording a withdrawal stopped at once.
            from calls.media.render import render  # the renderer imports this module

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
                    right = self.channels["operator"].take(FRAME_SAMPLES)
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
