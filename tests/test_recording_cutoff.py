"""A withdrawal's stop arrives a little after the withdrawal: the recorder keeps nothing
recorded after the instant it is given (issue 12, item 1), on both media paths."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from calls.media.recorder import CallRecorder
from tests.support.wav import read_wav


@pytest.mark.parametrize("packets", [True, False], ids=["forwarding", "decode"])
async def test_it_keeps_no_audio_after_the_cutoff(tmp_path: Path, packets: bool) -> None:
    recorder = CallRecorder("cutoff", tmp_path / "cut.wav", packets=packets)
    async with asyncio.timeout(20):
        await recorder.start()
        await asyncio.sleep(0.7)  # past a 0.5 s flush: written audio must be cut back too
        assert recorder.started_wall is not None
        cutoff = recorder.started_wall + 0.3
        assert time.time() > cutoff + 0.3  # the stop comes well after the cutoff
        result = await recorder.stop(cutoff=cutoff)
    _, _, seconds = read_wav(tmp_path / "cut.wav")
    assert seconds == pytest.approx(result.duration_s)
    assert 0.26 <= seconds <= 0.3  # whole 20 ms frames up to the cutoff, none after


async def test_it_keeps_nothing_when_the_cutoff_came_before_the_start(tmp_path: Path) -> None:
    recorder = CallRecorder("late", tmp_path / "late.wav", packets=True)
    async with asyncio.timeout(20):
        await recorder.start()
        await asyncio.sleep(0.2)
        result = await recorder.stop(cutoff=time.time() - 60)
    assert result.duration_s == 0
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("*.capture")))
