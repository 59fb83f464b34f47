"""Prometheus instruments every process updates (no Django: the media layer uses them too).

What happens inside a process is counted here: call set-up latency, packets forwarded and
lost, MOS samples, event-loop lag. What the database already knows (calls, legs, workers'
load, the webhook backlog) is read at scrape time instead (calls/metrics_scrape.py), so it
is right across processes and restarts without any bookkeeping.

Several processes (daphnes, media workers) on one host: prometheus_client's multiprocess
mode. With PROMETHEUS_MULTIPROC_DIR set before the first metric is made (it is read when
prometheus_client is imported), every process writes its values to its own files in that
directory and a scrape of any daphne on the host sums them (docs/integrations.md).
Without it (the embedded default) the values live in this process's memory.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, multiprocess

# No `_created` series: multiprocess mode has none, so one process alone has none either.
disable_created_metrics()

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Offer received by the media worker → its peer connection connected (ICE + DTLS).
SETUP_SECONDS = Histogram(
    "callbridge_call_setup_seconds",
    "Media set-up latency of a leg: offer received by the media worker to connected",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20),
)
PACKETS_FORWARDED = Counter(
    "callbridge_media_packets_forwarded",
    "RTP packets forwarded leg to leg by the media workers (forwarding path)",
)
PACKETS_LOST = Counter(
    "callbridge_media_packets_lost",
    "RTP packets the legs' senders sent that never reached a media worker (sequence gaps)",
)
MOS = Histogram(
    "callbridge_media_mos",
    "Mean opinion score estimates of legs (E-model, 1-4.5), one per quality sample",
    buckets=(1.0, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.4, 4.5),
)
LOOP_LAG_SECONDS = Histogram(
    "callbridge_event_loop_lag_seconds",
    "How late the event loop ran a task that asked to wake up (sampled once a second)",
    ["process"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
# Counted after commit, in whichever process ended the call (calls.apps connects it).
CALLS_ENDED = Counter(
    "callbridge_calls_ended",
    "Calls that reached a final state, by that state and the end reason",
    ["state", "reason"],
)
# Per process (a `pid` label in multiprocess mode; a dead process's value is dropped).
LOOP_LAG_MAX_SECONDS = Gauge(
    "callbridge_event_loop_lag_max_seconds",
    "The largest event-loop lag of this process over the last 10 samples",
    ["process"],
    multiprocess_mode="liveall",
)


def observe_setup(seconds: float) -> None:
    SETUP_SECONDS.observe(seconds)


def observe_mos(value: float) -> None:
    """One MOS sample of one leg (the call-quality code calls this per sample)."""
    MOS.observe(min(max(value, 1.0), 4.5))


def count_packets(forwarded: int, lost: int) -> None:
    """Add a batch (a leg's counts since its last report; never called per packet)."""
    if forwarded > 0:
        PACKETS_FORWARDED.inc(forwarded)
    if lost > 0:
        PACKETS_LOST.inc(lost)


def on_call_event(event: Any, **_: Any) -> None:
    """Receiver of calls.model_signals.call_event_recorded (sent after commit)."""
    if event.name == "call.ended":
        CALLS_ENDED.labels(
            str(event.data.get("state", "")), str(event.data.get("reason", ""))
        ).inc()


def observe_loop_lag(process: str, seconds: float) -> None:
    LOOP_LAG_SECONDS.labels(process).observe(seconds)


def set_loop_lag_max(process: str, seconds: float) -> None:
    LOOP_LAG_MAX_SECONDS.labels(process).set(seconds)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


def _forget_this_process(pid: int, path: str) -> None:
    if os.getpid() == pid:  # not in a forked child
        multiprocess.mark_process_dead(pid, path)


_directory = multiprocess_dir()
if _directory is not None:
    # A process that exits cleanly takes its per-process gauges with it (a killed one is
    # found at the next scrape: calls.metrics_scrape.forget_dead_processes).
    atexit.register(_forget_this_process, os.getpid(), _directory)
