"""The webhook sender: a background task of every serving process (calls.background).

Claims due deliveries from the outbox (calls.webhooks.outbox, in database threads), POSTs
each signed (Standard Webhooks) with a timeout, records the outcome. Sleeps until the
next retry is due, at most CALLBRIDGE_WEBHOOK_RECHECK_S (other processes' events, leases
of a sender that died), and is woken by deliveries queued or settled in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from calls.model_signals import webhooks_queued
from calls.webhooks import outbox, signing

logger = logging.getLogger(__name__)

USER_AGENT = "callbridge-webhooks/1"


class AddressRefused(Exception):
    pass


async def check_address(url: str, allow_private: bool) -> None:
    """Every address the host resolves to must be allowed (SSRF), checked before each
    request. (httpx resolves again: a DNS answer that changes in between is not caught;
    see docs/integrations.md.)"""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    addresses = {str(info[4][0]) for info in infos}
    refused = sorted(a for a in addresses if not signing.address_allowed(a, allow_private))
    if refused or not addresses:
        raise AddressRefused(f"address not allowed: {', '.join(refused) or 'none'}")


async def _excerpt(response: httpx.Response) -> str:
    """The start of an error answer's body, for the log (never the whole: it may be big)."""
    chunks = bytearray()
    async for chunk in response.aiter_bytes():
        chunks += chunk
        if len(chunks) >= outbox.ERROR_EXCERPT_CHARS:
            break
    return chunks[: outbox.ERROR_EXCERPT_CHARS].decode("utf-8", "replace")


class WebhookSender:
    error_backoff_s = 5.0

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        webhooks_queued.connect(self._on_queued, weak=False, dispatch_uid=id(self))
        timeout = httpx.Timeout(settings.CALLBRIDGE_WEBHOOK_TIMEOUT_S)
        try:
            # No proxies from the environment, no redirects (a 3xx is a failure: it could
            # lead anywhere, past the address check).
            async with httpx.AsyncClient(
                timeout=timeout, follow_redirects=False, trust_env=False
            ) as client:
                while True:
                    self._wake.clear()
                    delay = await self._sweep(client)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
        finally:
            webhooks_queued.disconnect(dispatch_uid=id(self))
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _sweep(self, client: httpx.AsyncClient) -> float:
        recheck = float(settings.CALLBRIDGE_WEBHOOK_RECHECK_S)
        free = settings.CALLBRIDGE_WEBHOOK_CONCURRENCY - len(self._in_flight)
        if free <= 0:
            return recheck  # every slot busy: a finished request wakes us
        try:
            for claimed in await database_sync_to_async(outbox.claim)(timezone.now(), free):
                task = asyncio.create_task(self._deliver(client, claimed))
                self._in_flight.add(task)
                task.add_done_callback(self._done)
            upcoming = await database_sync_to_async(outbox.next_due)(timezone.now())
        except Exception:
            logger.exception("webhook outbox sweep failed; retrying")
            return self.error_backoff_s
        if upcoming is None:
            return recheck
        return min(max((upcoming - timezone.now()).total_seconds(), 0.05), recheck)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()  # a free slot; the call's next event may be due

    async def _deliver(self, client: httpx.AsyncClient, claimed: outbox.Claimed) -> None:
        started_at = timezone.now()
        started = time.monotonic()
        status_code: int | None = None
        error = ""
        try:
            await check_address(claimed.url, settings.CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE)
            stamp = int(time.time())
            headers = signing.headers(claimed.secret, claimed.message_id, stamp, claimed.body)
            headers["user-agent"] = USER_AGENT
            request = client.build_request(
                "POST", claimed.url, content=claimed.body, headers=headers
            )
            response = await client.send(request, stream=True)
            try:
                status_code = response.status_code
                if not 200 <= status_code < 300:
                    error = f"HTTP {status_code}: {await _excerpt(response)}"
            finally:
                await response.aclose()  # the rest of a body is never read
        except AddressRefused as refused:
            error = str(refused)
        except httpx.TimeoutException:
            error = f"timed out after {settings.CALLBRIDGE_WEBHOOK_TIMEOUT_S} s"
        except (httpx.HTTPError, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        duration_ms = int((time.monotonic() - started) * 1000)
        await self._record(claimed, started_at, duration_ms, status_code, error)

    async def _record(
        self,
        claimed: outbox.Claimed,
        started_at: datetime,
        duration_ms: int,
        status_code: int | None,
        error: str,
    ) -> None:
        try:
            await database_sync_to_async(outbox.record)(
                claimed.delivery_id, started_at, duration_ms, status_code, error
            )
        except Exception:
            # The lease expires and the delivery goes again (same webhook-id).
            logger.exception("could not record webhook delivery %s", claimed.message_id)

    def _on_queued(self, sender: Any, **kwargs: Any) -> None:
        # On commit, from whichever thread queued deliveries.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)
