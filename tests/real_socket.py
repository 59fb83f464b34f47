"""/ws/signal over a real TCP WebSocket (for tests against real daphne processes)."""

from __future__ import annotations

import asyncio
import json
from typing import Any


class RealSocket:
    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.received: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
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
