"""The load generator: ramps bridged calls against one server and measures each step.

Runs in its own process (pinned by bench.media to another core than the server). Each call
is two FastLegs (user 440 Hz, operator 880 Hz) set up through the target's signaling;
a direct peer-to-peer FastLeg pair in this same process is the latency reference. Legs send
silence between measurements and the sound loop (tone + one pulse a second) during each
step's window, so "sound packets sent vs received" gives loss per direction without
window-edge errors. Prints one JSON object per step on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import setup_profile
from bench.audio import LOOP_FRAMES, PULSE_FRAME, Payloads, encode_payloads
from bench.fastleg import FastLeg
from bench.targets import CallbridgeTarget, CallHandle, StockTarget, Target
from calls import setup_trace

TICK_S = 0.005  # legs are split in 4 groups, one group sent every 5 ms: 20 ms per leg
GROUPS = 4
LOSS_BOUND = 0.005
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
logger = logging.getLogger("loadgen")


def process_cpu_s(pid: int) -> float:
    """user+sys CPU seconds of a process (all its threads) and of the children it has
    reaped (e.g. callbridge's recording renderer), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / CLOCK_TICKS


def tree_cpu_s(pid: int) -> float:
    """`process_cpu_s` of a process plus every descendant alive now: PostgreSQL's backends
    are its postmaster's children (and the postmaster `runuser`'s, as root). One that exits
    moves into its parent's reaped-children time (one ending between the reads of its parent
    and itself is missed once: rare, backends live as long as their connections)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += process_cpu_s(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone between two reads
    return total


def named_pids(spec: str) -> dict[str, int]:
    """`daphne=12,postgres=34` → {"daphne": 12, "postgres": 34}."""
    pairs = (item.split("=", 1) for item in spec.split(",") if item.strip())
    return {name.strip(): int(pid) for name, pid in pairs}


def core_busy_s(core: int) -> float:
    """Seconds core `core` spent busy (anything but idle/iowait), from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(x) for x in line.split()[1:]]
            return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLOCK_TICKS
    return 0.0


