"""Event-loop lag samplers: a file for benchmarks (off unless CALLBRIDGE_LOOP_LAG_FILE is
set) and the Prometheus metrics (`LoopLagMeter`, on by default at one sample a second).

Every 50 ms a task asks to sleep 50 ms and records how late it woke up: that lateness is
how long anything else on the loop (signaling, media) waited for its turn. Each sample is
appended to the file as `<unix time> <lag ms>` (flushed once a second), so a benchmark in
another process can take the p99 over any window. It costs ~20 wake-ups a second.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from calls import metrics

INTERVAL_S = 0.05
FLUSH_EVERY = 20  # samples: about once a second
ENV = "CALLBRIDGE_LOOP_LAG_FILE"

_running: dict[int, asyncio.Task[None]] = {}  # keeps the tasks referenced


async def sample_lag(path: Path, interval_s: float = INTERVAL_S) -> None:
    loop = asyncio.get_running_loop()
    with path.open("a", buffering=1 << 16) as out:
        pending = 0
        while True:
            asked = loop.time()
            await asyncio.sleep(interval_s)
            lag_ms = max(loop.time() - asked - interval_s, 0.0) * 1000
            out.write(f"{time.time():.3f} {lag_ms:.2f}\n")
            pending += 1
            if pending >= FLUSH_EVERY:
                out.flush()
                pending = 0


def start_from_env(loop: asyncio.AbstractEventLoop) -> asyncio.Task[None] | None:
    """Start sampling `loop` into $CALLBRIDGE_LOOP_LAG_FILE (once per loop); None if unset."""
    target = os.environ.get(ENV, "")
    if not target or id(loop) in _running:
        return None
    task = loop.create_task(sample_lag(Path(target)), name="callbridge:loop-lag")
    _running[id(loop)] = task
    return task


# --- the metrics sampler (calls.metrics; on by default) -----------------------------------
METRICS_WINDOW = 10  # samples per reported maximum


class LoopLagMeter:
    """The same measure at a low rate, into the process's Prometheus metrics: a histogram
    of every sample and the largest lag of the last METRICS_WINDOW samples. A background
    service of the serving processes (calls.background) and of the media workers."""

    def __init__(self, process: str, interval_s: float) -> None:
        self.process = process
        self.interval_s = interval_s

    async def run(self) -> None:
        if self.interval_s <= 0:
            return  # off (CALLBRIDGE_METRICS_LOOP_LAG_INTERVAL_MS=0)
        loop = asyncio.get_running_loop()
        window: list[float] = []
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval_s)
            lag_s = max(loop.time() - asked - self.interval_s, 0.0)
            metrics.observe_loop_lag(self.process, lag_s)
            window.append(lag_s)
            if len(window) >= METRICS_WINDOW:
                metrics.set_loop_lag_max(self.process, max(window))
                window.clear()
