"""Where a call set-up's time goes: the stages calls.setup_trace marked, per leg, by load.

Every process of a traced run (daphne, media worker, the generator) appended
`{"leg", "stage", "t"}` lines to one file; the generator's lines also carry the load (calls
running when the call was asked for) and the leg's role. Here each leg's marks become the
durations between consecutive stages, summarized as p50/p95 per load.

    python -m bench.setup_profile /path/to/trace.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

# (from, to, what happens between): the path of one leg's offer, in order.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("client.requested", "client.posted", "REST before the offer (session + call, or answer)"),
    ("client.posted", "http.arrived", "HTTP request to the ASGI app (loopback, daphne)"),
    ("http.arrived", "view.entered", "Django middleware, thread hop, DRF auth, throttle"),
    ("view.entered", "offer.planned", "plan the offer (database reads)"),
    ("offer.planned", "worker.received", "channel layer to the media worker"),
    ("worker.received", "aiortc.parsed", "new peer connection, SDP checks"),
    ("aiortc.parsed", "aiortc.remote_set", "aiortc setRemoteDescription"),
    ("aiortc.remote_set", "worker.answered", "aiortc answer + ICE gathering"),
    ("worker.answered", "view.answer_back", "channel layer back to the view"),
    ("view.answer_back", "offer.committed", "commit the offer (database writes, events)"),
    ("offer.committed", "client.answered", "HTTP response to the client"),
    ("client.answered", "ice.completed", "client applies the answer; ICE checks"),
    ("ice.completed", "media.connected", "DTLS handshake (server side)"),
    ("media.connected", "client.connected", "client sees DTLS done"),
)
TOTAL = ("client.posted", "client.connected", "offer → connected (what the bench reports)")
RECORDED = ("media.connected", "records.connected", "(after) media state in the database")


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    """--setup-probes and --probe-interval, the same for bench.media and bench.loadgen
    (which bench.media passes them on to)."""
    parser.add_argument(
        "--setup-probes",
        type=int,
        default=0,
        help="after each step, this many single call set-ups (measured, then hung up)",
    )
    parser.add_argument("--probe-interval", type=float, default=0.5, help="s between probes")


def read_legs(path: Path) -> dict[str, dict[str, Any]]:
    """leg id -> {stage: first unix time, "load": n, "role": r}."""
    legs: dict[str, dict[str, Any]] = defaultdict(dict)
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a killed process
        leg = legs[entry["leg"]]
        leg.setdefault(entry["stage"], entry["t"])
        for key in ("load", "role"):
            if key in entry:
                leg[key] = entry[key]
    return legs


def _summary(values: list[float]) -> dict[str, float | int] | None:
    if not values:
        return None
    return {
        "p50_ms": round(float(np.percentile(values, 50)) * 1000, 1),
        "p95_ms": round(float(np.percentile(values, 95)) * 1000, 1),
        "n": len(values),
    }


def profile(path: Path) -> dict[str, list[dict[str, Any]]]:
    """For each load (as a string key): one row per stage, with p50/p95 in ms."""
    by_load: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for leg in read_legs(path).values():
        if "load" in leg and "client.connected" in leg:  # a whole, traced set-up
            by_load[int(leg["load"])].append(leg)
    result: dict[str, list[dict[str, Any]]] = {}
    for load in sorted(by_load):
        legs = by_load[load]
        rows = []
        for start, end, what in (*STAGES, TOTAL, RECORDED):
            values = [leg[end] - leg[start] for leg in legs if start in leg and end in leg]
            summary = _summary(values)
            if summary is not None:
                rows.append({"from": start, "to": end, "stage": what, **summary})
        result[str(load)] = rows
    return result


def markdown(profiles: dict[str, list[dict[str, Any]]]) -> str:
    """One table per load."""
    out = []
    for load, rows in profiles.items():
        out.append(f"\nCalls running: {load}\n")
        out.append("| stage | p50 ms | p95 ms | legs |")
        out.append("|---|---:|---:|---:|")
        for row in rows:
            out.append(f"| {row['stage']} | {row['p50_ms']} | {row['p95_ms']} | {row['n']} |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="per-stage profile of traced call set-ups")
    parser.add_argument("trace", type=Path)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    profiles = profile(args.trace)
    print(json.dumps(profiles, indent=1) if args.json else markdown(profiles))


if __name__ == "__main__":
    main()
