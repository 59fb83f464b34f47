"""Turn bench results into a summary, a markdown report and a chart."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import setup_profile

Step = dict[str, Any]


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout  # noqa: S607
    return {
        "nproc": int(nproc.strip() or os.cpu_count() or 0),
        "cpu": model,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_before": os.getloadavg()[0],
    }


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("aiortc", "aioice", "av", "uvloop", "pylibsrtp", "daphne", "Django"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _ramp(steps: list[Step]) -> list[Step]:
    return [s for s in steps if not s.get("recording")]


def limit_of(step: Step) -> str:
    """Who limited a failing step. A saturated server core (ours + other processes') means
    the server, even if the generator was also late; otherwise a late generator."""
    others = step.get("others_on_server_core_pct") or 0
    saturated = step["server_cpu_pct"] + others >= 90
    return "generator" if step["generator_limited"] and not saturated else "server"


def summarize_series(steps: list[Step]) -> dict[str, Any]:
    ramp = _ramp(steps)
    held_loss = [s for s in ramp if s["loss_ok"]]
    held_both = [s for s in held_loss if s["latency_ok"]]
    best = max(held_loss, key=lambda s: s["calls"]) if held_loss else None
    last = ramp[-1] if ramp else None
    if last is None:
        limited_by = "no data"
    elif last.get("ramp_ok", last["loss_ok"] and (last["latency_ok"] or last["growth_ok"])):
        limited_by = "neither (ran out of steps)"
    else:
        limited_by = limit_of(last)
        others = last.get("others_on_server_core_pct") or 0
        if limited_by == "server" and others > 20:
            limited_by += f" (sharing its core: other processes used {others:.0f}% of it)"
    summary = {
        "max_calls_loss": best["calls"] if best else 0,
        "max_calls_loss_and_latency": max((s["calls"] for s in held_both), default=0),
        "cpu_per_call_pct": best["cpu_per_call_pct"] if best else None,
        "calls_per_core": best["calls_per_core"] if best else None,
        "added_p95_ms": best["added_p95_ms"] if best else None,
        "offer_connected_p95_ms": best["offer_connected_p95_ms"] if best else None,
        "limited_by": limited_by,
    }
    if last is not None and last.get("server_cpu_by_process"):
        # A multi-process server (cluster): its busiest process at the last step is the
        # one that saturates first (they share one core).
        by_process = last["server_cpu_by_process"]
        summary["cpu_by_process"] = {"calls": last["calls"], "pct": by_process}
        summary["busiest_process"] = max(by_process, key=by_process.get)
    return summary


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 1) if a and b else None


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        target: summarize_series(steps) for target, steps in results["series"].items()
    }
    if "callbridge" in summary and "stock" in summary:
        ours, stock = summary["callbridge"], summary["stock"]
        summary["ratio"] = {
            "calls_per_core": _ratio(ours["calls_per_core"], stock["calls_per_core"]),
            "max_calls_loss": _ratio(ours["max_calls_loss"], stock["max_calls_loss"]),
        }
    if "callbridge" in summary and "cluster" in summary:
        summary["cluster_ratio"] = cluster_ratio(results["series"])
    calibration = results.get("calibration") or []
    if calibration:
        busiest = max(calibration, key=lambda s: s["calls"])
        summary["generator"] = {
            "calls": busiest["calls"],
            "cpu_per_call_pct": busiest["cpu_per_call_pct"],
            "calls_per_core": busiest["calls_per_core"],
            "loss_ok": busiest["loss_ok"],
        }
    off = [s for s in results.get("recording", []) if not s["recording"]]
    on = [s for s in results.get("recording", []) if s["recording"]]
    if off and on and off[0]["cpu_per_call_pct"] and on[0]["cpu_per_call_pct"]:
        summary["recording"] = {
            "calls": off[0]["calls"],
            "cpu_per_call_off_pct": off[0]["cpu_per_call_pct"],
            "cpu_per_call_on_pct": on[0]["cpu_per_call_pct"],
            "extra_pct": round(
                (on[0]["cpu_per_call_pct"] / off[0]["cpu_per_call_pct"] - 1) * 100, 1
            ),
        }
        rec = on[0]
        if rec.get("stop_cpu_s") is not None:
            # The stop's own work (rendering the files): its CPU minus what the calls kept
            # costing meanwhile, spread over the recorded call-seconds.
            meanwhile = rec["cpu_per_call_pct"] / 100 * rec["calls"] * rec["stop_s"]
            stop_work = max(rec["stop_cpu_s"] - meanwhile, 0.0)
            per_call = stop_work / (rec["recorded_s"] * rec["calls"]) * 100
            total = rec["cpu_per_call_pct"] + per_call
            summary["recording"].update(
                stop_cpu_s=round(stop_work, 2),
                recorded_s=rec["recorded_s"],
                extra_with_stop_pct=round((total / off[0]["cpu_per_call_pct"] - 1) * 100, 1),
            )
    supervision = summarize_supervision(results.get("supervision") or [])
    if supervision:
        summary["supervision"] = supervision
    return summary


def cluster_ratio(series: dict[str, list[Step]]) -> dict[str, Any]:
    """The scale-out target against the embedded one measured in the same run (the same
    core): calls per core and calls held, and set-up time where both ran the same N."""
    cluster, embedded = summarize_series(series["cluster"]), summarize_series(series["callbridge"])
    result: dict[str, Any] = {
        "calls_per_core": _ratio(cluster["calls_per_core"], embedded["calls_per_core"]),
        "max_calls_loss": _ratio(cluster["max_calls_loss"], embedded["max_calls_loss"]),
    }
    held = {s["calls"]: s for s in _ramp(series["cluster"]) if s["loss_ok"]}
    both = [s for s in _ramp(series["callbridge"]) if s["loss_ok"] and s["calls"] in held]
    if both:  # the largest N both held: offer → connected p95 side by side
        embedded_step = max(both, key=lambda s: s["calls"])
        result["setup_at"] = embedded_step["calls"]
        result["offer_connected_p95_ms"] = {
            "cluster": held[embedded_step["calls"]]["offer_connected_p95_ms"],
            "callbridge": embedded_step["offer_connected_p95_ms"],
        }
    return result


MONITORED_TARGET = 0.9  # issue 16: calls per core with 10 % monitored ≥ 90 % of none


def summarize_supervision(steps: list[Step]) -> dict[str, Any] | None:
    """Calls per core with every tenth call monitored against none (the same calls, the
    same server, one after the other), and the server CPU one barge adds (its two mixed
    ears: decode + mix + encode), from the step where every supervisor barges."""
    off = next((s for s in steps if not s.get("supervision")), None)
    on = next((s for s in steps if s.get("supervision") == "monitor"), None)
    whisper = next((s for s in steps if s.get("supervision") == "whisper"), None)
    barge = next((s for s in steps if s.get("supervision") == "barge"), None)
    if off is None or on is None or not off["calls_per_core"] or not on["calls_per_core"]:
        return None
    share = on["calls_per_core"] / off["calls_per_core"]
    result: dict[str, Any] = {
        "calls": off["calls"],
        "supervised": on["supervised_calls"],
        "calls_per_core_off": off["calls_per_core"],
        "calls_per_core_monitored": on["calls_per_core"],
        "share_pct": round(share * 100, 1),
        "target_met": share >= MONITORED_TARGET,
        "tracks_received": on["supervisor_tracks_received"],
    }
    for mode, step in (("whisper", whisper), ("barge", barge)):
        if step is not None:
            extra = (step["server_cpu_pct"] - on["server_cpu_pct"]) / step["supervised_calls"]
            result[f"{mode}_extra_cpu_pct"] = round(extra, 2)
            result[f"{mode}_tracks_received"] = step["supervisor_tracks_received"]
    return result


def _fmt(value: Any, pattern: str = "{:.1f}") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value == float("inf"):
        return "inf"
    return pattern.format(value)


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def progress_line(step: Step) -> str:
    by_process = step.get("server_cpu_by_process")
    return (
        f"  {step['target']:<18} N={step['calls']:<4}{' rec' if step['recording'] else ''}"
        f"{' ' + step['supervision'] if step.get('supervision') else ''}"
        f" cpu/call {_fmt(step['cpu_per_call_pct'], '{:.2f}')}%"
        f" loss {_loss(step['loss_user_to_operator'])}/{_loss(step['loss_operator_to_user'])}"
        f" added p95 {_fmt(step['added_p95_ms'])} ms"
        f" ws p99 {_fmt(step['ws_rtt_p99_ms'])} ms lag p99 {_fmt(step['loop_lag_p99_ms'])} ms"
        f" gen {_fmt(step['generator_cpu_pct'])}%"
        f" others on server core {_fmt(step.get('others_on_server_core_pct'))}%"
        + (f" [{_by_process(step['server_cpu_by_process'])}]" if by_process else "")
    )


def _by_process(cpu: dict[str, float]) -> str:
    """`mediaworker 61.0, daphne 20.5, …` (% of a core), busiest first."""
    return ", ".join(f"{name} {pct:.1f}" for name, pct in sorted(cpu.items(), key=lambda x: -x[1]))


def summary_text(summary: dict[str, Any]) -> str:
    lines = []
    for target, s in summary.items():
        if target in ("ratio", "recording", "generator", "supervision", "cluster_ratio"):
            continue
        lines.append(
            f"{target}: held {s['max_calls_loss']} calls at <0.5% loss"
            f" ({s['max_calls_loss_and_latency']} also within the latency bound),"
            f" {_fmt(s['cpu_per_call_pct'], '{:.2f}')}% CPU/call ="
            f" {_fmt(s['calls_per_core'])} calls/core; limited by {s['limited_by']}"
        )
        if "cpu_by_process" in s:
            at = s["cpu_by_process"]
            lines.append(
                f"  {target} CPU by process at {at['calls']} calls (% of a core):"
                f" {_by_process(at['pct'])}; busiest: {s['busiest_process']}"
            )
    if "ratio" in summary:
        r = summary["ratio"]
        lines.append(
            f"callbridge / stock: {_fmt(r['calls_per_core'])}x calls per core,"
            f" {_fmt(r['max_calls_loss'])}x calls held"
        )
    if "cluster_ratio" in summary:
        c = summary["cluster_ratio"]
        line = (
            f"cluster / callbridge (embedded): {_fmt(c['calls_per_core'])}x calls per core,"
            f" {_fmt(c['max_calls_loss'])}x calls held"
        )
        if "setup_at" in c:
            p95 = c["offer_connected_p95_ms"]
            line += (
                f"; offer→connected p95 at {c['setup_at']} calls:"
                f" {_fmt(p95['cluster'], '{:.0f}')} ms vs {_fmt(p95['callbridge'], '{:.0f}')} ms"
            )
        lines.append(line)
    if "generator" in summary:
        g = summary["generator"]
        lines.append(
            f"generator alone (direct pairs, no server): {_fmt(g['cpu_per_call_pct'], '{:.2f}')}%"
            f" CPU/call at {g['calls']} calls = {_fmt(g['calls_per_core'])} calls per core"
            " before the generator itself limits a run"
        )
    if "recording" in summary:
        r = summary["recording"]
        lines.append(
            f"recording at {r['calls']} calls: {r['cpu_per_call_off_pct']}% → "
            f"{r['cpu_per_call_on_pct']}% CPU/call during the call ({r['extra_pct']:+.1f}%)"
        )
        if "stop_cpu_s" in r:
            lines.append(
                f"  stopping them (rendering the files) took {r['stop_cpu_s']} CPU s more for"
                f" {r['calls']} x {r['recorded_s']} s recorded: {r['extra_with_stop_pct']:+.1f}%"
                " in all"
            )
    if "supervision" in summary:
        v = summary["supervision"]
        met = "met" if v["target_met"] else "NOT met"
        lines.append(
            f"{v['supervised']} of {v['calls']} calls monitored: {_fmt(v['calls_per_core_off'])}"
            f" → {_fmt(v['calls_per_core_monitored'])} calls/core ({v['share_pct']}% of"
            f" unmonitored; target ≥ {MONITORED_TARGET:.0%}: {met});"
            f" supervisors got {_fmt(v['tracks_received'], '{:.1%}')} of each party's packets"
            " on its own track"
        )
        for mode, mixed in (("whisper", "the operator's ear"), ("barge", "both parties' ears")):
            if f"{mode}_extra_cpu_pct" in v:
                lines.append(
                    f"  one {mode} adds {v[f'{mode}_extra_cpu_pct']:.2f}% of a core over"
                    f" monitoring ({mixed} mixed)"
                )
    return "\n".join(lines)


COLUMNS = [
    ("calls", "N", "{}"),
    ("server_cpu_pct", "server CPU %", "{:.1f}"),
    ("cpu_per_call_pct", "CPU/call %", "{:.2f}"),
    ("calls_per_core", "calls/core", "{:.0f}"),
    ("loss_user_to_operator", "loss u→o", None),
    ("loss_operator_to_user", "loss o→u", None),
    ("added_p50_ms", "added p50 ms", "{:.1f}"),
    ("added_p95_ms", "added p95 ms", "{:.1f}"),
    ("offer_connected_p50_ms", "offer→conn p50 ms", "{:.0f}"),
    ("offer_connected_p95_ms", "offer→conn p95 ms", "{:.0f}"),
    ("ws_rtt_p99_ms", "WS RTT p99 ms", "{:.1f}"),
    ("loop_lag_p99_ms", "loop lag p99 ms", "{:.1f}"),
    ("rss_mb", "RSS MB", "{:.0f}"),
    ("generator_cpu_pct", "gen CPU %", "{:.0f}"),
    ("udp_rcvbuf_drops", "UDP drops", "{}"),
    ("server_legs_not_connected", "legs not connected (server)", "{}"),
    ("generator_late_max_ms", "gen clock late max ms", "{:.0f}"),
    ("others_on_server_core_pct", "others on server core %", "{:.0f}"),
]


def table(steps: list[Step]) -> str:
    steps = [{key: None for key, _, _ in COLUMNS} | step for step in steps]  # older results
    # A multi-process server's steps (cluster) add each process's CPU after the server's.
    by_process = any(step.get("server_cpu_by_process") for step in steps)
    titles = [title for _, title, _ in COLUMNS]
    if by_process:
        titles.insert(2, "CPU by process %")
    head = "| " + " | ".join(titles) + " | held |"
    rule = "|" + "---|" * (len(titles) + 1)
    rows = [head, rule]
    for step in steps:
        cells = [
            _loss(step[key]) if pattern is None else _fmt(step[key], pattern)
            for key, _, pattern in COLUMNS
        ]
        if by_process:
            cells.insert(2, _by_process(step.get("server_cpu_by_process") or {}) or "-")
        if step.get("supervision"):
            verdict = f"{step['supervised_calls']} {step['supervision']}"
        elif step["recording"]:
            verdict = "recording"
        elif step["loss_ok"] and step["latency_ok"]:
            verdict = "yes"
        elif step["loss_ok"]:
            verdict = "loss only"
        else:
            verdict = f"no ({limit_of(step)})"
        rows.append("| " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(rows)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cpu_axis, loss_axis, latency_axis) = plt.subplots(1, 3, figsize=(15, 4.5))
    for target, steps in results["series"].items():
        ramp = _ramp(steps)
        calls = [s["calls"] for s in ramp]
        cpu_axis.plot(calls, [s["server_cpu_pct"] for s in ramp], marker="o", label=target)
        loss_axis.plot(
            calls,
            [
                max(s["loss_user_to_operator"] or 0, s["loss_operator_to_user"] or 0) * 100
                for s in ramp
            ],
            marker="o",
            label=target,
        )
        latency_axis.plot(calls, [s["added_p95_ms"] for s in ramp], marker="o", label=target)
    calibration = results.get("calibration") or []
    if calibration:
        cpu_axis.plot(
            [s["calls"] for s in calibration],
            [s["generator_cpu_pct"] for s in calibration],
            marker=".",
            linestyle="--",
            color="grey",
            label="generator alone",
        )
    cpu_axis.set(title="server CPU (% of one core)", xlabel="bridged calls", ylabel="%")
    loss_axis.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    loss_axis.set(title="packet loss, worse direction", xlabel="bridged calls", ylabel="%")
    latency_axis.axhline(results["latency_bound_ms"], color="grey", linestyle="--", linewidth=1)
    latency_axis.set(title="added one-way latency p95", xlabel="bridged calls", ylabel="ms")
    steps = sorted({s["calls"] for series in results["series"].values() for s in series})
    steps = sorted({*steps, *(s["calls"] for s in calibration)})
    for axis in (cpu_axis, loss_axis, latency_axis):
        axis.set_xscale("log")
        axis.set_xticks(steps, [str(n) for n in steps])
        axis.minorticks_off()
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _shared_machine_warning(results: dict[str, Any]) -> list[str]:
    """A loud note when other processes used the pinned cores during the windows."""
    steps = [s for series in results["series"].values() for s in series]
    steps += results.get("recording") or []
    steps += results.get("supervision") or []
    server = max((s.get("others_on_server_core_pct") or 0 for s in steps), default=0)
    generator = max((s.get("others_on_generator_core_pct") or 0 for s in steps), default=0)
    if max(server, generator) < 10:
        return []
    return [
        f"**Shared machine: other processes used up to {server:.0f}% of the server's core and"
        f" {generator:.0f}% of the generator's during the measurement windows.** The server"
        " could not use a whole core, so capacities here are low and noisy: rerun on a quiet"
        " machine before drawing conclusions (ratios measured in the same run hold better).",
        "",
    ]


ANALYSIS_START, ANALYSIS_END = "<!-- analysis: kept by reruns -->", "<!-- /analysis -->"


def kept_analysis(previous_report: str) -> str:
    """The hand-written analysis of a report being rewritten (between the markers)."""
    start = previous_report.find(ANALYSIS_START)
    end = previous_report.find(ANALYSIS_END)
    if start < 0 or end < start:
        return ""
    return previous_report[start : end + len(ANALYSIS_END)]


def markdown(results: dict[str, Any], chart_name: str, analysis: str = "") -> str:
    when = datetime.datetime.fromtimestamp(results["started"], datetime.UTC)
    m, v, summary = results["machine"], results["versions"], results["summary"]
    parts = [
        "# Media performance",
        "",
        f"Measured {when:%Y-%m-%d %H:%M} UTC with `bench/` (see *How it measures* below).",
        "",
        *([f"*{results['note']}*", ""] if results.get("note") else []),
        "```sh",
        f".venv/bin/{results['command']}",
        "```",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, Linux {m['kernel']};"
        f" load average {m['load_before']:.2f} at the start. Server pinned to core 0, load"
        " generator to core 1.",
        "",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in v.items()) + ".",
        "",
        *_shared_machine_warning(results),
        "## Summary",
        "",
        "```",
        summary_text(summary),
        "```",
        "",
        f"![server CPU, loss and added latency per step]({chart_name})",
        "",
        *([analysis, ""] if analysis else []),
    ]
    for target, steps in results["series"].items():
        parts += [f"## {target}", "", table(steps), ""]
    if results.get("calibration"):
        parts += [
            "## generator alone (calibration)",
            "",
            "The load generator with each call's two legs connected to each other directly:",
            "every packet of a call is sent and received by the generator, as in a bridged",
            'call, so its CPU per call here is its cost per bridged call ("server CPU" is the',
            "generator process).",
            "",
            table(results["calibration"]),
            "",
        ]
    if results.get("recording"):
        parts += ["## callbridge, recording off vs on", "", table(results["recording"]), ""]
    if results.get("supervision"):
        parts += [
            "## callbridge, 10 % of calls monitored vs none, then whispering, barging",
            "",
            table(results["supervision"]),
            "",
        ]
    if results.get("burst"):
        parts += [
            "## Set-up bursts (N calls asked for at once)",
            "",
            burst_table(results["burst"]),
            "",
        ]
    for target, profile in (results.get("setup_profile") or {}).items():
        parts += [f"## Set-up profile: {target}", "", setup_profile.markdown(profile), ""]
    parts += [HOW_IT_MEASURES.format(bound=results["latency_bound_ms"])]
    return "\n".join(parts)


def burst_table(steps: list[Step]) -> str:
    """One row per burst: time until every leg connected, set-ups a second, offer →
    connected, the WebSocket round trip meanwhile, server CPU per set-up."""
    rows = [
        "| target | calls | connected | all connected (s) | set-ups/s | offer→connected p50 / p95"
        " ms | WS RTT p99 ms | events complete | server CPU ms per set-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for step in steps:
        cpu = step.get("burst_cpu_ms_per_setup") or {}
        rows.append(
            f"| {step['target']} | {step['burst_calls']} | {step['burst_connected']}"
            f" | {step['burst_s']} | {step['setups_per_s']}"
            f" | {_fmt(step['burst_offer_connected_p50_ms'], '{:.0f}')}"
            f" / {_fmt(step['burst_offer_connected_p95_ms'], '{:.0f}')}"
            f" | {_fmt(step['burst_ws_rtt_p99_ms'], '{:.0f}')}"
            f" | {step.get('burst_feed_complete', '?')}"
            f"{' (+' + str(step['burst_feed_lag_s']) + ' s)' if 'burst_feed_lag_s' in step else ''}"
            f" | {', '.join(f'{name} {ms:.0f}' for name, ms in cpu.items())} |"
        )
    return "\n".join(rows)


HOW_IT_MEASURES = """## How it measures

- **Calls**: each bridged call has two client legs (end user, operator) set up through the
  server's public signaling (callbridge: REST `POST /api/sessions`, `POST /api/calls`,
  `…/answer`, `…/webrtc/offer` for each leg; stock relay: its WebSocket). Steps add calls
  to the ones already up, 10 set up in parallel; offer→connected is per leg, from posting
  the offer to the client's `connectionState == "connected"`, for the legs added in that
  step.
