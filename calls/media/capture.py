"""A recording as it happens on the forwarding path: each party's Opus packets, timed.

Capturing costs a few hundred nanoseconds per packet (a header and a list append) and a
file append every half second from a thread; nothing is decoded while the call runs. When
the recording stops, `calls.media.render` turns the capture into the stereo WAV in its
own (niced) process. The capture file sits next to the WAV (`<name>.wav.capture`) until
then, so an interrupted recording can still be rendered.

File: MAGIC, then records of (channel: u8, microseconds since start: u64, length: u16,
Opus payload); channel 0 is the end user (left), 1 the operator (right), 2 a barging
supervisor (rendered into the right channel: WAV_CHANNEL_OF). Captures without
channel 2 (every one before barges were recorded) render as they always did.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

MAGIC = b"callbridge opus capture 1\n"
RECORD = struct.Struct("<BQH")
PARTIES = ("user", "operator", "supervisor")  # by a record's channel number
WAV_CHANNEL_OF = (0, 1, 1)  # where each lands in the stereo WAV: the supervisor is mixed right


def capture_path(wav_path: Path) -> Path:
    return wav_path.with_name(wav_path.name + ".capture")


class PacketCapture:
    """Collects timed payloads in memory; `flush()` (blocking: from a thread) appends them."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = path.open("xb")  # a fresh file, never an existing one
        self.file.write(MAGIC)
        self.file.flush()
        self.started = time.monotonic()
        self._pending: list[bytes] = []

    def sink(self, channel: int) -> Callable[[bytes], None]:
        """What a leg's tap calls with each payload it receives (on the event loop)."""
        pending, started = self._pending, self.started

        def take(payload: bytes) -> None:
            elapsed_us = int((time.monotonic() - started) * 1_000_000)
            pending.append(RECORD.pack(channel, elapsed_us, len(payload)) + payload)

        return take

    def take_pending(self) -> bytes:
        """What arrived since the last call (on the event loop, then flushed in a thread)."""
        chunk = b"".join(self._pending)
        self._pending.clear()
        return chunk

    def append(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def iter_capture(path: Path) -> Iterator[tuple[int, float, bytes]]:
    """(channel, seconds since start, payload) in arrival order; a torn last record is cut.

    Streamed: a capture of hours (~9 KB/s) is never held in memory at once."""
    with path.open("rb") as file:
        if file.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{path} is not a callbridge capture")
        while len(head := file.read(RECORD.size)) == RECORD.size:
            channel, elapsed_us, length = RECORD.unpack(head)
            payload = file.read(length)
            if len(payload) < length:
                return  # written while the process died
            yield channel, elapsed_us / 1_000_000, payload


def read_capture(path: Path) -> list[tuple[int, float, bytes]]:
    return list(iter_capture(path))
