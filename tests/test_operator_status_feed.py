"""/ws/operator: operators set their availability there, and every feed hears of it."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from calls.models import Call, EndUserSession, OperatorStatus, Queue
from calls.principals import Principal
from tests.support.signal_client import SignalClient, operator_feed

pytestmark = [pytest.mark.django_db(transaction=True)]


async def dashboard(asgi_app: Any, username: str) -> SignalClient:
    return await operator_feed(asgi_app, username)


async def test_it_sets_availability_and_tells_every_feed(asgi_app: Any) -> None:
    await sync_to_async(Queue.objects.default)()  # a flushed database has none yet
    alice = await dashboard(asgi_app, "alice")
    bob = await dashboard(asgi_app, "bob")
    snapshot = (await bob.receive())["data"]
    assert {o["operator"]: o["availability"] for o in snapshot["operators"]} == {
        "alice": "offline",
        "bob": "offline",
    }
    assert [q["queue"] for q in snapshot["queues"]] == ["default"]
    assert snapshot["queues"][0]["members"] == ["alice", "bob"]  # every operator
    await alice.receive()

    await alice.send({"type": "status", "availability": "available"})
    for feed in (alice, bob):
        event = await feed.expect("event", "operator.status")
        assert event["data"]["operator"] == "alice"
        assert (event["data"]["availability"], event["data"]["activity"]) == ("available", "idle")
    user = await get_user_model().objects.aget(username="alice")
    stored = await OperatorStatus.objects.aget(user=user)
    assert (stored.availability, stored.availability_changed_by) == ("available", "operator alice")

    again = await dashboard(asgi_app, "carol")
    operators = (await again.receive())["data"]["operators"]
    assert {o["operator"]: o["availability"] for o in operators}["alice"] == "available"
    for feed in (alice, bob, again):
        await feed.close()


async def test_it_refuses_a_bad_status_and_changes_nothing(asgi_app: Any) -> None:
    alice = await dashboard(asgi_app, "alice")
    await alice.receive()
    await alice.send({"type": "status", "availability": "asleep"})
    assert (await alice.receive())["data"]["code"] == "INVALID_ARGUMENT"
    await alice.send({"type": "status"})
    assert (await alice.receive())["data"]["code"] == "INVALID_ARGUMENT"
    await alice.send("not json")
    assert (await alice.receive())["data"]["code"] == "INVALID_MESSAGE"
    assert not await OperatorStatus.objects.filter(availability="available").aexists()
    await alice.close()


async def test_it_tells_the_feed_when_an_operator_gets_busy_and_idle(asgi_app: Any) -> None:
    feed = await dashboard(asgi_app, "alice")
    await feed.receive()
    session, _ = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    user = await get_user_model().objects.aget(username="alice")
    call = await sync_to_async(Call.start)(
        by=Principal.staff(user), mode="bridge", session=session, media_worker="embedded"
    )
    busy = await feed.expect("event", "operator.status")
    assert (busy["data"]["operator"], busy["data"]["activity"]) == ("alice", "busy")
    await sync_to_async(call.hang_up)(Principal.staff(user))
    idle = await feed.expect("event", "operator.status")
    assert idle["data"]["activity"] == "idle"
    await feed.close()
