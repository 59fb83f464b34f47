"""Counting what a call may leak: peer connections, asyncio tasks, UDP sockets."""

from __future__ import annotations

import asyncio
import gc
import os
from dataclasses import dataclass

from aiortc import RTCPeerConnection


def open_fds(pid: int | str = "self") -> int:
    """File descriptors a process has open (from /proc)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def udp_sockets(pid: int | str = "self") -> int:
    """UDP sockets a process (this one by default) has open (from /proc)."""
    mine = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    udp = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as rows:
            udp.update(line.split()[9] for line in rows.readlines()[1:])
    return len(mine & udp)


def open_peer_connections() -> int:
    gc.collect()
    return sum(
        1
        for obj in gc.get_objects()
        # type(), not isinstance(): dead weak proxies raise on isinstance
        if type(obj) is RTCPeerConnection and obj.connectionState != "closed"
    )


@dataclass(frozen=True)
class Resources:
    peer_connections: int
    tasks: int
    udp_sockets: int

    @classmethod
    def now(cls) -> Resources:
        return cls(open_peer_connections(), len(asyncio.all_tasks()), udp_sockets())


async def settle_to(baseline: Resources, within: float = 10.0) -> Resources:
    """Wait until usage is back to `baseline` (closing takes a few loop turns)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        current = Resources.now()
        if current == baseline or loop.time() > deadline:
            return current
        await asyncio.sleep(0.2)
