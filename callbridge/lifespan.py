"""Starts the background services under any ASGI server.

Servers with the lifespan protocol (uvicorn) start them at start-up; daphne, which has
none, starts them at its first connection unless `manage.py serve` already did.
"""

from __future__ import annotations

from typing import Any

from calls.background import background_tasks

Scope = dict[str, Any]


class ServicesLifespan:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        background_tasks.ensure_started()
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                background_tasks.ensure_started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await background_tasks.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
