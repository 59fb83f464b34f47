"""Opus payloads encoded once (PyAV) and replayed by every load leg; pulse detection.

A leg sends `silence` frames while idle and the `sound` loop during a measurement window:
a quiet tone with one loud 20 ms pulse per second (the pulse fills frame 0 of the loop,
starting at its first sample). Receivers tell sound from silence by payload size alone
(digital silence encodes to a few bytes, the tone to ~100+), so load legs never decode;
probe legs decode to find each pulse's onset.
"""

from __future__ import annotations

import fractions
import math
from dataclasses import dataclass

import av
import numpy as np

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
LOOP_FRAMES = 50  # one pulse per second
PULSE_FRAME = 0
TONE_AMPLITUDE = 0.05
PULSE_AMPLITUDE = 0.7
PULSE_HZ = 1000.0
# Decoded sample magnitude above which a pulse is heard (the tone peaks near 1,600).
PULSE_THRESHOLD = 8000
# Payloads at least this long carry sound; the silence we send (and aiortc's) is shorter.
SOUND_MIN_BYTES = 20


@dataclass(frozen=True)
class Payloads:
    silence: bytes
    sound: tuple[bytes, ...]  # LOOP_FRAMES payloads; sound[PULSE_FRAME] holds the pulse


def _samples(frequency: float, frames: int) -> np.ndarray:
    t = np.arange(frames * FRAME_SAMPLES) / SAMPLE_RATE
    tone = np.sin(2 * math.pi * frequency * t) * TONE_AMPLITUDE
    pulse_at = slice(PULSE_FRAME * FRAME_SAMPLES, (PULSE_FRAME + 1) * FRAME_SAMPLES)
    tone[pulse_at] = np.sin(2 * math.pi * PULSE_HZ * t[pulse_at]) * PULSE_AMPLITUDE
    return (tone * 32767).astype(np.int16)


def _encode(samples: np.ndarray) -> list[bytes]:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = SAMPLE_RATE
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.bit_rate = 64000
    encoder.time_base = fractions.Fraction(1, SAMPLE_RATE)
    payloads: list[bytes] = []
    stereo = np.repeat(samples, 2)
    for index in range(len(samples) // FRAME_SAMPLES):
        chunk = stereo[index * FRAME_SAMPLES * 2 : (index + 1) * FRAME_SAMPLES * 2]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = index * FRAME_SAMPLES
        frame.time_base = encoder.time_base
        payloads.extend(bytes(packet) for packet in encoder.encode(frame))
    return payloads


def encode_payloads(frequency: float) -> Payloads:
    """Silence and a one-second tone loop at `frequency` with its pulse, as Opus payloads.

    Two loops are encoded and the second kept, so the loop starts from a warm encoder and
    repeats seamlessly; the encoder's lookahead keeps the pulse inside its own frame."""
    sound = _encode(np.tile(_samples(frequency, LOOP_FRAMES), 3))
    loop = tuple(sound[LOOP_FRAMES : 2 * LOOP_FRAMES])
    silence = _encode(np.zeros(FRAME_SAMPLES * 10, dtype=np.int16))[-1]
    if len(loop) != LOOP_FRAMES or len(silence) >= SOUND_MIN_BYTES:
        raise RuntimeError("unexpected Opus encoder output")
    if min(len(payload) for payload in loop) < SOUND_MIN_BYTES:
        raise RuntimeError("tone payloads too small to tell from silence")
    return Payloads(silence=silence, sound=loop)


def _first_channel(frame: av.AudioFrame) -> np.ndarray:
    """Samples of the first channel on the s16 scale, whatever the decoder's format."""
    data = frame.to_ndarray()
    if frame.format.is_planar:
        first = data[0]
    else:
        first = data.reshape(-1, len(frame.layout.channels))[:, 0]
    if first.dtype.kind == "f":
        return first * 32767
    return first


class PulseDetector:
    """Decodes one leg's received Opus and reports where each pulse begins."""

    def __init__(self, holdoff_s: float = 0.5) -> None:
        self._decoder = av.CodecContext.create("opus", "r")
        self._holdoff_s = holdoff_s
        self._last_onset = -math.inf

    def onset(self, payload: bytes, arrival: float) -> float | None:
        """The time the pulse starts if it starts in this payload (arrived at `arrival`)."""
        for frame in self._decoder.decode(av.Packet(payload)):
            loud = np.flatnonzero(np.abs(_first_channel(frame)) > PULSE_THRESHOLD)
            if loud.size == 0:
                continue
            onset = arrival + loud[0] / SAMPLE_RATE
            if onset - self._last_onset < self._holdoff_s:
                return None
            self._last_onset = onset
            return onset
        return None
