"""Signaling load on a real daphne: 300 WebSocket sessions (290 end users, 10 operators)
ring, answer, reject, cancel and hang up calls for a bounded time (no media). Every call
must end with a complete timeline and every socket get every event it should.

The full run and its options: `.venv/bin/python -m bench.signaling_load` (docs/RELIABILITY.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.signaling_load import passed, print_summary, run_load, server_env
from tests.support.live_server import running_server

pytestmark = pytest.mark.daphne


async def test_it_loses_no_event_with_300_signaling_sessions(tmp_path: Path) -> None:
    with running_server(tmp_path, **server_env()) as server:
        # About 15 calls a second offered for 5 s, on top of 300 sockets registering.
        result = await run_load(
            server, sessions=300, operators=10, duration_s=4.0, think_s=10.0, talk_s=0.3
        )
    print_summary(result)
    assert passed(result), result
    assert result["calls"] >= 50
    assert result["events_delivered"] == result["events_expected"] > 50 * 3 * 11
