"""Decoding library audio (PyAV): validation on upload, 48 kHz mono samples for playback."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import av
import numpy as np

SAMPLE_RATE = 48000
MAX_SECONDS = 600


class UnusableAudio(ValueError):
    pass


def decode_mono(source: str | Path | IO[bytes], max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """The whole file as 48 kHz mono int16 samples; UnusableAudio if it is not audio."""
    try:
        container = av.open(source, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise UnusableAudio(f"not a readable audio file ({error})") from None
    try:
        if not container.streams.audio:
            raise UnusableAudio("the file has no audio")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        total = 0
        for frame in container.decode(audio=0):
            for resampled in resampler.resample(frame):
                chunk = resampled.to_ndarray().reshape(-1)
                chunks.append(chunk)
                total += len(chunk)
                if total > max_seconds * SAMPLE_RATE:
                    raise UnusableAudio(f"longer than {max_seconds // 60:.0f} minutes")
        for resampled in resampler.resample(None):
            chunks.append(resampled.to_ndarray().reshape(-1))
    except av.error.FFmpegError as error:
        raise UnusableAudio(f"the audio could not be decoded ({error})") from None
    finally:
        container.close()
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    if len(samples) == 0:
        raise UnusableAudio("the file has no audio")
    return samples.astype(np.int16)
