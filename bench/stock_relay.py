"""The baseline: a minimal two-party relay on aiortc's stock media path, nothing else.

Each leg's received track is decoded by aiortc, fanned out by
`aiortc.contrib.media.MediaRelay`, and re-encoded (Opus) by the other leg's sender — what
an aiortc server does out of the box. Signaling is one JSON message per WebSocket message:

  {"type": "offer", "call", "role", "sdp"} → {"type": "answer", "sdp"}
  {"type": "hangup", "call"}               → {"type": "ended"}
  {"type": "ping"}                         → {"type": "pong"}   (the bench's WS probe)

Run: python -m bench.stock_relay --port 8765 (CALLBRIDGE_LOOP_LAG_FILE samples loop lag).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from calls import loop_lag
from calls.media.aiortc_internals import advertise_host_addresses

logger = logging.getLogger("stock_relay")


class OtherParty(MediaStreamTrack):
    """What one leg hears: the other leg's relayed track, once that leg has sent one."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.source: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        return await (await self.source).recv()


@dataclass
class Leg:
    pc: RTCPeerConnection
    hears: OtherParty
    sends: MediaStreamTrack | None = None


class StockRelay:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.calls: dict[str, dict[str, Leg]] = {}

    def _link(self, legs: dict[str, Leg]) -> None:
        """Each leg hears the other's track, as soon as both exist."""
        for role, other in (("user", "operator"), ("operator", "user")):
            if role not in legs or other not in legs or legs[role].hears.source.done():
                continue
            if legs[other].sends is not None:
                legs[role].hears.source.set_result(self.relay.subscribe(legs[other].sends))

    async def offer(self, call_id: str, role: str, sdp: str) -> str:
        legs = self.calls.setdefault(call_id, {})
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        leg = legs[role] = Leg(pc, OtherParty())

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            leg.sends = track
            self._link(legs)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        pc.addTrack(leg.hears)
        await pc.setLocalDescription(await pc.createAnswer())
        self._link(legs)
        return pc.localDescription.sdp

    async def hang_up(self, call_id: str) -> None:
        for leg in self.calls.pop(call_id, {}).values():
            leg.hears.stop()
            await leg.pc.close()

    async def handle(self, ws: Any) -> None:
        async for raw in ws:
            message = json.loads(raw)
            kind = message.get("type")
            try:
                if kind == "ping":
                    reply: dict[str, Any] = {"type": "pong"}
                elif kind == "offer":
                    sdp = await self.offer(message["call"], message["role"], message["sdp"])
                    reply = {"type": "answer", "sdp": sdp}
                elif kind == "hangup":
                    await self.hang_up(message["call"])
                    reply = {"type": "ended"}
                else:
                    reply = {"type": "error", "message": f"unknown type {kind!r}"}
            except Exception as error:  # report it to the client, keep serving
                logger.exception("request failed")
                reply = {"type": "error", "message": str(error)}
            await ws.send(json.dumps(reply))


async def serve(port: int) -> None:
    advertise_host_addresses(["127.0.0.1"])
    loop_lag.start_from_env(asyncio.get_running_loop())
    relay = StockRelay()
    async with websockets.serve(relay.handle, "127.0.0.1", port, max_size=2**20):
        print(f"stock relay on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
