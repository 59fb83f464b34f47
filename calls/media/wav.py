"""The stereo WAV every recording is (left = end user, right = operator, 48 kHz, 16-bit),
on wall-clock time: every 20 ms tick is exactly 960 samples per channel. Written live by
the recorder (decode path) or by the renderer from a packet capture (forwarding path);
repaired from its length after a crash.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from calls.media.audio import FRAME_SAMPLES, SAMPLE_RATE

TICK_S = FRAME_SAMPLES / SAMPLE_RATE
MAX_BACKLOG = SAMPLE_RATE // 5  # a leg may run 200 ms ahead before its oldest audio is dropped


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
        return measure(self.path, self.data_bytes)


def measure(path: Path, data_bytes: int) -> RecordingResult:
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
    return measure(path, repair_wav_header(path))


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
