"""The media benchmark: one command, every series, a report.

    .venv/bin/python -m bench.media --out docs/PERFORMANCE.md      # full ramp (~10 min)
    .venv/bin/python -m bench.media --smoke                          # seconds, tiny N

For each target (callbridge, the stock aiortc relay, optionally callbridge's decode path
and the scale-out `cluster`: bench.cluster) this starts a real server pinned to core 0
(`taskset`), then a load generator process (bench.loadgen) pinned to core 1 that ramps
bridged calls and measures each step. The results go to a JSON file, a markdown report and
a PNG chart (bench.report).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import cluster, report, setup_profile
from callbridge.local_server import ROOT, free_port, listening, manage, outside_environment

DEFAULT_STEPS = "2,5,10,20,40,80,120,160,200,250,300,400"
SERVER_CORE, GENERATOR_CORE = "0", "1"


@dataclass
class RunningServer:
    target: str
    url: str
    pid: int
    lag_file: Path
    token: str = ""
    supervisor_session: str = ""  # a logged-in supervisor's session key (callbridge)
    # Every process of a multi-process server by name (cluster): the generator reports the
    # CPU of each. Empty: `pid` is the whole server.
    pids: dict[str, int] = field(default_factory=dict)


def raise_open_files_limit() -> None:
    """Every leg is a UDP socket on each side: hundreds of calls outgrow a 1024 soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def pinned(core: str) -> list[str]:
    """`taskset -c core` when we can pin (bench runs on 2+ cores), else nothing."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > int(core):
        return ["taskset", "-c", core]
    return []


def callbridge_env(data_dir: Path, lag_file: Path, media_path: str | None) -> dict[str, str]:
    env = outside_environment()
    env.update(
        CALLBRIDGE_DATA_DIR=str(data_dir),
        CALLBRIDGE_ICE_HOST_ADDRESSES="127.0.0.1",
        CALLBRIDGE_LOOP_LAG_FILE=str(lag_file),
        # The generator is one client making thousands of requests.
        CALLBRIDGE_RATE_LIMIT_PRINCIPAL="1000000/min",
        CALLBRIDGE_RATE_LIMIT_IP="1000000/min",
        # One API token operates every call's leg (resource caps, docs/configuration.md).
        CALLBRIDGE_LIMIT_OPEN_CALLS_PER_OPERATOR="100000",
        CALLBRIDGE_LIMIT_MEDIA_LEGS_PER_OPERATOR="100000",
        CALLBRIDGE_RECORDING_CONSENT="none",  # the recording step records without consents
        CALLBRIDGE_MEDIA_GRACE_S="600",
        LOG_LEVEL="WARNING",
    )
    if media_path:
        env["CALLBRIDGE_MEDIA_PATH"] = media_path
    # --setup-trace: every process marks stages; HTTP threads: tried by hand, e.g.
    # `CALLBRIDGE_HTTP_THREADS=16 python -m bench.media --burst 200 …`.
    for passed_on in ("CALLBRIDGE_SETUP_TRACE", "CALLBRIDGE_HTTP_THREADS"):
        if os.environ.get(passed_on):
            env[passed_on] = os.environ[passed_on]
    return env


# Migrate, make the generator's API token and a staff user in the supervisors' group,
# logged in: the token and the session key are printed, one a line (the supervision step's
# REST calls carry the session as the dashboard's browser would). One process, not three:
# each Django start is seconds of a loaded machine.
MAKE_USERS = """
import io
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
token = io.StringIO()
call_command("createapitoken", "bench", quiet=True, stdout=token)
from calls.operators import operators_group
from calls.supervision import supervisors_group
user = get_user_model().objects.create_user("bench-supervisor", is_staff=True)
user.groups.add(operators_group(), supervisors_group())
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.set_expiry(7 * 24 * 3600)
session.create()
print(token.getvalue().strip())
print(session.session_key)
"""
PREPARE_DATABASE = (
    "from django.core.management import call_command\n"
    'call_command("migrate", interactive=False, verbosity=0)\n' + MAKE_USERS
)


@functools.cache
def migrated_database() -> tuple[Path, str, str]:
    """A migrated database holding the generator's API token and a supervisor's session
    (returned with it), made once a run: each callbridge server starts from a copy of it
    (migrate + createapitoken: ~4 s a server)."""
    folder = Path(tempfile.mkdtemp(prefix="callbridge-bench-db-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    env = outside_environment()
    env["CALLBRIDGE_DATA_DIR"] = str(folder)
    token, supervisor_session = manage(env, "shell", "-c", PREPARE_DATABASE).split()[-2:]
    return folder / "db.sqlite3", token, supervisor_session


def bench_users(env: dict[str, str]) -> tuple[str, str]:
    """The generator's API token and a supervisor's session key, made in `env`'s (already
    migrated) database."""
    token, supervisor_session = manage(env, "shell", "-c", MAKE_USERS).split()[-2:]
    return token, supervisor_session


@contextmanager
def serve_cluster(data_dir: Path, lag_file: Path) -> Iterator[RunningServer]:
    """The scale-out target on core 0 (bench.cluster), with its users made once it runs.
    `pid` is the media worker's (the RSS that grows with calls); `pids` names them all."""
    env = callbridge_env(data_dir, lag_file, None)
    (data_dir / "static").mkdir()  # STATIC_ROOT: WhiteNoise warns without it
    with cluster.running_cluster(data_dir, env, pinned(SERVER_CORE)) as running:
        token, supervisor = bench_users(running.env)
        worker = running.pids["mediaworker"]
        yield RunningServer(
            "cluster", running.url, worker, lag_file, token, supervisor, running.pids
        )


