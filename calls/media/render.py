"""Render a packet capture into the recording's stereo WAV (run as its own process).

    python -m calls.media.render CAPTURE WAV DURATION_S   → prints the result as JSON

The same timing as the live recorder: every 20 ms of wall-clock time becomes exactly 960
samples per channel — what the party's packets that had arrived by then decode to, or
silence for a gap — so one party's trouble never shifts the other's channel. Without a
jitter buffer in the way, each party's audio lands when it arrived.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from calls.media.audio import FRAME_SAMPLES
from calls.media.capture import WAV_CHANNEL_OF, iter_capture
from calls.media.forwarding import OpusDecoder
from calls.media.wav import MAX_BACKLOG, TICK_S, RecordingResult, WavWriter

TICKS_PER_WRITE = 500  # 10 s of audio per write


def render(capture: Path, wav: Path, duration_s: float) -> RecordingResult:
    packets = iter_capture(capture)  # streamed: hours of packets are never all in memory
    upcoming = next(packets, None)
    # One decoder per captured party; each lands in its WAV channel (WAV_CHANNEL_OF).
    decoders = [OpusDecoder("mono") for _ in WAV_CHANNEL_OF]
    buffers = [np.zeros(0, dtype=np.int16) for _ in WAV_CHANNEL_OF]
    writer = WavWriter(wav, fresh=False)
    block: list[bytes] = []
    for tick in range(int(duration_s / TICK_S)):
        taken_at = (tick + 1) * TICK_S
        arrived: list[list[np.ndarray]] = [[] for _ in WAV_CHANNEL_OF]
        while upcoming is not None and upcoming[1] <= taken_at:
            channel, _, payload = upcoming
            arrived[channel] += [
                f.to_ndarray().reshape(-1) for f in decoders[channel].decode(payload)
            ]
            upcoming = next(packets, None)
        out = np.zeros((FRAME_SAMPLES, 2), dtype=np.int32)
        for channel, wav_channel in enumerate(WAV_CHANNEL_OF):
            if arrived[channel]:
                buffers[channel] = np.concatenate([buffers[channel], *arrived[channel]])
                buffers[channel] = buffers[channel][-MAX_BACKLOG:]
            available = min(FRAME_SAMPLES, len(buffers[channel]))
            out[:available, wav_channel] += buffers[channel][:available]
            buffers[channel] = buffers[channel][available:]
        block.append(np.clip(out, -32768, 32767).astype(np.int16).tobytes())
        if len(block) == TICKS_PER_WRITE:
            writer.append(b"".join(block))
            block.clear()
    writer.append(b"".join(block))
    return writer.close()


def main(argv: list[str]) -> None:
    capture, wav, duration = Path(argv[1]), Path(argv[2]), float(argv[3])
    print(json.dumps(render(capture, wav, duration).as_dict()))


if __name__ == "__main__":
    main(sys.argv)
