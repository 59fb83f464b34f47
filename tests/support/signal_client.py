"""A PolyAI-style signaling client over Channels' WebsocketCommunicator (or a real socket)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

from channels.testing import WebsocketCommunicator


class SignalClient:
    def __init__(self, application: Any, path: str = "/ws/signal", origin: str | None = None):
        # A browser page on `origin` talks to the server it came from: same Host.
        headers = []
        if origin:
            headers = [(b"origin", origin.encode()), (b"host", urlsplit(origin).netloc.encode())]
        self.communicator = WebsocketCommunicator(application, path, headers=headers)
        self.received: list[dict[str, Any]] = []

    async def connect(self) -> None:
        connected, _ = await self.communicator.connect(timeout=5)
        assert connected

    async def send(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        await self.communicator.send_to(text_data=text)

    async def receive(self, within: float = 5.0) -> dict[str, Any]:
        message = json.loads(await self.communicator.receive_from(timeout=within))
        self.received.append(message)
        return message

    async def expect(self, kind: str, name: str | None = None, within: float = 8.0) -> dict:
        """Read until a message of `kind` (and event `name`) arrives; fail on errors meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {kind} {name or ''} within {within}s: {self.received}")
            message = await self.receive(remaining)
            if message["type"] == kind and (name is None or message["data"].get("name") == name):
                return message
            if message["type"] == "error" and kind != "error":
                raise AssertionError(f"unexpected error while waiting for {kind}: {message}")

    async def nothing_more(self, within: float = 0.3) -> None:
        assert await self.communicator.receive_nothing(timeout=within), self.communicator

    async def drain(self, quiet_for: float = 0.5) -> list[dict[str, Any]]:
        """Everything that arrives until the socket is quiet for `quiet_for` seconds."""
        messages = []
        while not await self.communicator.receive_nothing(timeout=quiet_for):
            messages.append(await self.receive())
        return messages

    def events(self) -> list[str]:
        return [m["data"]["name"] for m in self.received if m["type"] == "event"]

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

    async def close(self) -> None:
        await self.communicator.disconnect(timeout=5)


def staff_cookie(username: str = "alice") -> str:
    """A Cookie header value for a logged-in staff user (sync: call via sync_to_async)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from calls.operators import operators_group

    user, _ = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True})
    user.groups.add(operators_group())
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def operator_feed(application: Any, username: str) -> SignalClient:
    """A staff operator's /ws/operator socket, as their dashboard opens it (its first
    message, the snapshot, is still to be read)."""
    from asgiref.sync import sync_to_async

    cookie = await sync_to_async(staff_cookie)(username)
    client = SignalClient(application, "/ws/operator", origin="http://localhost")
    client.communicator.scope["headers"].append((b"cookie", cookie.encode()))
    await client.connect()
    return client
