"""bench/fastleg.py leans on aiortc/aioice internals: fail loudly if an upgrade moves them.

Two FastLegs connect directly, send the pre-encoded tone (with its pulse) around aiortc,
and each counts, classifies and (as a probe) decodes what the other sent.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.audio import LOOP_FRAMES, PULSE_FRAME, SOUND_MIN_BYTES, encode_payloads
from bench.fastleg import FastLeg
from calls import loop_lag


def test_it_encodes_silence_and_a_tone_that_payload_size_tells_apart() -> None:
    payloads = encode_payloads(440.0)
    assert len(payloads.silence) < SOUND_MIN_BYTES
    assert len(payloads.sound) == LOOP_FRAMES
    assert min(len(p) for p in payloads.sound) >= SOUND_MIN_BYTES


async def test_it_sends_and_counts_rtp_around_aiortc() -> None:
    a, b = FastLeg("a", probe=True), FastLeg("b", probe=True)
    try:
        await a.accept(await b.answer(await a.offer()))
        await a.wait_connected(10)
        await b.wait_connected(10)
        a.take_over()
        b.take_over()
        payloads = encode_payloads(440.0)
        pulses = []
        for frame in range(2 * LOOP_FRAMES):
            index = frame % LOOP_FRAMES
            if index == PULSE_FRAME:
                pulses.append(time.perf_counter())
            a.send(payloads.silence if frame == 0 else payloads.sound[index], sound=frame > 0)
            b.send(payloads.silence, sound=False)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        # The first packet teaches each receiver the SRTP tag length and is not classified.
        assert (b.received, b.received_sound) == (2 * LOOP_FRAMES, 2 * LOOP_FRAMES - 1)
        assert (a.received, a.received_sound) == (2 * LOOP_FRAMES, 0)
        assert len(b.onsets) == 1  # the second pulse (the first was sent as silence)
        assert 0 < b.onsets[0] - pulses[1] < 0.05
        assert a.pc.connectionState == "connected"  # ICE consent (STUN) still flows to aioice
    finally:
        await a.close()
        await b.close()


async def test_it_samples_loop_lag_into_a_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "lag.txt"
    monkeypatch.setenv(loop_lag.ENV, str(target))
    task = loop_lag.start_from_env(asyncio.get_running_loop())
    assert task is not None
    assert loop_lag.start_from_env(asyncio.get_running_loop()) is None  # once per loop
    await asyncio.sleep(0.3)
    # Blocking the loop on purpose: one sample shows it. The sampler's 50 ms sleep may be
    # under way when the block starts, so a block of 150 ms shows as 100 ms or more.
    time.sleep(0.15)  # noqa: ASYNC251
    await asyncio.sleep(1.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    lags = [float(line.split()[1]) for line in target.read_text().splitlines()]
    assert len(lags) >= 20
    assert max(lags) >= 90
