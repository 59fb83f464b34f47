"""Rendering a packet capture into the WAV, as the child process does (and after a crash)."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

from calls.media.capture import MAGIC, RECORD, read_capture
from tests.support.media_peers import opus_tone

ROOT = Path(__file__).resolve().parent.parent


def record(channel: int, at_s: float, payload: bytes) -> bytes:
    return RECORD.pack(channel, int(at_s * 1_000_000), len(payload)) + payload


def dominant(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / 48000)[int(np.argmax(spectrum))])


def test_a_capture_renders_each_party_on_its_channel_with_gaps_as_silence(
    tmp_path: Path,
) -> None:
    user, operator = opus_tone(440, 3.0), opus_tone(880, 3.0)
    capture = bytearray(MAGIC)
    for index in range(150):  # 3 s of 20 ms packets
        at = index * 0.02 + 0.005
        if not 1.0 <= at < 2.0:  # the user's network drops for a second
            capture += record(0, at, user[index])
        capture += record(1, at + 0.001, operator[index])
    capture += RECORD.pack(1, 3_000_000, 200) + b"torn"  # the process died mid-write
    capture_file, wav_file = tmp_path / "call.wav.capture", tmp_path / "call.wav"
    capture_file.write_bytes(bytes(capture))
    assert len(read_capture(capture_file)) == 100 + 150

    done = subprocess.run(
        [sys.executable, "-m", "calls.media.render", str(capture_file), str(wav_file), "3.0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["duration_s"] == 3.0 and result["size_bytes"] == wav_file.stat().st_size

    with wave.open(str(wav_file)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (2, 48000, 144000)
        samples = np.frombuffer(wav.readframes(144000), dtype="<i2").reshape(-1, 2)
    left, right = samples[:, 0].astype(float), samples[:, 1].astype(float)
    second = slice(0, 48000)
    assert abs(dominant(left[second][4800:]) - 440) < 10
    assert abs(dominant(right[second][4800:]) - 880) < 10
    gap = left[int(1.1 * 48000) : int(1.9 * 48000)]
    assert np.abs(gap).max() < 50  # silence where the user sent nothing
    assert abs(dominant(left[int(2.2 * 48000) :]) - 440) < 10  # and back, unshifted
    assert np.sqrt(np.mean(right[int(1.1 * 48000) : int(1.9 * 48000)] ** 2)) > 1000


def test_it_streams_a_capture_of_hours_instead_of_holding_it_in_memory(tmp_path: Path) -> None:
    # ~6 h of two parties is ~2 million packets (~200 MB): read whole, as before, the render
    # process held it all (and a list entry per packet) before writing a sample.
    import tracemalloc

    from calls.media.capture import iter_capture

    payload = bytes(80)
    capture_file = tmp_path / "long.wav.capture"
    with capture_file.open("wb") as out:
        out.write(MAGIC)
        out.writelines(record(i % 2, i / 100, payload) for i in range(200_000))  # ~18 MB
    tracemalloc.start()
    try:
        last_at = max(at for _, at, _ in iter_capture(capture_file))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert last_at == 1999.99
    assert peak < 1_000_000