- **Load legs are cheap** (`bench/fastleg.py`): aiortc negotiates ICE/DTLS/SRTP, then the
  leg sends Opus payloads encoded once (`bench/audio.py`) behind RTP headers it builds,
  SRTP-protected, on the nominated ICE pair's socket, and counts what it receives from the
  clear RTP header; only the first 4 calls' legs (and a direct pair) decode.
- **Loss per direction**: between steps every leg sends Opus silence (a 3-byte payload);
  during a step's window each sends a tone (≥ 20-byte payloads). Loss = 1 - tone packets
  received by the far legs / tone packets sent, summed over all calls after a drain: no
  window-edge error, and a server that pads with silence when it falls behind counts as
  losing.
- **Added latency**: the tone carries one loud 20 ms pulse a second; probe legs decode and
  time the pulse onset against its send time. Added = bridged one-way delay minus the
  median delay of a direct peer-to-peer pair of the same legs in the same generator
  process (so codec and generator delays cancel). Bound: p95 ≤ {bound} ms.
- **Server CPU** is user+sys of the server process over the window (`/proc/<pid>/stat`,
  all threads, plus children it reaped), not wall time; calls per core = 100 / (CPU % per
  call). RSS from `/proc/<pid>/status` at the end of the window.
- **Cluster** (`--targets cluster`, `bench/cluster.py`): the scale-out set-up of
  docs/deploy.md started by the bench — Redis (no persistence), PostgreSQL (a fresh
  cluster, fsync off), one daphne (`manage.py serve`, no embedded media worker) and one
  `manage.py mediaworker` — all four pinned to the server's core, so it has the CPU the
  embedded `callbridge` target has and the two compare (`cluster / callbridge`, measured
  in the same run). Server CPU is the sum of the four processes' (each with its live
  descendants: PostgreSQL's backends), each shown in "CPU by process"; the busiest at the
  last step is the one that saturates first. Loop lag and RSS are the media worker's.