def udp_receive_buffer_errors() -> int:
    """Datagrams the kernel dropped because a socket's receive buffer was full (this network
    namespace, every process): loss that no application code saw."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    header, values = next(pair for pair in itertools.pairwise(lines) if pair[0][0] == "Udp:")
    return int(values[header.index("RcvbufErrors")])


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def trace_client_stages(
    handle: CallHandle, load: int, **legs: tuple[float, float, float, float]
) -> None:
    """The generator's side of each leg's set-up for calls.setup_trace (when tracing):
    when it asked (for the call, or to answer it), posted its offer, got the answer, and
    saw the leg connected (ICE and DTLS done) — perf_counter times, written as unix time."""
    if not setup_trace.enabled():
        return
    to_unix = time.time() - time.perf_counter()
    for role, moments in legs.items():
        leg = handle.legs.get(role)
        if leg is None:
            continue
        stages = ("client.requested", "client.posted", "client.answered", "client.connected")
        for stage, moment in zip(stages, moments, strict=True):
            setup_trace.mark(leg, stage, moment + to_unix, load=load, role=role)


@dataclass
class Sender:
    leg: FastLeg
    payloads: Payloads
    records_pulses: bool  # its peer decodes: keep the send time of each pulse
    pulses_sent: list[float] = field(default_factory=list)


@dataclass
class BenchCall:
    handle: CallHandle
    user: FastLeg
    operator: FastLeg
    supervisor: FastLeg | None = None  # two tracks: the user's and the operator's


class Generator:
    def __init__(self, target: Target | None, args: argparse.Namespace) -> None:
        self.target = target
        self.args = args
        self.user_payloads = encode_payloads(440.0)
        self.operator_payloads = encode_payloads(880.0)
        self.supervisor_payloads = encode_payloads(1250.0)
        self.calls: list[BenchCall] = []
        self.groups: list[list[Sender]] = [[] for _ in range(GROUPS)]
        self.senders: dict[FastLeg, Sender] = {}
        self.sound_until = 0.0  # perf_counter time the current sound window ends
        self.sound_index = [0] * GROUPS
        self.late: list[float] = []  # ticker lateness samples during a window
        self.late_max = 0.0  # worst lateness since the step began (set-up included)
        self.ticker: asyncio.Task[None] | None = None
        self.direct: tuple[FastLeg, FastLeg] | None = None
        self.setup_failures = 0
        self.send_failures = 0
        self.probe_index = itertools.count(1_000_000)  # set-up probes' call numbers

    # ---- sending ---------------------------------------------------------------------
    def _add_sender(self, leg: FastLeg, payloads: Payloads, peer_probe: bool) -> None:
        sender = Sender(leg, payloads, peer_probe)
        self.senders[leg] = sender
        min(self.groups, key=len).append(sender)

    async def tick(self) -> None:
        """Send every leg's next 20 ms payload, one group per 5 ms tick."""
        loop_start = time.perf_counter()
        tick = 0
        while True:
            due = loop_start + tick * TICK_S
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            group = tick % GROUPS
            tick += 1
            self.late_max = max(self.late_max, now - due)
            sound = now < self.sound_until
            if sound:
                self.late.append(now - due)
                index = self.sound_index[group] % LOOP_FRAMES
                self.sound_index[group] += 1
            else:
                self.sound_index[group] = 0
                index = -1
            for sender in tuple(self.groups[group]):  # a copy: failed legs are removed
                try:
                    if index < 0:
                        sender.leg.send(sender.payloads.silence, sound=False)
                        continue
                    if index == PULSE_FRAME and sender.records_pulses:
                        sender.pulses_sent.append(time.perf_counter())
                    sender.leg.send(sender.payloads.sound[index], sound=True, marker=index == 0)
                except Exception as error:  # one broken leg must not stop the others' clock
                    logger.warning("%s: send failed: %r", sender.leg.name, error)
                    self.groups[group].remove(sender)
                    self.send_failures += 1

    # ---- setting up calls --------------------------------------------------------------
    async def start_direct_pair(self) -> None:
        a, b = FastLeg("direct-a", probe=True), FastLeg("direct-b", probe=True)
        await a.accept(await b.answer(await a.offer()))
        await a.wait_connected(10)
        await b.wait_connected(10)
        for leg, payloads in ((a, self.user_payloads), (b, self.operator_payloads)):
            leg.take_over()
            self._add_sender(leg, payloads, peer_probe=True)
        self.direct = (a, b)

    async def _connect_call(
        self, index: int, probe: bool, keep: bool = True
    ) -> tuple[float, float]:
        """One bridged call; returns both legs' offer→connected times. Not `keep`: hung up
        once connected (a set-up probe: measured, not added to the load)."""
        if self.target is None:
            return await self._connect_direct_call(index, probe)
        load = len(self.calls)
        requested = time.perf_counter()
        handle = await self.target.create_call(index)
        user, operator = FastLeg(f"user-{index}", probe), FastLeg(f"operator-{index}", probe)
        try:
            user_offer = await user.offer()
            user_posted = time.perf_counter()
            user_sdp = await self.target.offer(handle, "user", user_offer)
            user_answered = time.perf_counter()
            await user.accept(user_sdp)
            answer_requested = time.perf_counter()
            await self.target.answer(handle)
            operator_offer = await operator.offer()
            operator_posted = time.perf_counter()
            operator_sdp = await self.target.offer(handle, "operator", operator_offer)
            operator_answered = time.perf_counter()
            await operator.accept(operator_sdp)
            await user.wait_connected(self.args.connect_timeout)
            await operator.wait_connected(self.args.connect_timeout)
        except Exception:
            await user.close()
            await operator.close()
            raise
        assert user.connected_at is not None and operator.connected_at is not None
        trace_client_stages(
            handle,
            load,
            user=(requested, user_posted, user_answered, user.connected_at),
            operator=(answer_requested, operator_posted, operator_answered, operator.connected_at),
        )
        times = user.connected_at - user_posted, operator.connected_at - operator_posted
        if not keep:
            await self.target.hang_up(handle)
            await asyncio.gather(user.close(), operator.close())
            return times
        for leg, payloads in ((user, self.user_payloads), (operator, self.operator_payloads)):
            leg.take_over()
            self._add_sender(leg, payloads, peer_probe=probe)
        self.calls.append(BenchCall(handle, user, operator))
        return times

    async def _connect_direct_call(self, index: int, probe: bool) -> tuple[float, float]:
        """Calibration (`--target generator`): the two legs talk to each other, no server,
        so the whole cost of a call's packets lands on the generator."""
        user, operator = FastLeg(f"user-{index}", probe), FastLeg(f"operator-{index}", probe)
        offer = await user.offer()
        posted = time.perf_counter()
        await user.accept(await operator.answer(offer))
        await user.wait_connected(self.args.connect_timeout)
        await operator.wait_connected(self.args.connect_timeout)
        connected = time.perf_counter() - posted
        for leg, payloads in ((user, self.user_payloads), (operator, self.operator_payloads)):
            leg.take_over()
            self._add_sender(leg, payloads, peer_probe=probe)
        self.calls.append(BenchCall(CallHandle(f"direct-{index}"), user, operator))
        return connected, connected

    async def add_supervisors(self, every: int) -> list[BenchCall]:
        """A supervisor in monitor mode on every `every`-th call (at least one): a staff
        session joins (`…/supervise`), then its leg offers two audio m-lines, the second
        receive-only, and sends its microphone (a 1250 Hz tone nobody hears) like a browser."""
        supervised = self.calls[every - 1 :: every] or self.calls[:1]
        semaphore = asyncio.Semaphore(self.args.parallel)

        async def one(call: BenchCall) -> None:
            assert self.target is not None
            async with semaphore:
                await self.target.supervise(call.handle, "monitor")
                leg = FastLeg(f"supervisor-{call.handle.call_id}", tracks=2)
                try:
                    await leg.accept(
                        await self.target.offer_as_supervisor(call.handle, await leg.offer())
                    )
                    await leg.wait_connected(self.args.connect_timeout)
                except Exception:
                    await leg.close()
                    raise
                leg.take_over()
                self._add_sender(leg, self.supervisor_payloads, peer_probe=False)
                call.supervisor = leg

        await asyncio.gather(*(one(call) for call in supervised))
        gc.collect()
        gc.freeze()
        return supervised

    async def switch(self, calls: list[BenchCall], mode: str) -> None:
        """Every supervisor in `calls` switches to `mode` (whisper: the operator's ear mixes;
        barge: both parties' ears do — decode, sum, encode)."""
        assert self.target is not None
        await asyncio.gather(*(self.target.supervise(call.handle, mode) for call in calls))

    def supervisor_tracks(self, calls: list[BenchCall]) -> float | None:
        """The smallest share, over supervisors and their two tracks, of the sound packets
        the supervised party sent in the window that reached the supervisor on that party's
        own track (a supervisor given one track, or one mixed, scores 0)."""
        shares = []
        for call in calls:
            if call.supervisor is None:
                continue
            tracks = sorted(call.supervisor.received_sound_by_ssrc.values(), reverse=True)[:2]
            sent = min(call.user.sent_sound, call.operator.sent_sound)
            shares.append(min(tracks) / sent if len(tracks) == 2 and sent else 0.0)
        return round(min(shares), 4) if shares else None

    async def probe_setups(self, count: int, interval: float) -> list[float]:
        """`count` calls set up one at a time, `interval` s apart, each hung up once both
        legs connected: offer→connected of a single set-up at this load."""
        times: list[float] = []
        for _ in range(count):
            started = time.perf_counter()
            try:
                times += await self._connect_call(next(self.probe_index), probe=False, keep=False)
            except Exception as error:
                logger.warning("set-up probe failed: %r", error)
                self.setup_failures += 1
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
        return times

    async def burst(self, count: int) -> dict[str, Any]:
        """`count` calls asked for at the same instant (a restart's reconnect storm): the
        time until every leg is connected, set-ups per second, and the WebSocket round
        trip measured meanwhile."""
        assert self.target is not None
        rtts: list[float] = []
        # Every call's set-up events, as an operator's dashboard receives them.
        records: dict[str, Counter[str]] = {}
        watching = asyncio.ensure_future(self.target.watch_feed(records))
        await asyncio.sleep(1.0)  # its first message (the snapshot) read
        cpu0 = self._server_cpu_s()
        started = time.perf_counter()
        setting_up = asyncio.ensure_future(self.add_calls(count, parallel=count))
        while not setting_up.done():
            try:
                rtts.append(await asyncio.wait_for(self.target.ws_round_trip(), 30))
            except Exception as error:
                logger.warning("ws probe failed: %r", error)
                rtts.append(float("inf"))
            await asyncio.sleep(0.05)
        connect_times = await setting_up
        elapsed = time.perf_counter() - started
        cpu1 = self._server_cpu_s()
        connected = len(connect_times) // 2
        # Events trail the set-ups (published in order, each with the call's snapshot): wait
        # until the feed has been quiet for 3 s (at most 10 min from the burst), and how long.
        seen, quiet_since, drained_at = -1, time.perf_counter(), time.perf_counter()
        while time.perf_counter() - quiet_since < 3.0 and time.perf_counter() - started < 600:
            await asyncio.sleep(0.25)
            now_seen = sum(sum(counts.values()) for counts in records.values())
            if now_seen != seen:
                seen, quiet_since = now_seen, time.perf_counter()
        feed_lag_s = max(0.0, quiet_since - drained_at)
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        # Lost: a connected call whose feed lacks any of its set-up's records.
        expected = Counter({"call.created": 1, "call.answered": 1, "media.connected": 2})
        calls = [call.handle.call_id for call in self.calls]
        complete = sum(1 for call in calls if not expected - records.get(call, Counter()))
        # Server CPU per set-up (the calls' media flows meanwhile too: silence, 50 packets
        # a second per leg, a small share at these durations).
        per_setup = {
            name: round((cpu1[name] - cpu0[name]) * 1000 / max(connected, 1), 1) for name in cpu1
        }
        return {
            "burst_cpu_ms_per_setup": per_setup,
            "burst_calls": count,
            "burst_connected": connected,
            "burst_s": round(elapsed, 2),
            "setups_per_s": round(connected / elapsed, 1),
            "burst_offer_connected_p50_ms": ms(percentile(connect_times, 50)),
            "burst_offer_connected_p95_ms": ms(percentile(connect_times, 95)),
            "burst_ws_rtt_p99_ms": ms(percentile(rtts, 99)),
            "burst_ws_samples": len(rtts),
            "burst_feed_complete": complete,  # of burst_connected: every set-up event seen
            "burst_feed_lag_s": round(feed_lag_s, 1),  # the last event after the last set-up
        }

    def _server_cpu_s(self) -> dict[str, float]:
        """CPU seconds so far of each server process (one, "server", unless a cluster)."""
        if self.args.server_pids:
            return {name: tree_cpu_s(pid) for name, pid in self.args.server_pids.items()}
        return {"server": process_cpu_s(self.args.server_pid)}

    async def add_calls(self, count: int, parallel: int | None = None) -> list[float]:
        self.late_max = 0.0
        semaphore = asyncio.Semaphore(parallel or self.args.parallel)
        first = len(self.calls)

        async def one(index: int) -> tuple[float, float] | None:
            async with semaphore:
                try:
                    return await self._connect_call(index, probe=index < self.args.probe_calls)
                except Exception as error:
                    logger.warning("call %d failed to set up: %r", index, error)
                    self.setup_failures += 1
                    return None

        results = await asyncio.gather(*(one(first + i) for i in range(count)))
        # Hundreds of peer connections are a big heap: keep the cyclic GC from rescanning
        # it (pauses of 100+ ms) by moving everything alive now out of its reach.
        gc.collect()
        gc.freeze()
        return [t for pair in results if pair for t in pair]

    # ---- measuring -----------------------------------------------------------------------
    def _latencies(self, receiver: FastLeg, sender: FastLeg) -> list[float]:
        """One-way delay of each pulse `receiver` heard from `sender` (pulses 1 s apart)."""
        sent = self.senders[sender].pulses_sent
        samples = []
        for onset in receiver.onsets:
            before = [t for t in sent if t <= onset]
            if before and onset - before[-1] < 1.0:
                samples.append(onset - before[-1])
        return samples

    async def measure(
        self,
        n_calls: int,
        connect_times: list[float],
        recording: bool,
        supervision: str | None = None,
    ) -> dict:
        args = self.args
        if self.ticker is not None and self.ticker.done():
            self.ticker.result()  # the send clock died: raise its error, don't measure silence
        for sender in self.senders.values():
            sender.leg.reset_counters()
            sender.pulses_sent.clear()
        self.late.clear()
        rtts: list[float] = []
        cpu0, gen0, wall0 = process_cpu_s(args.server_pid), process_cpu_s(os.getpid()), time.time()
        by_process0 = {name: tree_cpu_s(pid) for name, pid in args.server_pids.items()}
        busy0 = core_busy_s(args.server_core), core_busy_s(args.generator_core)
        drops0 = udp_receive_buffer_errors()
        start = time.perf_counter()
        self.sound_until = start + args.window
        # Never cancel a probe mid-flight: its late reply would answer the next one.
        while time.perf_counter() < self.sound_until:
            if self.target is None:
                await asyncio.sleep(self.sound_until - time.perf_counter())
                break
            try:
                rtts.append(await self.target.ws_round_trip())
            except Exception as error:  # a dead probe is a result, not a crash
                logger.warning("ws probe failed: %r", error)
                rtts.append(float("inf"))
                await asyncio.sleep(0.5)
            await asyncio.sleep(min(0.1, max(self.sound_until - time.perf_counter(), 0)))
        wall1 = time.time()
        elapsed = time.perf_counter() - start
        cpu1, gen1 = process_cpu_s(args.server_pid), process_cpu_s(os.getpid())
        by_process1 = {name: tree_cpu_s(pid) for name, pid in args.server_pids.items()}
        busy1 = core_busy_s(args.server_core), core_busy_s(args.generator_core)
        rss = process_rss_mb(args.server_pid)
        await asyncio.sleep(args.drain)  # sound still in flight (and the lag file's flush)
        kernel_drops = udp_receive_buffer_errors() - drops0

        losses = {}
        for name, src, dst in (
            ("user_to_operator", "user", "operator"),
            ("operator_to_user", "operator", "user"),
        ):
            sent = sum(getattr(c, src).sent_sound for c in self.calls)
            got = sum(getattr(c, dst).received_sound for c in self.calls)
            losses[name] = max(0.0, 1 - got / sent) if sent else None
        bridge = [
            x
            for c in self.calls
            if c.user.detector
            for x in self._latencies(c.operator, c.user) + self._latencies(c.user, c.operator)
        ]
        direct = []
        if self.direct:
            a, b = self.direct
            direct = self._latencies(a, b) + self._latencies(b, a)
        direct_p50 = percentile(direct, 50) or 0.0
        server_cpu = (cpu1 - cpu0) / elapsed * 100
        # A multi-process server (cluster): each process's share; the server is their sum.
        cpu_by_process = {
            name: round((by_process1[name] - by_process0[name]) / elapsed * 100, 1)
            for name in args.server_pids
        }
        if cpu_by_process:
            server_cpu = sum(cpu_by_process.values())
        gen_cpu = (gen1 - gen0) / elapsed * 100
        per_call = server_cpu / n_calls if n_calls else None
        # What other processes took from our cores: a busy machine skews every number.
        others_server_core = (busy1[0] - busy0[0]) / elapsed * 100 - server_cpu
        others_generator_core = (busy1[1] - busy0[1]) / elapsed * 100 - gen_cpu
        late_p99 = percentile(self.late, 99)
        result: dict[str, Any] = {
            "target": args.target,
            "calls": n_calls,
            "recording": recording,
            "supervision": supervision,  # None, or the mode of the supervised calls
            "setup_failures": self.setup_failures,
            "send_failures": self.send_failures,
            "window_s": round(elapsed, 2),
            "server_cpu_pct": round(server_cpu, 1),
            "cpu_per_call_pct": round(per_call, 2) if per_call else None,
            "calls_per_core": round(100 / per_call, 1) if per_call else None,
            "generator_cpu_pct": round(gen_cpu, 1),
            **({"server_cpu_by_process": cpu_by_process} if cpu_by_process else {}),
            "others_on_server_core_pct": round(max(others_server_core, 0.0), 1),
            "others_on_generator_core_pct": round(max(others_generator_core, 0.0), 1),
            "loss_user_to_operator": losses["user_to_operator"],
            "loss_operator_to_user": losses["operator_to_user"],
            "latency_p50_ms": ms(percentile(bridge, 50)),
            "latency_p95_ms": ms(percentile(bridge, 95)),
            "latency_samples": len(bridge),
            "direct_p50_ms": ms(direct_p50),
            "added_p50_ms": ms(percentile(bridge, 50) - direct_p50) if bridge else None,
            "added_p95_ms": ms(percentile(bridge, 95) - direct_p50) if bridge else None,
            "offer_connected_p50_ms": ms(percentile(connect_times, 50)),
            "offer_connected_p95_ms": ms(percentile(connect_times, 95)),
            "ws_rtt_p99_ms": ms(percentile(rtts, 99)),
            "ws_samples": len(rtts),
            "loop_lag_p99_ms": loop_lag_p99(args.lag_file, wall0, wall1),
            "rss_mb": round(rss, 1),
            "udp_rcvbuf_drops": kernel_drops,
            "generator_late_p99_ms": ms(late_p99),
            # worst send-clock lateness since the step began: > 3 s during set-up and the
            # server sees connected legs go quiet (callbridge marks them disconnected)
            "generator_late_max_ms": ms(self.late_max),
            "server_legs": await self._server_leg_states(),
            "wall_start": wall0,
        }
        result["generator_limited"] = gen_cpu > 85 or (late_p99 or 0) > 0.020
        legs = result["server_legs"]
        result["server_legs_not_connected"] = (
            None if legs is None else sum(n for state, n in legs.items() if state != "connected")
        )
        return result

    async def _server_leg_states(self) -> dict[str, int] | None:
        """How the server sees the legs of open calls (callbridge only)."""
        try:
            return await self.target.leg_states() if self.target is not None else None
        except Exception as error:
            logger.warning("leg states: %r", error)
            return None

    async def record_all(self) -> None:
        await asyncio.gather(*(self.target.record(c.handle) for c in self.calls))

    async def stop_recordings(self, recorded_s: float) -> dict[str, Any]:
        """Stop every recording: the server CPU and wall time that took (rendering the
        files included; bench.report subtracts what the calls cost meanwhile)."""
        cpu0, started = process_cpu_s(self.args.server_pid), time.perf_counter()
        await asyncio.gather(*(self.target.stop_recording(c.handle) for c in self.calls))
        cpu_s = process_cpu_s(self.args.server_pid) - cpu0
        return {
            "stop_cpu_s": round(cpu_s, 2),
            "stop_s": round(time.perf_counter() - started, 2),
            "recorded_s": round(recorded_s, 1),
        }

    async def close(self) -> None:
        if self.target is not None:
            await asyncio.gather(
                *(self.target.hang_up(c.handle) for c in self.calls), return_exceptions=True
            )
        legs = [leg for c in self.calls for leg in (c.user, c.operator, c.supervisor) if leg]
        legs += list(self.direct or ())
        await asyncio.gather(*(leg.close() for leg in legs), return_exceptions=True)