@contextmanager
def serve(target: str, work: Path) -> Iterator[RunningServer]:
    """Start the server for `target` on core 0 with a fresh data dir; stop it after."""
    data_dir = work / target
    data_dir.mkdir(parents=True)
    lag_file = data_dir / "loop-lag.txt"
    if target == "cluster":
        with serve_cluster(data_dir, lag_file) as server:
            yield server
        return
    log = data_dir / "server.log"
    port = free_port()
    if target == "stock":
        env = dict(os.environ, CALLBRIDGE_LOOP_LAG_FILE=str(lag_file))
        command = [sys.executable, "-m", "bench.stock_relay", "--port", str(port)]
        url, token, supervisor = f"ws://127.0.0.1:{port}", "", ""
    else:
        media_path = "decode" if target == "callbridge-decode" else None
        env = callbridge_env(data_dir, lag_file, media_path)
        (data_dir / "static").mkdir()  # STATIC_ROOT: WhiteNoise warns without it
        database, token, supervisor = migrated_database()
        shutil.copy2(database, data_dir / "db.sqlite3")
        # The same SECRET_KEY (generated into the data dir): the supervisor's session holds.
        shutil.copy2(database.parent / "secret_key", data_dir / "secret_key")
        command = [sys.executable, "manage.py", "serve", "--port", str(port)]
        url = f"http://127.0.0.1:{port}"
    pinned_command = [*pinned(SERVER_CORE), *command]
    with listening(pinned_command, port, log, env, within=60, stop_within=20) as process:
        yield RunningServer(target, url, process.pid, lag_file, token, supervisor)


