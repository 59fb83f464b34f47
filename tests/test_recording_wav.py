"""A recording's WAV past 4 GiB (~6.2 h of 48 kHz 16-bit stereo) becomes RF64 in place
(EBU Tech 3306) instead of crashing on RIFF's 32-bit sizes (issue 12 item 8).

Without writing 4 GiB: the files are sparse (truncate makes the gigabytes of silence),
and only the header and the last samples are real. ffmpeg (PyAV), libsndfile (what
Python's soundfile uses; through ctypes) and Python's `wave` read them back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from calls.media import wav
from calls.media.wav import WavWriter, repair_wav

# What a fresh file's header takes (read, not imported: the test runs against old code too).
HEADER_BYTES = len(WavWriter.header(0))
# The most samples a RIFF WAV of ours holds: its RIFF size (header - 8 + data) fits 32 bits.
RIFF_MOST = (0xFFFFFFFF - (HEADER_BYTES - 8)) // 4 * 4
TAIL = np.arange(1, 1921, dtype=np.int16).tobytes()  # 20 ms, recognisable


@pytest.fixture
def sparse_wav(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "long.wav"
    yield path
    path.unlink(missing_ok=True)  # no 4 GiB file left in pytest's kept temp folders


def grown_to(path: Path, data_bytes: int) -> WavWriter:
    """A writer that has (sparsely) written `data_bytes` of silence, as after hours."""
    writer = WavWriter(path)
    writer.file.truncate(HEADER_BYTES + data_bytes)
    writer.file.seek(0, 2)
    writer.data_bytes = data_bytes
    return writer


def head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(HEADER_BYTES)


def ffmpeg_frames_and_tail(path: Path) -> tuple[int, bytes]:
    """(sample frames the header declares, the last 20 ms decoded) as ffmpeg reads them."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert (stream.sample_rate, stream.channels, stream.format.name) == (48000, 2, "s16")
        frames = int(stream.duration or 0)
        container.seek(max(0, frames - 960), stream=stream)
        pcm = b"".join(bytes(frame.planes[0]) for frame in container.decode(stream))
    return frames, pcm[-len(TAIL) :]


def libsndfile_frames(path: Path) -> int:
    """Sample frames as libsndfile (soundfile, sox's sibling) counts them."""
    name = ctypes.util.find_library("sndfile")
    if name is None:
        pytest.skip("libsndfile is not installed")
    library = ctypes.CDLL(name)

    class Info(ctypes.Structure):
        _fields_ = [
            ("frames", ctypes.c_int64),
            ("samplerate", ctypes.c_int),
            ("channels", ctypes.c_int),
            ("format", ctypes.c_int),
            ("sections", ctypes.c_int),
            ("seekable", ctypes.c_int),
        ]

    library.sf_open.restype = ctypes.c_void_p
    library.sf_close.argtypes = [ctypes.c_void_p]
    info = Info()
    handle = library.sf_open(str(path).encode(), 0x10, ctypes.byref(info))  # SFM_READ
    assert handle, "libsndfile could not open the file"
    library.sf_close(handle)
    assert (info.samplerate, info.channels) == (48000, 2)
    return int(info.frames)


def test_it_keeps_a_wav_just_under_4_gib_plain_riff(sparse_wav: Path) -> None:
    writer = grown_to(sparse_wav, RIFF_MOST - len(TAIL))
    writer.append(TAIL)
    writer.file.close()  # (close() would checksum 4 GiB)
    assert head(sparse_wav)[:4] == b"RIFF"
    with wave.open(str(sparse_wav)) as read:
        assert read.getnframes() == RIFF_MOST // 4
    assert ffmpeg_frames_and_tail(sparse_wav) == (RIFF_MOST // 4, TAIL)
    assert libsndfile_frames(sparse_wav) == RIFF_MOST // 4


def test_it_turns_a_wav_growing_past_4_gib_into_rf64_in_place(sparse_wav: Path) -> None:
    writer = grown_to(sparse_wav, RIFF_MOST)
    writer.append(TAIL)  # main: struct.error ('I' format requires 0 <= number <= 4294967295)
    writer.file.close()
    frames = (RIFF_MOST + len(TAIL)) // 4
    header = head(sparse_wav)
    assert header[:4] == b"RF64" and header[12:16] == b"ds64"
    assert ffmpeg_frames_and_tail(sparse_wav) == (frames, TAIL)
    assert libsndfile_frames(sparse_wav) == frames
    assert frames / 48000 > 6.2 * 3600


def test_it_repairs_a_killed_recording_past_4_gib_as_rf64(sparse_wav: Path) -> None:
    writer = grown_to(sparse_wav, 2**20)
    writer.append(TAIL)  # the header's last flush: 1 MiB and 20 ms
    writer.file.truncate(HEADER_BYTES + 2**32 + 4 * 960 + 2)  # then hours more, a torn frame
    writer.file.close()
    from calls.media.wav import repair_wav_header  # (repair_wav without the checksum)

    assert repair_wav_header(sparse_wav) == 2**32 + 4 * 960
    assert sparse_wav.stat().st_size == HEADER_BYTES + 2**32 + 4 * 960
    assert head(sparse_wav)[:4] == b"RF64"
    assert libsndfile_frames(sparse_wav) == 2**30 + 960
    assert ffmpeg_frames_and_tail(sparse_wav)[0] == 2**30 + 960


def test_it_upgrades_mid_recording_and_every_reader_gets_every_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same path end to end at a lowered limit: RIFF at first, RF64 from the flush that
    # crosses it, each flush's header valid, the samples intact (a 440 Hz tone).
    monkeypatch.setattr(wav, "RIFF_MAX", HEADER_BYTES - 8 + 48000 * 4)  # 1 s of audio
    t = np.arange(48000 * 3) / 48000
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    pcm = np.column_stack((tone, -tone)).tobytes()
    writer = WavWriter(tmp_path / "tone.wav")
    kinds = []
    for start in range(0, len(pcm), 24000 * 4):  # 0.5 s flushes
        writer.append(pcm[start : start + 24000 * 4])
        kinds.append((tmp_path / "tone.wav").read_bytes()[:4])
    result = writer.close()
    assert kinds == [b"RIFF", b"RIFF", b"RF64", b"RF64", b"RF64", b"RF64"]
    assert result.duration_s == pytest.approx(3.0)
    assert result.size_bytes == HEADER_BYTES + len(pcm)
    with av.open(str(tmp_path / "tone.wav")) as container:
        decoded = b"".join(bytes(f.planes[0]) for f in container.decode(audio=0))
    assert decoded == pcm
    assert libsndfile_frames(tmp_path / "tone.wav") == 48000 * 3
    # A crash-repair of the finished file changes nothing.
    before = (tmp_path / "tone.wav").read_bytes()
    assert repair_wav(tmp_path / "tone.wav") == result
    assert (tmp_path / "tone.wav").read_bytes() == before


def test_it_repairs_a_wav_written_before_rf64_in_its_own_layout(tmp_path: Path) -> None:
    legacy = tmp_path / "old.wav"
    samples = b"\x01\x00\x02\x00" * 4800
    with wave.open(str(legacy), "wb") as out:  # the 44-byte header the recorder used to write
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(samples)
    with legacy.open("ab") as file:
        file.write(b"\x03\x00\x04\x00" * 960 + b"\x05")  # after the last flush, torn
    result = repair_wav(legacy)
    with wave.open(str(legacy)) as read:
        assert read.getnframes() == 4800 + 960
    assert result.size_bytes == 44 + (4800 + 960) * 4
