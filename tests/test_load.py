"""Signaling load on a real daphne: 300 WebSocket sessions (280 end users, 20 operators)
ring, answer, reject, cancel and hang up calls for a bounded time (no media). Every call
must end with a complete timeline and every socket get every event it should.

The full run and its options: `.venv/bin/python -m bench.signaling_load` (docs/RELIABILITY.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.signaling_load import passed, print_summary, run_load, server_env
from tests.live_server import running_server

pytestmark = pytest.mark.daphne


async def test_it_loses_no_event_with_300_signaling_sessions(tmp_path: Path) -> None:
    with running_server(tmp_path, **server_env()) as server:
        result = await run_load(
            server, sessions=300, operators=20, duration_s=8.0, think_s=6.0, talk_s=0.3
        )
    print_summary(result)
    assert passed(result), result
    assert result["calls"] >= 280  # every end user placed at least one call
    assert result["events_delivered"] == result["events_expected"] > 280 * 3