- **WS round trip**: a separate signaling client sends a message every 100 ms during the
  window and waits for the reply (callbridge: `register` → `registered` on `/ws/signal`
  with an idle end-user session; stock relay: ping → pong).
- **Loop lag**: servers started by the bench set `CALLBRIDGE_LOOP_LAG_FILE`;
  `calls/loop_lag.py` then samples how late a 50 ms sleep wakes up (20 samples/s) and the
  bench takes the p99 over the window.
- **Held**: loss < 0.5% in both directions; "yes" also needs added latency p95 within the
  bound. A ramp stops at the first step that loses, or whose latency exceeds the bound —
  for a path that is over the bound even when idle (a decoding jitter buffer: the stock
  relay, callbridge's decode path) it stops when the added latency's median grows more than
  the bound above its first step's, so its capacity is still measured. **Limited by
  generator** when, in the failing step, the generator used > 85% of its core or its 20 ms
  send clock ran > 20 ms late (p99) while the server's core was not saturated (server CPU +
  other processes' < 90%); otherwise the server.
- **Legs not connected (server)**: after each window, the `mediaState` of every leg of
  the active calls as the server reports it (`GET /api/calls`): legs it considers
  disconnected (no audio for 3 s), failed or closed. **Gen clock late max**: the worst
  lateness of the generator's 20 ms send clock since the step began, set-up included — over
  ~3 s, the server sees connected legs go quiet.
- **UDP drops**: the kernel's `RcvbufErrors` counter (`/proc/net/snmp`) over the window
  and drain — datagrams dropped because some socket's receive buffer was full (every
  process in the network namespace counts, so it is a hint, not an attribution).
