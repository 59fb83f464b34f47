"""Webhooks over real HTTP from a real `manage.py serve`: the receiver is down, then slow
(beyond the sender's timeout), then up, and the server is SIGKILLed and restarted on the
way. Every call event arrives, in order per call, with a signature the Standard Webhooks
library verifies; a retry repeats the same `webhook-id` and bytes (receivers dedupe)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.live_server import Server, running_server
from tests.support.webhook_receiver import Received, WebhookReceiver

pytestmark = pytest.mark.daphne

ENV = {
    "CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on 127.0.0.1
    "CALLBRIDGE_WEBHOOK_TIMEOUT_S": "1",
    "CALLBRIDGE_WEBHOOK_RETRY_BASE_MS": "100",
    "CALLBRIDGE_WEBHOOK_RETRY_MAX_S": "1",
    "CALLBRIDGE_WEBHOOK_RECHECK_S": "1",
    "CALLBRIDGE_RING_TIMEOUT_S": "1",  # every call ends by itself (missed)
}

ADD_ENDPOINT = """
from calls.models import WebhookEndpoint
from calls.webhooks import signing
secret = signing.new_secret()
WebhookEndpoint.objects.create(url={url!r}, secret=secret, description="crm")
print(secret)
"""


def query(data_dir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the server's SQLite database as it is now (read-only)."""
    uri = f"file:{data_dir / 'db.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return db.execute(sql, params).fetchall()


async def wait_for(what: str, check: Callable[[], bool], within: float = 60) -> None:
    # Polls the server's database (another process: nothing to wait on); a TimeoutError
    # here means `what` never happened.
    async with asyncio.timeout(within):
        while not await asyncio.to_thread(check):  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def ring(server: Server, token: str) -> str:
    """A call from a new end user that rings, then ends by itself (nobody answers)."""
    status, session, _ = await asyncio.to_thread(
        server.request, "POST", "/api/sessions", token, {"displayName": "Ada"}
    )
    assert status == 201, session
    status, call, _ = await asyncio.to_thread(
        server.request, "POST", "/api/calls", session["sessionToken"], {}
    )
    assert status == 201, call
    return str(call["callID"])


def attempts_failing_with(data_dir: Path, start: str) -> int:
    attempts = query(data_dir, "SELECT error FROM calls_webhookattempt")
    return sum(1 for (error,) in attempts if error.startswith(start))


def all_settled(data_dir: Path) -> bool:
    """No call rings any more, each event has its delivery and none is pending."""
    [(ringing, events, deliveries, pending)] = query(
        data_dir,
        "SELECT (SELECT COUNT(*) FROM calls_call WHERE state = 'ringing'),"
        " (SELECT COUNT(*) FROM calls_callevent), (SELECT COUNT(*) FROM calls_webhookdelivery),"
        " (SELECT COUNT(*) FROM calls_webhookdelivery WHERE state = 'pending')",
    )
    return ringing == 0 and events == deliveries and pending == 0


async def test_it_delivers_every_event_in_order_past_a_down_slow_receiver_and_a_killed_server(
    tmp_path: Path,
) -> None:
    receiver = WebhookReceiver(slow_s=3)
    calls: list[str] = []
    try:
        with running_server(tmp_path, **ENV) as server:
            printed = await asyncio.to_thread(
                server.manage, "shell", "-c", ADD_ENDPOINT.format(url=receiver.url)
            )
            secret = printed.strip().splitlines()[-1]
            made = await asyncio.to_thread(server.manage, "createapitoken", "t", "--quiet")
            token = made.strip()
            # Down: connections refused, retried with backoff.
            calls += [await ring(server, token), await ring(server, token)]
            await wait_for("refused", lambda: attempts_failing_with(tmp_path, "ConnectError") >= 3)
            # Slow: requests arrive but time out at the sender; sent again, same id.
            await receiver.start("slow")
            await wait_for("timeouts", lambda: attempts_failing_with(tmp_path, "timed out") >= 2)
            calls.append(await ring(server, token))
            assert server.process is not None
            server.process.send_signal(signal.SIGKILL)  # mid-way: requests in flight
            assert await asyncio.to_thread(server.process.wait, 10) == -signal.SIGKILL
        assert not all_settled(tmp_path)
        receiver.mode = "up"
        with running_server(tmp_path, **ENV) as restarted:
            calls.append(await ring(restarted, token))
            await wait_for("everything delivered", lambda: all_settled(tmp_path), within=90)
            events = query(tmp_path, "SELECT id, call_id, name FROM calls_callevent ORDER BY id")
    finally:
        await receiver.stop()

    # What the server recorded while stopping (legs closing) is queued for its next start.
    assert query(
        tmp_path,
        "SELECT COUNT(*) FROM calls_callevent e LEFT JOIN calls_webhookdelivery d"
        " ON d.event_id = e.id WHERE d.id IS NULL",
    ) == [(0,)]
    assert {call_id.replace("-", "") for _, call_id, _ in events} == {
        c.replace("-", "") for c in calls
    }
    by_id: dict[str, Received] = {}
    first_arrivals: dict[str, list[int]] = defaultdict(list)
    verifier = Webhook(secret)
    for received in receiver.received:
        body = verifier.verify(received.body, received.headers)  # raises if not signed by us
        message_id = received.headers["webhook-id"]
        if message_id in by_id:
            assert by_id[message_id].body == received.body  # a retry: same id, same bytes
            continue
        by_id[message_id] = received
        first_arrivals[body["data"]["callID"]].append(body["data"]["eventID"])
    # Every event arrived, each under one webhook-id; in each call, in the order recorded.
    assert sorted(e for ids in first_arrivals.values() for e in ids) == [e[0] for e in events]
    for call_id, event_ids in first_arrivals.items():
        assert event_ids == sorted(event_ids), call_id
    assert len(receiver.received) > len(by_id)  # the slow phase made retries
    assert {r.mode for r in receiver.received} == {"slow", "up"}
    names = {json.loads(r.body)["type"] for r in receiver.received}
    assert {"call.created", "queue.joined", "call.ended"} <= names
    delivered = query(
        tmp_path,
        "SELECT COUNT(*), MIN(last_status_code), MAX(last_status_code) FROM calls_webhookdelivery"
        " WHERE state = 'delivered' AND event_id <= ?",
        events[-1][0],
    )
    assert delivered == [(len(events), 204, 204)]
