"""/ws/signal (or another signaling path) over a real TCP WebSocket (for tests against real
daphne processes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import websockets

from tests.support.live_server import Server


class RealSocket:
    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.received: list[dict[str, Any]] = []

    @classmethod
    async def open(
        cls, server: Server, within: float = 10.0, path: str = "/ws/signal"
    ) -> RealSocket:
        url = server.url.replace("http://", "ws://") + path
        return cls(await websockets.connect(url, open_timeout=within, close_timeout=2))

    async def send(self, message: dict[str, Any]) -> None:
        async with asyncio.timeout(5):
            await self.connection.send(json.dumps(message))

    async def expect(self, kind: str, name: str | None = None, within: float = 10.0) -> dict:
        """Read until a message of `kind` (and event `name`); an error meanwhile fails."""

        async def read() -> dict:
            while True:
                message = json.loads(await self.connection.recv())
                self.received.append(message)
                if message["type"] == "error" and kind != "error":
                    raise AssertionError(message)
                if message["type"] == kind and (name is None or message["data"]["name"] == name):
                    return message

        try:
            async with asyncio.timeout(within):
                return await read()
        except TimeoutError:
            raise AssertionError(
                f"no {kind} {name or ''} within {within}s: {self.received}"
            ) from None

    async def offer(self, token: str, sdp: str, **fields: Any) -> dict[str, Any]:
        await self.send(
            {
                "type": "offer",
                "sessionId": "",
                "authToken": token,
                "data": {"type": "offer", "sdp": sdp},
                **fields,
            }
        )
        return await self.expect("answer")

    async def register(self, token: str) -> dict[str, Any]:
        await self.send({"type": "register", "sessionId": "", "authToken": token})
        return await self.expect("event", "registered")

    async def read_until_closed(self, within: float = 5.0) -> list[dict[str, Any]]:
        """What the server sent until it closed the socket."""
        messages = []
        async with asyncio.timeout(within):
            with contextlib.suppress(websockets.ConnectionClosed):
                async for text in self.connection:
                    messages.append(json.loads(text))
        self.received += messages
        return messages

    def drop(self) -> None:
        """The network under the socket goes away: no close frame, the TCP connection is
        just cut (as a phone losing its signal or a killed tab looks to the server)."""
        self.connection.transport.abort()

    async def close(self) -> None:
        async with asyncio.timeout(5):
            await self.connection.close()