- **Others on server core**: how much of the server's core other processes used during the
  window (`/proc/stat` busy time minus the server's own CPU). Anything but ~0 means the
  machine was shared and the server could not use a whole core: rerun on a quiet machine.
- **Recording on vs off**: a fresh server gets `--record-at` calls, measured, then every call
  recorded (`POST /api/calls/{{id}}/record`; the bench sets `CALLBRIDGE_RECORDING_CONSENT=none`)
  and measured again; then every recording is stopped (`…/record/stop`, answered once the
  file is written): the server CPU that took — its reaped children included, so a
  renderer process counts — minus what the calls cost meanwhile, is spread over the
  recorded call-seconds ("in all").
- **Supervised**: a fresh server gets `--supervise-at` calls, measured; then a supervisor
  (a staff login in the supervisors' group) monitors every tenth call (at least one):
  `POST /api/calls/{{id}}/supervise` and an offer of two audio m-lines, the second
  receive-only, as the dashboard sends; its leg sends a tone like a microphone. Measured
  again: calls per core against the unmonitored step (target ≥ 90 %), and the share of
  each party's tone packets that reached the supervisor on that party's own track (by
  SSRC). Then every supervisor whispers, then barges, each measured once more: the server
  CPU that added over monitoring, per supervised call, is a whisper's cost (the operator's
  ear decoded, mixed, re-encoded) and a barge's (both parties' ears).
"""
