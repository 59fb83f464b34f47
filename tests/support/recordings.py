"""A finished recording with a real WAV on disk (the recorder's own writer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calls.media.wav import WavWriter
from calls.models import Call, Recording
from calls.principals import Principal


def finished_recording(
    call: Call, by: Principal, media_root: Path, name: str, frames: int = 4800
) -> Recording:
    """Record the active `call` and finish it with `frames` stereo frames of a ramp (so
    every byte range differs)."""
    started = Recording.begin(call, by, name, consents=lambda _: [])
    writer = WavWriter(media_root / "recordings" / name)
    samples = (np.arange(frames * 2) % 30000).astype("<i2").reshape(frames, 2)
    writer.append(samples.tobytes())
    result = writer.close()
    started.finish(reason="stopped", by=by.label, result=result.as_dict())
    return started
