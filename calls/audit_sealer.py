"""Seals audit rows in batches in the background, off the transactions that wrote them.

Sealing (calls/models/audit_chain.py) takes the chain head's lock for a short transaction
of its own. Done after every commit, a call set-up sealed seven times — seven serialized
head-lock transactions per call, each waited for by the request that committed (issue 18's
profile: a fifth of the set-up's database work). While this service runs in a process,
a commit only asks it to seal; it seals every model asked for, at most every
`BATCH_DELAY_S`, in one transaction per model, so a burst of set-ups shares one seal.
Without it (management commands, plain scripts, tests without the serving services) the
commit seals in place, as before. A row is unsealed for at most about a second; a process
that dies meanwhile leaves rows the next seal (or `verify_audit --seal`) chains.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import ClassVar

from channels.db import database_sync_to_async

from calls.audit_verify import chained_models
from calls.models.audit_chain import ChainedModel, seal, seal_in_background

logger = logging.getLogger(__name__)

BATCH_DELAY_S = 0.25  # a seal waits this long for more commits to join it


class AuditSealer:
    active: ClassVar[AuditSealer | None] = None

    def __init__(self, batch_delay_s: float = BATCH_DELAY_S) -> None:
        self.batch_delay_s = batch_delay_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._wanted: set[type[ChainedModel]] = set()
        self._lock = threading.Lock()

    @classmethod
    def request(cls, model: type[ChainedModel]) -> bool:
        """Ask the running sealer to seal `model`'s new rows soon (from any thread);
        False if none runs here (the caller seals in place)."""
        sealer = cls.active
        loop = sealer._loop if sealer is not None else None
        if sealer is None or loop is None or loop.is_closed():
            return False
        with sealer._lock:
            sealer._wanted.add(model)
        loop.call_soon_threadsafe(sealer._wake.set)
        return True

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        AuditSealer.active = self
        seal_in_background(AuditSealer.request)
        with self._lock:  # rows a previous process left unsealed
            self._wanted.update(chained_models())
        self._wake.set()
        try:
            while True:
                await self._wake.wait()
                await asyncio.sleep(self.batch_delay_s)
                self._wake.clear()
                await self._seal_wanted()
        finally:
            if AuditSealer.active is self:
                AuditSealer.active = None
                seal_in_background(None)
            await asyncio.shield(self._seal_wanted())  # what the last commits asked for

    async def _seal_wanted(self) -> None:
        with self._lock:
            wanted, self._wanted = self._wanted, set()
        for model in sorted(wanted, key=lambda m: m._meta.label_lower):
            try:
                # Not the consumers' shared database thread: a thread of the loop's pool.
                await database_sync_to_async(seal, thread_sensitive=False)(model)
            except Exception:  # the rows stay unsealed: the next request seals them
                logger.exception("could not seal %s", model._meta.label_lower)
                with self._lock:
                    self._wanted.add(model)
