"""Random UDP packet loss with nftables, inside the test run's own loopback-only network
namespace (tools/run-tests) — never the machine's own firewall."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

TABLE = "callbridge_loss"


def loss_available() -> bool:
    only_loopback = [name for _, name in socket.if_nameindex()] == ["lo"]
    return bool(shutil.which("nft")) and os.geteuid() == 0 and only_loopback


@contextmanager
def udp_loss(percent: int) -> Iterator[None]:
    """About `percent` % of UDP packets vanish (on lo each packet passes `input` once)."""
    assert loss_available(), "needs root, nft and a loopback-only netns"
    rules = f"""
    table inet {TABLE} {{
        chain input {{
            type filter hook input priority 0;
            meta l4proto udp numgen random mod 100 < {percent} drop;
        }}
    }}
    """
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, timeout=5)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", TABLE], check=True, timeout=5)