def run_generator(
    server: RunningServer, args: argparse.Namespace, steps: str, results: list, **extra: str
) -> None:
    """Run bench.loadgen against `server` on core 1; append its per-step results."""
    command = [
        *pinned(GENERATOR_CORE),
        sys.executable,
        "-m",
        "bench.loadgen",
        f"--target={server.target}",
        f"--url={server.url}",
        f"--token={server.token}",
        f"--server-pid={server.pid}",
        f"--lag-file={server.lag_file}",
        f"--steps={steps}",
        f"--window={args.window}",
        f"--settle={args.settle}",
        f"--drain={args.drain}",
        f"--parallel={args.parallel}",
        f"--latency-bound={args.latency_bound}",
        f"--server-core={SERVER_CORE}",
        f"--generator-core={GENERATOR_CORE}",
    ]
    command += [f"--setup-probes={args.setup_probes}", f"--probe-interval={args.probe_interval}"]
    if server.pids:
        pids = ",".join(f"{name}={pid}" for name, pid in server.pids.items())
        command.append(f"--server-pids={pids}")
    command += [f"--{key.replace('_', '-')}={value}" for key, value in extra.items()]
    if args.keep_going:
        command.append("--keep-going")
    env = {**os.environ, "BENCH_SUPERVISOR_SESSION": server.supervisor_session}  # not on argv
    with subprocess.Popen(  # noqa: S603
        command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env
    ) as generator:
        try:
            for line in generator.stdout or ():
                if line.startswith("{"):
                    step = json.loads(line)
                    results.append(step)
                    print(report.progress_line(step), flush=True)
        finally:
            if generator.poll() is None and sys.exc_info()[0] is not None:
                generator.terminate()  # we are being stopped: stop it too
    if generator.returncode:
        raise RuntimeError(f"load generator for {server.target} exited {generator.returncode}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="callbridge media benchmark")
    parser.add_argument("--out", type=Path, default=None, help="markdown report (and PNG beside)")
    parser.add_argument("--json", type=Path, default=None, help="raw results (default: beside)")
    parser.add_argument(
        "--targets",
        default="callbridge,stock",
        help="comma-separated: callbridge, stock, callbridge-decode, cluster (scale-out)",
    )
    parser.add_argument("--steps", default=DEFAULT_STEPS, help="calls per step")
    parser.add_argument("--stock-steps", default=None, help="steps for the stock relay")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per step")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument(
        "--drain", type=float, default=1.5, help="seconds after a window for sound in flight"
    )
    parser.add_argument("--parallel", type=int, default=10, help="calls set up at once")
    parser.add_argument("--latency-bound", type=float, default=20.0, help="ms added, p95")
    parser.add_argument("--record-at", type=int, default=5, help="N for recording on vs off")
    parser.add_argument(
        "--supervise-at",
        type=int,
        default=40,
        help="N for 10%% of calls monitored vs none, then barging (0 to skip)",
    )
    parser.add_argument(
        "--calibrate-steps",
        default="50,100,200,300",
        help="calls per step of the generator-alone run ('' to skip)",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="run every step even past a failing one (exploring on a noisy machine)",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="keep server logs and data here"
    )
    setup_profile.add_probe_arguments(parser)
    parser.add_argument(
        "--burst",
        default="",
        help="comma-separated N: per target, a fresh server asked for N calls at once",
    )
    parser.add_argument(
        "--setup-trace",
        action="store_true",
        help="trace each set-up's stages (calls/setup_trace.py) and report the profile",
    )
    parser.add_argument("--note", default="", help="a line for the report (conditions, purpose)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, tiny N (CI)")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="only re-render --out from saved results"
    )
    args = parser.parse_args(argv)
    raise_open_files_limit()  # inherited by the servers and generators we start
    # `kill` (SIGTERM) unwinds like Ctrl-C, so the servers and generator started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        saved["note"] = args.note or saved.get("note", "")
        write_report(saved, args.out, None)
        return
    if args.smoke:
        args.steps, args.stock_steps, args.calibrate_steps = "1,2", "1", "2"
        # Every step kind once, as briefly as still measures something: a window of 1.2 s
        # holds a pulse (one a second) per leg, 0.5 s of drain lets its echo arrive on a
        # loopback bridge (the loop-lag file may miss its last flush: no number is judged).
        args.window, args.settle, args.drain, args.record_at = 1.2, 0.3, 0.5, 1
        args.supervise_at = 2  # one call supervised: the step's path, not its numbers
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    command = "python -m bench.media " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.time()
    results: dict = {
        "command": command.strip(),
        "started": started,
        "machine": report.machine(),
        "versions": report.versions(),
        "latency_bound_ms": args.latency_bound,
        "note": args.note,
        "series": {},
        "recording": [],
        "supervision": [],
        "calibration": [],
        "burst": [],
        "setup_profile": {},
    }
    json_path = args.json or (args.out.with_suffix(".json") if args.out else None)
    try:
        run_all(args, targets, results)
    finally:  # stopped or failed half-way: keep what was measured (--from-json renders it)
        if json_path:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(results, indent=1))
    write_report(results, args.out, json_path)


