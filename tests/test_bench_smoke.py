"""The media benchmark (bench/) runs end to end in its smoke mode: structure only.

No performance threshold is asserted here: CI machines are noisy. The numbers come from
`python -m bench.media --out docs/PERFORMANCE.md` on a quiet machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.daphne, pytest.mark.timeout(300)]

STEP_KEYS = {
    "calls",
    "server_cpu_pct",
    "cpu_per_call_pct",
    "loss_user_to_operator",
    "loss_operator_to_user",
    "added_p95_ms",
    "offer_connected_p95_ms",
    "ws_rtt_p99_ms",
    "loop_lag_p99_ms",
    "rss_mb",
    "generator_cpu_pct",
}


def test_it_runs_the_smoke_benchmark_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "PERFORMANCE.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench.media", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    results = json.loads(out.with_suffix(".json").read_text())
    assert set(results["series"]) == {"callbridge", "stock"}
    for steps in results["series"].values():
        assert steps and [s["calls"] for s in steps] == sorted(s["calls"] for s in steps)
        for step in steps:
            assert set(step) >= STEP_KEYS
            assert step["setup_failures"] == 0
            assert step["server_cpu_pct"] >= 0
            assert step["latency_samples"] > 0  # the pulses made it through the bridge
            assert step["ws_samples"] > 0
    assert [s["recording"] for s in results["recording"]] == [False, True]
    # One call of two monitored, whispered to, barged into: the supervisor got each party's
    # packets on that party's own track (the numbers themselves are for a quiet machine).
    supervised = results["supervision"]
    assert [s["supervision"] for s in supervised] == [None, "monitor", "whisper", "barge"]
    assert all(s["setup_failures"] == 0 for s in supervised)
    assert all(s["supervisor_tracks_received"] > 0.9 for s in supervised[1:])
    assert {"callbridge", "stock", "ratio", "recording", "supervision"} <= set(results["summary"])
    assert "monitored vs none" in out.read_text()

    report = out.read_text()
    assert "| N |" in report and "## stock" in report and "Versions:" in report
    assert (tmp_path / "performance.png").stat().st_size > 1000