def loop_lag_p99(path: str | None, since: float, until: float) -> float | None:
    """p99 of the server's loop-lag samples (calls/loop_lag.py) taken in [since, until]."""
    if not path or not Path(path).exists():
        return None
    lags = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and since <= float(parts[0]) <= until:
            lags.append(float(parts[1]))
    return round(percentile(lags, 99), 2) if lags else None


def held(step: dict, latency_bound_ms: float) -> tuple[bool, bool]:
    """(loss within bound, added latency within bound) for one step."""
    losses = [step["loss_user_to_operator"], step["loss_operator_to_user"]]
    loss_ok = all(loss is not None and loss < LOSS_BOUND for loss in losses)
    added = step["added_p95_ms"]
    return loss_ok, added is not None and added <= latency_bound_ms


async def run(args: argparse.Namespace) -> None:
    target: Target | None
    if args.target == "generator":
        target, args.server_pid = None, os.getpid()  # the "server" is this process
    elif args.target == "stock":
        target = StockTarget(args.url)
    else:
        # The supervisor's session comes in the environment (bench.media made it).
        supervisor = os.environ.get("BENCH_SUPERVISOR_SESSION", "")
        target = CallbridgeTarget(args.url, args.token, supervisor)
    generator = Generator(target, args)
    ticker = generator.ticker = asyncio.get_running_loop().create_task(generator.tick())
    first: dict | None = None  # the first step: is this path over the bound when idle?
    try:
        await generator.start_direct_pair()
        if args.burst:
            # From zero, as after a restart: the burst, then one measured window of it.
            burst = await generator.burst(args.burst)
            await asyncio.sleep(args.settle)
            step = await generator.measure(len(generator.calls), [], recording=False)
            step.update(burst, requested_calls=args.burst, kind="burst")
            print(json.dumps(step), flush=True)
            return
        for n in args.steps:
            connect_times = await generator.add_calls(n - len(generator.calls))
            await asyncio.sleep(args.settle)
            step = await generator.measure(len(generator.calls), connect_times, recording=False)
            step["requested_calls"] = n
            if args.setup_probes:
                probes = await generator.probe_setups(args.setup_probes, args.probe_interval)
                step["probe_offer_connected_p50_ms"] = ms(percentile(probes, 50))
                step["probe_offer_connected_p95_ms"] = ms(percentile(probes, 95))
                step["probe_setups"] = len(probes) // 2
            loss_ok, latency_ok = held(step, args.latency_bound)
            step.update(loss_ok=loss_ok, latency_ok=latency_ok)
            first = first or step
            # A path over the latency bound even at its first step (a decoding jitter
            # buffer) is ramped on loss and on latency growth under load instead (median:
            # one scheduling hiccup on a shared machine should not end the ramp).
            growth_ok = (
                not first["latency_ok"]
                and step["added_p50_ms"] is not None
                and first["added_p50_ms"] is not None
                and step["added_p50_ms"] <= first["added_p50_ms"] + args.latency_bound
            )
            step["growth_ok"] = growth_ok
            step["ramp_ok"] = loss_ok and (latency_ok or growth_ok) and not step["setup_failures"]
            print(json.dumps(step), flush=True)
            if args.record_at and n == args.record_at and args.target != "stock":
                recording_since = time.perf_counter()
                await generator.record_all()
                await asyncio.sleep(args.settle)
                recorded = await generator.measure(len(generator.calls), [], recording=True)
                recorded.update(
                    requested_calls=n, loss_ok=None, latency_ok=None, growth_ok=None, ramp_ok=None
                )
                try:
                    recorded.update(
                        await generator.stop_recordings(time.perf_counter() - recording_since)
                    )
                except Exception as error:  # report the rest of the step anyway
                    logger.warning("stopping the recordings failed: %r", error)
                    recorded["stop_error"] = repr(error)
                print(json.dumps(recorded), flush=True)
                break  # recordings stay on: this run ends here
            if args.supervise_at and n == args.supervise_at and args.target != "stock":
                for supervised_step in await supervised_steps(generator, n):
                    print(json.dumps(supervised_step), flush=True)
                break  # supervisors stay on: this run ends here
            if not step["ramp_ok"] and not args.keep_going:
                break
    finally:
        ticker.cancel()
        await generator.close()
        if target is not None:
            await target.close()


