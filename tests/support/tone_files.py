"""Tone files in every format the audio library takes, made with PyAV (the decoder's own
library): .mp3 (LAME), .wav (PCM), .opus (Ogg Opus), .ogg (Ogg Vorbis)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

RATE = 48000
# suffix -> (container, encoder, channels): each a real file of its kind. FFmpeg's own
# Vorbis encoder is experimental and stereo only.
FORMATS: dict[str, tuple[str, str, int]] = {
    ".mp3": ("mp3", "libmp3lame", 1),
    ".wav": ("wav", "pcm_s16le", 1),
    ".opus": ("opus", "libopus", 1),
    ".ogg": ("ogg", "vorbis", 2),
}


def write_tone_file(path: Path, frequency: float, seconds: float) -> Path:
    """A sine of `frequency` (half scale) encoded as `path`'s suffix says."""
    container, codec, channels = FORMATS[path.suffix]
    layout = "stereo" if channels == 2 else "mono"
    t = np.arange(int(RATE * seconds)) / RATE
    pcm = (np.sin(2 * np.pi * frequency * t) * 0.5 * 32767).astype(np.int16)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=RATE, layout=layout)
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        step = stream.codec_context.frame_size or 1024
        for start in range(0, len(pcm), step):
            chunk = np.repeat(pcm[start : start + step], channels)  # interleaved
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate, frame.pts = RATE, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
