"""bench/setup_profile.py and calls/setup_trace.py: a traced set-up becomes per-stage
durations, grouped by the load it was made at; tracing off writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report, setup_profile
from calls import setup_trace


def test_it_writes_nothing_until_a_trace_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLBRIDGE_SETUP_TRACE", raising=False)
    setup_trace.mark("leg-1", "offer.planned")
    assert not setup_trace.enabled()
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("CALLBRIDGE_SETUP_TRACE", str(trace))
    setup_trace.mark("leg-1", "offer.planned", 10.0)
    setup_trace.mark("leg-1", "client.posted", 9.0, load=3, role="user")
    monkeypatch.delenv("CALLBRIDGE_SETUP_TRACE")
    setup_trace.mark("leg-1", "ignored")
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert lines == [
        {"leg": "leg-1", "stage": "offer.planned", "t": 10.0},
        {"leg": "leg-1", "stage": "client.posted", "t": 9.0, "load": 3, "role": "user"},
    ]


def test_it_turns_each_legs_marks_into_stage_durations_by_load(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    stages = [name for start, _, _ in setup_profile.STAGES for name in (start,)]
    stages.append(setup_profile.STAGES[-1][1])
    lines = []
    for leg, load, step in (("a", 0, 0.010), ("b", 0, 0.020), ("c", 40, 0.030)):
        for index, stage in enumerate(stages):
            entry = {"leg": leg, "stage": stage, "t": 100 + index * step}
            if stage.startswith("client."):
                entry.update(load=load, role="user")
            lines.append(json.dumps(entry))
    lines.append(json.dumps({"leg": "untraced", "stage": "offer.planned", "t": 1}))
    lines.append('{"leg": "cut by a kill')
    trace.write_text("\n".join(lines) + "\n")

    profiles = setup_profile.profile(trace)
    assert list(profiles) == ["0", "40"]
    rows = {row["to"]: row for row in profiles["40"]}
    assert rows["worker.received"]["p50_ms"] == pytest.approx(30.0)
    assert rows["worker.received"]["n"] == 1
    total = next(row for row in profiles["0"] if row["stage"] == setup_profile.TOTAL[2])
    offers = stages.index("client.connected") - stages.index("client.posted")
    assert total["p50_ms"] == pytest.approx(offers * 15.0)  # the median of 10 and 20 ms steps
    assert "| channel layer to the media worker | 30.0 | 30.0 | 1 |" in setup_profile.markdown(
        profiles
    )


def test_it_tabulates_bursts_with_cpu_per_set_up_and_events_seen() -> None:
    burst = {
        "target": "cluster",
        "burst_calls": 200,
        "burst_connected": 200,
        "burst_s": 9.5,
        "setups_per_s": 21.1,
        "burst_offer_connected_p50_ms": 1200.0,
        "burst_offer_connected_p95_ms": 2400.4,
        "burst_ws_rtt_p99_ms": 35.2,
        "burst_feed_complete": 200,
        "burst_cpu_ms_per_setup": {"daphne": 90.0, "mediaworker": 30.4},
    }
    row = report.burst_table([burst]).splitlines()[-1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == [
        "cluster", "200", "200", "9.5", "21.1", "1200 / 2400", "35", "200",
        "daphne 90, mediaworker 30",
    ]  # fmt: skip