async def supervised_steps(generator: Generator, n: int) -> list[dict]:
    """The same `n` calls with a supervisor monitoring every `--supervise-every`-th (its
    two forwarded tracks received), then with each of those supervisors whispering (the
    operator's ear mixed), then barging (both parties' ears mixed)."""
    args = generator.args
    supervised = await generator.add_supervisors(args.supervise_every)
    steps = []
    for mode in ("monitor", "whisper", "barge"):
        if mode != "monitor":
            await generator.switch(supervised, mode)
        await asyncio.sleep(args.settle)
        step = await generator.measure(n, [], recording=False, supervision=mode)
        step.update(
            requested_calls=n,
            supervised_calls=len(supervised),
            supervisor_tracks_received=generator.supervisor_tracks(supervised),
            loss_ok=None,
            latency_ok=None,
            growth_ok=None,
            ramp_ok=None,
        )
        steps.append(step)
    return steps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="bench load generator (run by bench.media)")
    parser.add_argument(
        "--target", required=True, help="callbridge, callbridge-decode, stock or generator"
    )
    parser.add_argument("--url", default="", help="http://… (callbridge) or ws://… (stock)")
    parser.add_argument("--token", default="", help="callbridge API token")
    parser.add_argument("--server-pid", type=int, default=0)
    parser.add_argument(
        "--server-pids",
        type=named_pids,
        default={},
        help="name=pid,… of a multi-process server: CPU per process (and their sum)",
    )
    parser.add_argument("--lag-file", default=None)
    parser.add_argument("--server-core", type=int, default=0, help="for the busy-core check")
    parser.add_argument("--generator-core", type=int, default=1)
    parser.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")], required=True)
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per step")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--drain", type=float, default=1.5)
    parser.add_argument("--parallel", type=int, default=10, help="calls set up at once")
    parser.add_argument("--probe-calls", type=int, default=4, help="calls whose legs decode")
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument("--latency-bound", type=float, default=20.0, help="ms, added p95")
    parser.add_argument("--record-at", type=int, default=None)
    parser.add_argument(
        "--supervise-at", type=int, default=None, help="N for supervisors monitoring vs none"
    )
    parser.add_argument("--supervise-every", type=int, default=10, help="every k-th call")
    setup_profile.add_probe_arguments(parser)
    parser.add_argument(
        "--burst", type=int, default=0, help="only: this many calls asked for at once"
    )
    parser.add_argument("--keep-going", action="store_true", help="run every step")
    parser.add_argument("--no-uvloop", action="store_true")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.no_uvloop:
        asyncio.run(run(args))
        return
    import uvloop

    uvloop.run(run(args))


if __name__ == "__main__":
    main()
