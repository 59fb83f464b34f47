"""Signaling load: end users and operators on /ws/signal ring, answer, reject, cancel and
hang up calls (no media) against a real daphne for a bounded time; then every call's
CallEvent timeline and every socket's events are checked, and round trips reported.

    .venv/bin/python -m bench.signaling_load --sessions 300 --duration 60

Starts `manage.py serve` (the embedded set-up: SQLite, in-memory channel layer) on a fresh
database in a temporary folder, on 127.0.0.1. Each end user, in a loop: `POST /api/calls`
(rings the operators), waits for `call.ringing` on its socket, then, as the call's id
decides (so users and operators agree without talking): the operator it is assigned to
answers it (`POST .../answer`) and one of them hangs up over the socket after --talk
seconds (70 %), the operator rejects it (15 %), or the user cancels it (15 %). After each
call the user re-`register`s (what a reconnecting page does) and pauses about --think s.
Operator sockets get every call's events; each user socket its own calls'.

Checked afterwards: no call left open; every call's timeline is `call.created`, then
`call.answered` if it was answered, then exactly one `call.ended` with the reason and the
role its plan says; every socket got exactly the events it should, in order (lost,
duplicated and unexpected events are counted). Exit status 1 if any check fails.

Round trips (one process, one clock): `register` → `registered` between calls and socket
`hangup` → `call.ended` (the signaling round trip; the 300 registers all sent at once at
set-up are reported apart), REST create → `call.ringing` on the caller's
socket, create → `call.incoming` on the assigned operator's socket, REST answer →
`call.answered` on the operator's socket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

from callbridge.local_server import LocalServer, outside_environment, serving

WAIT_S = 30.0  # a reply or event not here by then counts as lost
ANSWERED, REJECTED, CANCELLED = "answered", "rejected", "cancelled"


def plan_of(call_id: str) -> str:
    """What happens to a call, decided by its id (users and operators agree)."""
    slot = uuid.UUID(call_id).int % 20
    return ANSWERED if slot < 14 else REJECTED if slot < 17 else CANCELLED


def user_hangs_up(call_id: str) -> bool:
    return uuid.UUID(call_id).int // 20 % 2 == 0


def operator_of(call_id: str, operators: int) -> int:
    return uuid.UUID(call_id).int // 40 % operators


def expected_outcome(call_id: str) -> tuple[str, str, str]:
    """(state, endReason, endedBy role) the plan leads to."""
    plan = plan_of(call_id)
    if plan == REJECTED:
        return "rejected", "rejected", "operator"
    if plan == CANCELLED:
        return "cancelled", "cancelled", "user"
    return "ended", "hangup", "user" if user_hangs_up(call_id) else "operator"


class Http:
    """A minimal HTTP/1.1 keep-alive JSON client (one connection, one request at a time)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def request(self, method: str, path: str, token: str, body: Any = None) -> Any:
        async with self._lock, asyncio.timeout(WAIT_S):
            for attempt in (1, 2):
                try:
                    return await self._exchange(method, path, token, body)
                except (ConnectionError, asyncio.IncompleteReadError):
                    await self.close()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    async def _exchange(self, method: str, path: str, token: str, body: Any) -> Any:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        data = json.dumps(body).encode() if body is not None else b""
        writer.write(
            (
                f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data
        )
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            raw = await reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            raw = b""
            while size := int((await reader.readline()).strip(), 16):
                raw += await reader.readexactly(size)
                await reader.readline()
            await reader.readline()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        answer = json.loads(raw) if raw else None
        if not 200 <= status < 300:
            raise RuntimeError(f"{method} {path}: {status} {answer}")
        return answer

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


class HttpPool:
    """Keep-alive connections for one party making requests concurrently."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._idle: list[Http] = []
        self._all: list[Http] = []

    async def request(self, method: str, path: str, token: str, body: Any = None) -> Any:
        http = self._idle.pop() if self._idle else self._new()
        try:
            return await http.request(method, path, token, body)
        finally:
            self._idle.append(http)

    def _new(self) -> Http:
        self._all.append(Http(self.url))
        return self._all[-1]

    async def close(self) -> None:
        for http in self._all:
            await http.close()


@dataclass
class Stats:
    round_trips: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: Counter[str] = field(default_factory=Counter)
    placed: list[str] = field(default_factory=list)

    def took(self, kind: str, since: float) -> None:
        self.round_trips[kind].append(time.monotonic() - since)


class Socket:
    """One /ws/signal connection: records every event per call, wakes who waits for one."""

    def __init__(self, connection: Any, stats: Stats) -> None:
        self.connection = connection
        self.stats = stats
        self.events: dict[str, list[str]] = defaultdict(list)  # callSid → wire names
        self.on_event: Any = None
        self._arrived: dict[tuple[str, str], float] = {}
        self._waiters: dict[tuple[str, str], asyncio.Future[float]] = {}
        self._registered: asyncio.Queue[float] = asyncio.Queue()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.connection:
                message = json.loads(text)
                now = time.monotonic()
                if message["type"] == "error":
                    self.stats.failures[f"error {message['data']['code']}"] += 1
                    continue
                if message["type"] != "event":
                    continue
                name, call_id = message["data"]["name"], message["callSid"]
                if name == "registered":
                    self._registered.put_nowait(now)
                if not call_id:
                    continue  # registered, presence
                self.events[call_id].append(name)
                self._arrived.setdefault((call_id, name), now)
                waiter = self._waiters.pop((call_id, name), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(now)
                if self.on_event is not None:
                    self.on_event(call_id, name)
        except websockets.ConnectionClosed:
            pass

    async def wait(self, call_id: str, name: str) -> float | None:
        """When the event arrived (it may already have); None if it never did."""
        key = (call_id, name)
        if key in self._arrived:
            return self._arrived[key]
        waiter = self._waiters.setdefault(key, asyncio.get_running_loop().create_future())
        try:
            async with asyncio.timeout(WAIT_S):
                return await waiter
        except TimeoutError:
            self.stats.failures[f"no {name} within {WAIT_S:.0f} s"] += 1
            return None

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def register(self, token: str, kind: str = "ws register → registered") -> None:
        started = time.monotonic()
        await self.send({"type": "register", "sessionId": "", "authToken": token})
        try:
            async with asyncio.timeout(WAIT_S):
                await self._registered.get()
            self.stats.took(kind, started)
        except TimeoutError:
            self.stats.failures["no registered"] += 1

    async def close(self) -> None:
        await self.connection.close()
        await asyncio.gather(self.reader, return_exceptions=True)


@dataclass
class Load:
    server: LocalServer
    sessions: int
    operators: int
    duration_s: float
    think_s: float
    talk_s: float
    stats: Stats = field(default_factory=Stats)
    # Pauses only (the calls' plans come from their ids): a seed makes runs comparable.
    rng: random.Random = field(default_factory=lambda: random.Random(8))  # noqa: S311

    @property
    def ws_url(self) -> str:
        return self.server.url.replace("http://", "ws://") + "/ws/signal"

    async def connect(self) -> Socket:
        connection = await websockets.connect(self.ws_url, open_timeout=WAIT_S, max_queue=None)
        return Socket(connection, self.stats)

    # --- operators ---------------------------------------------------------------------
    async def run_operator(
        self, index: int, token: str, socket: Socket, stop: asyncio.Event
    ) -> None:
        tasks: set[asyncio.Task[None]] = set()
        http = HttpPool(self.server.url)

        def on_event(call_id: str, name: str) -> None:
            if name == "call.incoming" and operator_of(call_id, self.operators) == index:
                task = asyncio.get_running_loop().create_task(
                    self.handle_call(http, token, socket, call_id)
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        socket.on_event = on_event
        await stop.wait()
        while tasks:
            await asyncio.gather(*list(tasks), return_exceptions=True)
        await http.close()

    async def handle_call(self, http: HttpPool, token: str, socket: Socket, call_id: str) -> None:
        plan = plan_of(call_id)
        try:
            if plan == REJECTED:
                started = time.monotonic()
                await socket.send({"type": "hangup", "sessionId": "", "callSid": call_id})
                if await socket.wait(call_id, "call.ended"):
                    self.stats.took("ws hangup → call.ended", started)
            elif plan == ANSWERED:
                started = time.monotonic()
                await http.request("POST", f"/api/calls/{call_id}/answer", token)
                if await socket.wait(call_id, "call.answered"):
                    self.stats.took("REST answer → call.answered", started)
                if not user_hangs_up(call_id):
                    await asyncio.sleep(self.talk_s)
                    started = time.monotonic()
                    await socket.send({"type": "hangup", "sessionId": "", "callSid": call_id})
                    if await socket.wait(call_id, "call.ended"):
                        self.stats.took("ws hangup → call.ended", started)
        except Exception as error:
            self.stats.failures[f"operator: {type(error).__name__}: {error}"[:120]] += 1

    # --- end users ---------------------------------------------------------------------
    async def run_user(
        self, token: str, socket: Socket, operators: list[Socket], deadline: float
    ) -> list[str]:
        http = Http(self.server.url)
        mine = []
        await self.pause(self.rng.uniform(0, self.think_s), deadline)
        try:
            while time.monotonic() < deadline:
                try:
                    mine.append(await self.one_call(http, token, socket, operators))
                except Exception as error:
                    self.stats.failures[f"user: {type(error).__name__}: {error}"[:120]] += 1
                await socket.register(token)
                await self.pause(self.rng.uniform(0.5, 1.5) * self.think_s, deadline)
        finally:
            await http.close()
        return mine

    @staticmethod
    async def pause(seconds: float, deadline: float) -> None:
        """Think, but not past the end of the run: a pause that ends after it leads to no
        call, so waiting it out would only add idle seconds to the run."""
        await asyncio.sleep(max(0.0, min(seconds, deadline - time.monotonic())))

    async def one_call(
        self, http: Http, token: str, socket: Socket, operators: list[Socket]
    ) -> str:
        started = time.monotonic()
        call_id = (await http.request("POST", "/api/calls", token, {}))["callID"]
        self.stats.placed.append(call_id)
        if (arrived := await socket.wait(call_id, "call.ringing")) is not None:
            self.stats.round_trips["REST create → call.ringing"].append(arrived - started)
        operator = operators[operator_of(call_id, self.operators)]
        if (arrived := await operator.wait(call_id, "call.incoming")) is not None:
            self.stats.round_trips["REST create → operator call.incoming"].append(arrived - started)
        plan = plan_of(call_id)
        if plan == CANCELLED or (plan == ANSWERED and user_hangs_up(call_id)):
            if plan == ANSWERED:
                await socket.wait(call_id, "call.answered")
                await asyncio.sleep(self.talk_s)
            hangup = time.monotonic()
            await socket.send({"type": "hangup", "sessionId": "", "callSid": call_id})
            if await socket.wait(call_id, "call.ended"):
                self.stats.took("ws hangup → call.ended", hangup)
        else:
            await socket.wait(call_id, "call.ended")
        return call_id

    # --- the run -----------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        users = self.sessions - self.operators
        assert self.server.process is not None
        print(f"server pid {self.server.process.pid} at {self.server.url}", flush=True)
        op_tokens = await asyncio.to_thread(make_api_tokens, self.server, self.operators)
        setup = time.monotonic()
        user_tokens = await make_sessions(self.server.url, op_tokens[0], users)
        sockets = await asyncio.gather(*(self.connect() for _ in range(self.sessions)))
        operators, user_sockets = list(sockets[: self.operators]), list(sockets[self.operators :])
        await asyncio.gather(
            *(
                s.register(t, "ws register at set-up (all sockets at once)")
                for s, t in zip(sockets, op_tokens + user_tokens, strict=True)
            )
        )
        setup_s = time.monotonic() - setup
        cpu_before = server_cpu_s(self.server)
        started = time.monotonic()
        stop = asyncio.Event()
        operator_runs = [
            asyncio.get_running_loop().create_task(self.run_operator(i, t, s, stop))
            for i, (t, s) in enumerate(zip(op_tokens, operators, strict=True))
        ]
        per_user = await asyncio.gather(
            *(
                self.run_user(t, s, operators, started + self.duration_s)
                for t, s in zip(user_tokens, user_sockets, strict=True)
            )
        )
        stop.set()
        await asyncio.gather(*operator_runs)
        elapsed = time.monotonic() - started
        cpu_s = server_cpu_s(self.server) - cpu_before
        await self.settle(operators)
        stored = await asyncio.to_thread(stored_timelines, self.server)
        for socket in sockets:
            await socket.close()
        checks = check(stored, per_user, user_sockets, operators)
        return summary(self, checks, elapsed, setup_s, cpu_s)

    async def settle(self, operators: list[Socket], within: float = 10.0) -> None:
        """Let the last events reach every operator socket."""
        deadline = time.monotonic() + within
        placed = set(self.stats.placed)
        while time.monotonic() < deadline:
            if all(
                all("call.ended" in op.events.get(call_id, []) for call_id in placed)
                for op in operators
            ):
                return
            await asyncio.sleep(0.2)


async def make_sessions(url: str, token: str, count: int, connections: int = 8) -> list[str]:
    """End-user sessions made the way an integrator's backend does (POST /api/sessions)."""

    async def make(share: int) -> list[str]:
        http = Http(url)
        try:
            return [
                (await http.request("POST", "/api/sessions", token, {"displayName": "load"}))[
                    "sessionToken"
                ]
                for _ in range(share)
            ]
        finally:
            await http.close()

    shares = [count // connections + (i < count % connections) for i in range(connections)]
    return [t for batch in await asyncio.gather(*(make(n) for n in shares)) for t in batch]


def make_api_tokens(server: LocalServer, count: int) -> list[str]:
    out = server.manage(
        "shell",
        "-c",
        "import json; from calls.models import ApiToken; "
        f"print(json.dumps([ApiToken.create(f'load-operator-{{i}}')[1] for i in range({count})]))",
    )
    return json.loads(out.strip().splitlines()[-1])


TIMELINES = """
import json
from calls.models import Call
rows = [
    [str(c.pk), c.state, c.end_reason, c.ended_by_role, c.answered_at is not None,
     [e.name for e in c.events.all()]]
    for c in Call.objects.prefetch_related("events")
]
print(json.dumps(rows))
"""


def stored_timelines(server: LocalServer) -> dict[str, dict[str, Any]]:
    out = server.manage("shell", "-c", TIMELINES)
    return {
        row[0]: {
            "state": row[1],
            "reason": row[2],
            "by": row[3],
            "answered": row[4],
            "events": row[5],
        }
        for row in json.loads(out.strip().splitlines()[-1])
    }


def server_cpu_s(server: LocalServer) -> float:
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wire_names(call: dict[str, Any], caller_side: bool) -> list[str]:
    """The socket events a call's records should have produced for a user or an operator."""
    names = []
    for name in call["events"]:
        if name == "call.created":
            names.append("call.ringing" if caller_side else "call.incoming")
        elif name in ("call.answered", "call.ended"):
            names.append(name)
    return names


def check(
    stored: dict[str, dict[str, Any]],
    per_user: list[list[str]],
    users: list[Socket],
    operators: list[Socket],
) -> dict[str, Any]:
    bad_timelines, wrong_outcomes = [], []
    for call_id, call in stored.items():
        names = call["events"]
        complete = (
            names[:1] == ["call.created"]
            and names[-1:] == ["call.ended"]
            and names.count("call.ended") == 1
            and ("call.answered" in names) == call["answered"]
        )
        if not complete:
            bad_timelines.append((call_id, names))
        if (call["state"], call["reason"], call["by"]) != expected_outcome(call_id):
            wrong_outcomes.append((call_id, call["state"], call["reason"], call["by"]))
    lost = duplicated = unexpected = delivered = expected_total = 0

    def compare(got: list[str], want: list[str]) -> None:
        nonlocal lost, duplicated, unexpected, delivered, expected_total
        expected_total += len(want)
        delivered += len(got)
        missing = Counter(want) - Counter(got)
        extra = Counter(got) - Counter(want)
        lost += sum(missing.values())
        for name, count in extra.items():
            if name in want:
                duplicated += count
            else:
                unexpected += count
        if not missing and not extra and got != want:
            unexpected += 1  # out of order

    for socket, calls in zip(users, per_user, strict=True):
        for call_id in set(socket.events) | set(calls):
            if call_id not in stored:
                unexpected += len(socket.events[call_id])
                continue
            compare(socket.events.get(call_id, []), wire_names(stored[call_id], True))
    for socket in operators:
        for call_id in set(socket.events) | set(stored):
            if call_id not in stored:
                unexpected += len(socket.events[call_id])
                continue
            compare(socket.events.get(call_id, []), wire_names(stored[call_id], False))
    return {
        "calls": len(stored),
        "open": sum(1 for call in stored.values() if call["state"] in ("ringing", "active")),
        "outcomes": dict(Counter(call["state"] for call in stored.values())),
        "incomplete_timelines": len(bad_timelines),
        "wrong_outcomes": len(wrong_outcomes),
        "examples": (bad_timelines + wrong_outcomes)[:3],
        "events_expected": expected_total,
        "events_delivered": delivered,
        "events_lost": lost,
        "events_duplicated": duplicated,
        "events_unexpected": unexpected,
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {
        "n": len(ordered),
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1] * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
    }


def summary(
    load: Load, checks: dict[str, Any], elapsed: float, setup_s: float, cpu_s: float
) -> dict[str, Any]:
    trips = load.stats.round_trips
    signaling = trips["ws register → registered"] + trips["ws hangup → call.ended"]
    return {
        "sessions": load.sessions,
        "operators": load.operators,
        "end_users": load.sessions - load.operators,
        "duration_s": round(elapsed, 1),
        "setup_s": round(setup_s, 1),
        "calls_per_s": round(checks["calls"] / elapsed, 1),
        "server_cpu_core_share": round(cpu_s / elapsed, 2),
        **checks,
        "failures": dict(load.stats.failures),
        "signaling_round_trip": percentiles(signaling),
        "round_trips": {kind: percentiles(samples) for kind, samples in sorted(trips.items())},
    }


def passed(result: dict[str, Any]) -> bool:
    return (
        result["calls"] > 0
        and result["open"] == 0
        and result["incomplete_timelines"] == 0
        and result["wrong_outcomes"] == 0
        and result["events_lost"] == 0
        and result["events_duplicated"] == 0
        and result["events_unexpected"] == 0
        and not result["failures"]
    )


@contextmanager
def load_server(data_dir: Path, database: Path | None = None) -> Iterator[LocalServer]:
    """`manage.py serve` (the embedded set-up) on a fresh database in `data_dir`: migrated
    here, or a copy of `database` (an empty, migrated SQLite file: the tests have one)."""
    env = outside_environment()
    env.update(
        CALLBRIDGE_DATA_DIR=str(data_dir),
        CALLBRIDGE_ICE_HOST_ADDRESSES="127.0.0.1",
        **server_env(),
    )
    server = LocalServer.on_free_port(env, data_dir / "serve.log")
    if database is None:
        server.manage("migrate", "--noinput")
    else:
        shutil.copy2(database, data_dir / "db.sqlite3")
    (data_dir / "static").mkdir(exist_ok=True)  # STATIC_ROOT: WhiteNoise warns without it
    with serving(server) as running:
        yield running


def server_env() -> dict[str, str]:
    """Limits a one-address load run would otherwise hit (every client is 127.0.0.1)."""
    return {
        "CALLBRIDGE_RING_TIMEOUT_S": "300",
        "CALLBRIDGE_RATE_LIMIT_IP": "1000000/min",
        "CALLBRIDGE_RATE_LIMIT_PRINCIPAL": "1000000/min",
        "CALLBRIDGE_WS_RATE_LIMIT_IP": "1000000/min",
        "CALLBRIDGE_WS_RATE_LIMIT_SOCKET": "1000000/min",
        "CALLBRIDGE_WS_RATE_LIMIT_PRINCIPAL": "1000000/min",
        "CALLBRIDGE_LIMIT_SOCKETS_PER_IP": "100000",
    }


async def run_load(server: LocalServer, **options: Any) -> dict[str, Any]:
    return await Load(server, **options).run()


def print_summary(result: dict[str, Any]) -> None:
    rtt = result["signaling_round_trip"]
    print(
        f"{result['sessions']} sockets ({result['end_users']} end users, "
        f"{result['operators']} operators), {result['duration_s']} s: "
        f"{result['calls']} calls ({result['calls_per_s']}/s) {result['outcomes']}, "
        f"server CPU {result['server_cpu_core_share']:.0%} of a core; "
        f"set-up (sessions, sockets, register) {result['setup_s']} s"
    )
    print(
        f"timelines: {result['open']} open, {result['incomplete_timelines']} incomplete, "
        f"{result['wrong_outcomes']} wrong outcome; events: {result['events_delivered']}"
        f"/{result['events_expected']} delivered, {result['events_lost']} lost, "
        f"{result['events_duplicated']} duplicated, {result['events_unexpected']} unexpected"
    )
    print(
        f"signaling round trip (register, hangup): p50 {rtt.get('p50_ms')} ms, "
        f"p99 {rtt.get('p99_ms')} ms, max {rtt.get('max_ms')} ms (n={rtt['n']})"
    )
    for kind, stats in result["round_trips"].items():
        print(f"  {kind}: {stats}")
    if result["failures"]:
        print(f"failures: {result['failures']}")
    print("PASS" if passed(result) else "FAIL")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=300, help="WebSocket sessions in all")
    parser.add_argument("--operators", type=int, default=20, help="of which operators")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds placing calls")
    parser.add_argument("--think", type=float, default=10.0, help="mean pause between calls")
    parser.add_argument("--talk", type=float, default=0.5, help="seconds an answered call lasts")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--database",
        type=Path,
        default=None,
        help="start from a copy of this empty, migrated SQLite database (else: migrate)",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="callbridge-load-") as data,
        load_server(Path(data), args.database) as server,
    ):
        result = asyncio.run(
            run_load(
                server,
                sessions=args.sessions,
                operators=args.operators,
                duration_s=args.duration,
                think_s=args.think,
                talk_s=args.talk,
            )
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_summary(result)
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
