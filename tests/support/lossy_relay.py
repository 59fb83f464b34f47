"""A UDP relay in front of one test peer that loses and delays its RTP, on 127.0.0.1 only.

Only that peer's leg suffers (unlike netem on `lo`, which would hit every leg). The peer's
offer and the server's answer are rewritten so each side's only candidate is a relay
socket: the server talks to `server_side`, the peer to `client_side`, and the relay passes
datagrams between them. STUN, DTLS and RTCP always pass (the connection stays up); RTP is
dropped with probability `loss` (a seeded generator: the same run drops the same packets);
every datagram is delayed by `delay_s`, both ways.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from typing import cast

_CANDIDATE = re.compile(r"(a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 )(\d+)( typ host)")


def _is_rtp(data: bytes) -> bool:
    # RFC 7983: 128-191 is RTP/RTCP; RFC 5761: RTCP packet types sit at 192-223.
    return len(data) >= 12 and 127 < data[0] < 192 and not 192 <= data[1] <= 223


class _Side(asyncio.DatagramProtocol):
    def __init__(self, forward: Callable[[bytes], None]) -> None:
        self.forward = forward
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.forward(data)


class LossyRelay:
    def __init__(self, seed: int = 17) -> None:
        self.loss = 0.0
        self.delay_s = 0.0
        self.dropped = 0
        self._random = random.Random(seed)
        self._peer: tuple[str, int] | None = None  # the test peer's real address
        self._server: tuple[str, int] | None = None  # the server's
        self._server_side = _Side(lambda data: self._pass(data, self._client_side, self._peer))
        self._client_side = _Side(lambda data: self._pass(data, self._server_side, self._server))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for side in (self._server_side, self._client_side):
            await loop.create_datagram_endpoint(lambda side=side: side, local_addr=("127.0.0.1", 0))

    def _port(self, side: _Side) -> int:
        assert side.transport is not None
        return int(side.transport.get_extra_info("sockname")[1])

    def offer(self, sdp: str) -> str:
        """The peer's offer, its candidate replaced by the relay's server side."""
        self._peer, rewritten = self._swap(sdp, self._port(self._server_side))
        return rewritten

    def answer(self, sdp: str) -> str:
        """The server's answer, its candidate replaced by the relay's client side."""
        self._server, rewritten = self._swap(sdp, self._port(self._client_side))
        return rewritten

    @staticmethod
    def _swap(sdp: str, port: int) -> tuple[tuple[str, int], str]:
        found = _CANDIDATE.findall(sdp)
        assert len(found) == 1, f"expected one 127.0.0.1 host candidate, got {found}"
        rewritten = _CANDIDATE.sub(lambda m: f"{m.group(1)}{port}{m.group(3)}", sdp)
        return ("127.0.0.1", int(found[0][1])), rewritten

    def _pass(self, data: bytes, out: _Side, to: tuple[str, int] | None) -> None:
        if to is None or out.transport is None:
            return
        if _is_rtp(data) and self._random.random() < self.loss:
            self.dropped += 1
            return
        if self.delay_s > 0:  # everything: RTCP too, so the round trip it measures grows
            transport = out.transport
            asyncio.get_running_loop().call_later(self.delay_s, transport.sendto, data, to)
            return
        out.transport.sendto(data, to)

    def close(self) -> None:
        for side in (self._server_side, self._client_side):
            if side.transport is not None:
                side.transport.close()