def run_all(args: argparse.Namespace, targets: list[str], results: dict) -> None:
    """Every series, filling `results` step by step."""
    with contextlib.ExitStack() as stack:
        if args.work_dir:  # kept: server logs, databases, loop-lag samples
            args.work_dir.mkdir(parents=True, exist_ok=True)
            tmp = str(tempfile.mkdtemp(prefix="run-", dir=args.work_dir))
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="callbridge-bench-"))
        for target in targets:
            trace = Path(tmp) / f"setup-trace-{target}.jsonl"
            if args.setup_trace:
                os.environ["CALLBRIDGE_SETUP_TRACE"] = str(trace)  # the servers' and ours
            for burst in [int(n) for n in args.burst.split(",") if n.strip()]:
                print(f"== {target}: a burst of {burst} calls at once", flush=True)
                with serve(target, Path(tmp) / f"burst-{burst}") as server:
                    run_generator(server, args, str(burst), results["burst"], burst=str(burst))
            steps = args.stock_steps or args.steps if target == "stock" else args.steps
            if steps:
                print(f"== {target}: steps {steps}", flush=True)
                results["series"][target] = []
                with serve(target, Path(tmp)) as server:
                    run_generator(server, args, steps, results["series"][target])
            if args.setup_trace:
                os.environ.pop("CALLBRIDGE_SETUP_TRACE", None)
                if trace.exists():
                    results["setup_profile"][target] = setup_profile.profile(trace)
            if target == "callbridge" and args.record_at:
                # A fresh server: N calls measured, then all of them recorded and measured.
                print(f"== {target}: recording off vs on at {args.record_at} calls", flush=True)
                with serve(target, Path(tmp) / "recording") as server:
                    run_generator(
                        server,
                        args,
                        str(args.record_at),
                        results["recording"],
                        record_at=str(args.record_at),
                    )
            if target == "callbridge" and args.supervise_at:
                # A fresh server: N calls measured, then every tenth monitored, then barging.
                print(f"== {target}: 10% monitored vs none at {args.supervise_at}", flush=True)
                with serve(target, Path(tmp) / "supervision") as server:
                    run_generator(
                        server,
                        args,
                        str(args.supervise_at),
                        results["supervision"],
                        supervise_at=str(args.supervise_at),
                    )
    if args.calibrate_steps:
        # The generator alone (direct pairs): how many calls it can drive on its core.
        print(f"== generator alone: steps {args.calibrate_steps}", flush=True)
        alone = RunningServer("generator", "", 0, Path(os.devnull))
        calibrate = argparse.Namespace(**{**vars(args), "keep_going": True})  # every step
        run_generator(alone, calibrate, args.calibrate_steps, results["calibration"])


def write_report(results: dict, out: Path | None, json_path: Path | None) -> None:
    """Summarize; write the markdown report, its chart and the raw JSON beside it."""
    results["summary"] = report.summarize(results)
    print(report.summary_text(results["summary"]), flush=True)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        json_path = json_path or out.with_suffix(".json")
        json_path.write_text(json.dumps(results, indent=1))
        chart = out.with_name(out.stem.lower() + ".png")
        report.chart(results, chart)
        analysis = report.kept_analysis(out.read_text()) if out.exists() else ""
        out.write_text(report.markdown(results, chart.name, analysis))
        print(f"wrote {out}, {chart}, {json_path}")
    elif json_path:
        json_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
