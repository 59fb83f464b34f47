"""Sockets that stand on a credential close when it dies (calls.revocation).

A consumer using this mixin says which groups its credential's pushes arrive on and how to
read its current standing. It then closes with `error UNAUTHORIZED` (close code 4401) when a
push finds the credential dead, when its expiry timer fires, or when a message it handles
finds it dead (`credential_alive()`). Events on the fast path (calls.consumers.dispatch)
ask `credential_usable_now()`, which reads no database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import timezone

from calls.errors import CallbridgeError, ErrorCode
from calls.revocation import Standing
from calls.signaling import protocol

CLOSE_UNAUTHORIZED = 4401

# A mixin for WebSocket consumers: mypy checks it as one (send and close are the consumer's).
if TYPE_CHECKING:
    _Consumer = AsyncWebsocketConsumer
else:
    _Consumer = object


class CredentialWatch(_Consumer):
    _credential_groups: set[str]
    _credential_timer: asyncio.TimerHandle | None = None
    _expiry_check: asyncio.Future | None = None
    _credential_standing: Standing | None = None
    credential_dead: bool = False

    async def current_standing(self) -> Standing:
        """The credential's state as stored now (override: a database read)."""
        raise NotImplementedError

    async def leave_groups(self) -> None:
        """Stop receiving anything (override to leave the consumer's own groups too)."""
        await self._leave_credential_groups()

    async def watch_credential(self, groups: list[str], standing: Standing) -> None:
        if not hasattr(self, "_credential_groups"):
            self._credential_groups = set()
        for group in groups:
            if group not in self._credential_groups:
                await self.channel_layer.group_add(group, self.channel_name)
                self._credential_groups.add(group)
        self._arm(standing)

    def credential_usable_now(self) -> bool:
        """No database: dead by a push, or past the expiry seen at the last check."""
        if self.credential_dead:
            return False
        until = self._credential_standing.until if self._credential_standing else None
        return until is None or timezone.now() < until

    async def credential_alive(self) -> bool:
        """Re-read the credential; a dead one closes the socket (and answers False)."""
        if self.credential_dead:
            return False
        standing = await self.current_standing()
        if not standing.alive:
            await self.credential_died(standing.reason)
            return False
        self._arm(standing)
        return True

    async def credential_check(self, message: dict[str, Any]) -> None:
        """Channel-layer push from calls.revocation: something about the credential changed
        (re-read it), or it has `ended` (a logout: nothing left to read)."""
        if message.get("ended"):
            await self.credential_died(str(message["ended"]))
        else:
            await self.credential_alive()

    async def credential_died(self, reason: str) -> None:
        if self.credential_dead:
            return
        self.credential_dead = True
        self._disarm()
        await self.leave_groups()
        error = CallbridgeError(ErrorCode.UNAUTHORIZED, reason)
        with contextlib.suppress(Exception):  # the client may already be gone
            await self.send(text_data=json.dumps(protocol.error("", error)))
            await self.close(code=CLOSE_UNAUTHORIZED)

    async def stop_watching(self) -> None:
        """From disconnect(): no timer, no groups left behind."""
        self._disarm()
        await self._leave_credential_groups()

    # --- expiry timer ----------------------------------------------------------------------
    # A TimerHandle, not a sleeping task per socket: nothing runs until it fires.
    def _arm(self, standing: Standing) -> None:
        self._credential_standing = standing
        self._disarm()
        if standing.until is not None:
            delay = max(0.0, (standing.until - timezone.now()).total_seconds())
            loop = asyncio.get_running_loop()
            self._credential_timer = loop.call_later(delay, self._expiry_due)

    def _disarm(self) -> None:
        timer, self._credential_timer = self._credential_timer, None
        if timer is not None:
            timer.cancel()

    def _expiry_due(self) -> None:
        self._credential_timer = None
        # Re-read rather than assume: the expiry may have been moved meanwhile.
        self._expiry_check = asyncio.ensure_future(self.credential_alive())

    async def _leave_credential_groups(self) -> None:
        for group in getattr(self, "_credential_groups", set()):
            await self.channel_layer.group_discard(group, self.channel_name)
        self._credential_groups = set()
