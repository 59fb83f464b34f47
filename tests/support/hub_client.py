"""A SignalR JSON-protocol client for Voisnap's WebRtcHub over Channels' WebsocketCommunicator
(the wire as `@microsoft/signalr` speaks it; the real JS client runs in the browser test)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

from channels.testing import WebsocketCommunicator

RS = "\x1e"


class HubClient:
    def __init__(self, application: Any, **query: str) -> None:
        path = "/hubs/webrtc" + (f"?{urlencode(query)}" if query else "")
        self.communicator = WebsocketCommunicator(application, path)
        self.received: list[dict[str, Any]] = []
        self._next_id = 0

    async def connect(self, handshake: bool = True) -> dict[str, Any] | None:
        connected, _ = await self.communicator.connect(timeout=5)
        assert connected
        if not handshake:
            return None
        await self.send_raw('{"protocol":"json","version":1}' + RS)
        return await self.receive()

    async def send_raw(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(message) + RS)

    async def receive(self, within: float = 5.0) -> dict[str, Any]:
        """The next record (frames may carry several: each comes out on its own)."""
        if not getattr(self, "_pending", None):
            text = await self.communicator.receive_from(timeout=within)
            assert text.endswith(RS), text
            self._pending = [json.loads(part) for part in text.split(RS)[:-1]]
        message = self._pending.pop(0)
        self.received.append(message)
        return message

    async def invoke(self, target: str, *arguments: Any) -> str:
        self._next_id += 1
        invocation_id = str(self._next_id)
        await self.send(
            {"type": 1, "invocationId": invocation_id, "target": target, "arguments": arguments}
        )
        return invocation_id

    async def expect(self, within: float = 8.0, **fields: Any) -> dict[str, Any]:
        """Read until a record with these fields arrives (pings and others skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {fields} within {within}s: {self.received}")
            message = await self.receive(remaining)
            if all(message.get(key) == value for key, value in fields.items()):
                return message

    async def completion(self, invocation_id: str, within: float = 8.0) -> dict[str, Any]:
        return await self.expect(within, type=3, invocationId=invocation_id)

    async def event(self, target: str, within: float = 8.0) -> Any:
        return (await self.expect(within, type=1, target=target))["arguments"][0]

    async def closed(self, within: float = 5.0) -> dict[str, Any]:
        """The close message, then the socket's close."""
        message = await self.expect(within, type=7)
        output = await self.communicator.receive_output(timeout=within)
        assert output["type"] == "websocket.close", output
        return message

    async def close(self) -> None:
        await self.communicator.disconnect(timeout=5)
