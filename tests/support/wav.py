"""Reading what the recorder writes: 48 kHz 16-bit stereo WAV, one party per channel."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def read_wav(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(left samples, right samples, seconds); fails unless the format is the recorder's."""
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 48000, 2)
        frames = wav.getnframes()
        data = np.frombuffer(wav.readframes(frames), dtype="<i2").reshape(-1, 2)
    return data[:, 0].astype(float), data[:, 1].astype(float), frames / 48000


def dominant(samples: np.ndarray) -> float:
    """The loudest frequency in `samples` (48 kHz), ignoring the lowest 50 bins."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[:50] = 0
    return float(np.fft.rfftfreq(len(samples), 1 / 48000)[int(np.argmax(spectrum))])


def strength(samples: np.ndarray, frequency: float) -> float:
    """How loud `frequency` is in `samples` next to their loudest frequency (1.0: it is)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / 48000)
    window = (freqs > frequency - 15) & (freqs < frequency + 15)
    return float(spectrum[window].max() / (spectrum.max() + 1e-9))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples))))
