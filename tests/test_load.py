"""Signaling load on a real daphne: 300 WebSocket sessions (290 end users, 10 operators)
ring, answer, reject, cancel and hang up calls for a bounded time (no media). Every call
must end with a complete timeline and every socket get every event it should.

Runs the benchmark as a program, `.venv/bin/python -m bench.signaling_load` (the full run
and its options: docs/RELIABILITY.md); tests/ and bench/ do not import each other.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from callbridge.local_server import ROOT
from tests.support.live_server import prepared_data_dir

pytestmark = pytest.mark.daphne


def test_it_loses_no_event_with_300_signaling_sessions() -> None:
    # About 15 calls a second offered for 4 s, on top of 300 sockets registering.
    options = ["--sessions=300", "--operators=10", "--duration=4", "--think=10", "--talk=0.3"]
    # The run's migrated database, copied: no migrate in the benchmark's own time.
    options.append(f"--database={prepared_data_dir() / 'db.sqlite3'}")
    run = subprocess.run(
        [sys.executable, "-m", "bench.signaling_load", *options, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    print(run.stdout)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]  # its checks passed
    result = json.loads(run.stdout[run.stdout.index("{") :])
    assert result["calls"] >= 50
    assert result["events_delivered"] == result["events_expected"] > 50 * 3 * 11
