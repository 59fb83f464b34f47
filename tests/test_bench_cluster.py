"""The benchmark's `cluster` target, without starting one (`python -m bench.media --smoke
--targets cluster` does, in ~30 s: too slow for CI): each process's CPU counts its live
children (PostgreSQL's backends), and the report compares the cluster with the embedded
target process by process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from bench import loadgen, report

# A child that burns 0.3 s of CPU, says so, then stays alive (as a PostgreSQL backend does).
BURN = """
import time
while time.process_time() < 0.3:
    pass
print("burnt", flush=True)
time.sleep(120)
"""
PARENT = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN!r}])"


@pytest.mark.timeout(60)
def test_it_counts_the_cpu_of_a_server_process_and_its_live_children() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as parent:
        try:
            assert parent.stdout is not None and parent.stdout.readline() == "burnt\n"
            pids = loadgen.named_pids(f"server={parent.pid}, other={os.getpid()}")
            assert pids == {"server": parent.pid, "other": os.getpid()}
            children = loadgen.tree_cpu_s(pids["server"]) - loadgen.process_cpu_s(parent.pid)
            assert children >= 0.25  # /proc counts in clock ticks: a little under 0.3 s
        finally:
            os.killpg(parent.pid, signal.SIGKILL)  # its own session: the parent and child


def step(calls: int, cpu: float, by_process: dict[str, float] | None = None, **more: Any) -> dict:
    """One ramp step as bench.loadgen prints it (the fields the report reads)."""
    return {
        "calls": calls,
        "recording": False,
        "server_cpu_pct": cpu,
        "cpu_per_call_pct": cpu / calls,
        "calls_per_core": round(100 / (cpu / calls), 1),
        "loss_user_to_operator": 0.0,
        "loss_operator_to_user": 0.0,
        "added_p95_ms": 2.0,
        "offer_connected_p95_ms": 200.0,
        "generator_limited": False,
        "generator_cpu_pct": 50.0,
        "others_on_server_core_pct": 0.0,
        "loss_ok": True,
        "latency_ok": True,
        "growth_ok": False,
        "ramp_ok": True,
        **({"server_cpu_by_process": by_process} if by_process else {}),
        **more,
    }


def test_it_reports_the_cluster_against_the_embedded_target_process_by_process() -> None:
    failing = {"loss_ok": False, "ramp_ok": False, "offer_connected_p95_ms": 900.0}
    series = {
        "callbridge": [step(20, 10.0), step(40, 20.0, offer_connected_p95_ms=150.0)],
        "cluster": [
            step(20, 16.0, {"mediaworker": 8.0, "daphne": 5.0, "postgres": 2.5, "redis": 0.5}),
            step(40, 25.0, {"mediaworker": 12.0, "daphne": 9.0, "postgres": 3.0, "redis": 1.0}),
            step(80, 99.0, {"mediaworker": 51.0, "daphne": 35.0, "postgres": 10.0, "redis": 3.0})
            | failing,
        ],
    }
    summary = report.summarize({"series": series})

    cluster = summary["cluster"]
    assert cluster["max_calls_loss"] == 40 and cluster["limited_by"] == "server"
    assert cluster["busiest_process"] == "mediaworker"  # at the step that failed
    assert cluster["cpu_by_process"]["calls"] == 80
    assert "cpu_by_process" not in summary["callbridge"]  # one process: nothing to split
    assert summary["cluster_ratio"] == {
        "calls_per_core": 0.8,  # 160 / 200 calls per core
        "max_calls_loss": 1.0,
        "setup_at": 40,
        "offer_connected_p95_ms": {"cluster": 200.0, "callbridge": 150.0},
    }
    text = report.summary_text(summary)
    assert "cluster / callbridge (embedded): 0.8x calls per core, 1.0x calls held" in text
    assert "offer→connected p95 at 40 calls: 200 ms vs 150 ms" in text
    assert (
        "cluster CPU by process at 80 calls (% of a core): mediaworker 51.0, daphne 35.0,"
        " postgres 10.0, redis 3.0; busiest: mediaworker"
    ) in text

    table = report.table(series["cluster"]).splitlines()
    assert table[0].startswith("| N | server CPU % | CPU by process % | CPU/call % |")
    assert "| 99.0 | mediaworker 51.0, daphne 35.0, postgres 10.0, redis 3.0 |" in table[-1]
    assert all(len(row.split("|")) == len(table[0].split("|")) for row in table)
    assert "CPU by process" not in report.table(series["callbridge"])  # unchanged
    progress = series["cluster"][-1] | {
        "target": "cluster",
        "ws_rtt_p99_ms": 1,
        "loop_lag_p99_ms": 1,
    }
    assert report.progress_line(progress).endswith(
        "[mediaworker 51.0, daphne 35.0, postgres 10.0, redis 3.0]"
    )
