"""Event-loop lag sampler for benchmarks: off unless CALLBRIDGE_LOOP_LAG_FILE is set.

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
