"""A webhook receiver on 127.0.0.1 for tests: a tiny HTTP/1.1 server that records every
request and answers 204, or answers only after `slow_s` (beyond the sender's timeout) in
"slow" mode. Not started: the port refuses connections (a receiver that is down)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from callbridge.local_server import free_port


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: str
    mode: str


class WebhookReceiver:
    def __init__(self, slow_s: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/callbridge"
        self.slow_s = slow_s
        self.mode = "up"
        self.received: list[Received] = []
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, mode: str) -> None:
        self.mode = mode
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in self._connections:
                connection.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            async with asyncio.timeout(30):
                while await self._one_request(reader, writer):
                    pass
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the sender gave up on us (slow mode) or closed its connection
        finally:
            writer.close()
            self._connections.discard(task)

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        mode = self.mode
        self.received.append(Received(headers, body.decode(), mode))
        if mode == "slow":
            await asyncio.sleep(self.slow_s)
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        return True
