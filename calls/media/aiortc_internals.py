"""Every use of aiortc/aioice internals lives here (versions pinned exactly in pyproject).

tests/test_aiortc_internals.py fails loudly if an upgrade moves what this relies on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import aioice.ice

_original_get_host_addresses: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
_advertised: list[str] = []


def _filtered_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if not _advertised:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return [
        address
        for address in _advertised
        if (":" in address and use_ipv6) or (":" not in address and use_ipv4)
    ]


def advertise_host_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates only on `addresses` (empty: aioice's default).

    aioice has no option for this, and never offers 127.0.0.1 by itself; its gatherer
    calls the module-level `aioice.ice.get_host_addresses`, which we wrap. Process-wide.
    """
    _advertised[:] = list(addresses)
    aioice.ice.get_host_addresses = _filtered_host_addresses
