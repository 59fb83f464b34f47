"""/ws/operator: staff see every call and end users coming and going."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from calls.models import EndUserSession
from tests.support.signal_client import SignalClient, staff_cookie

pytestmark = [pytest.mark.django_db(transaction=True)]


async def dashboard(asgi_app: Any) -> SignalClient:
    cookie = await sync_to_async(staff_cookie)()
    client = SignalClient(asgi_app, "/ws/operator", origin="http://localhost")
    client.communicator.scope["headers"].append((b"cookie", cookie.encode()))
    await client.connect()
    return client


async def test_it_reports_end_users_online_and_offline(asgi_app: Any) -> None:
    session, token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    feed = await dashboard(asgi_app)
    assert (await feed.receive())["data"]["online"] == []
    first, second = SignalClient(asgi_app), SignalClient(asgi_app)
    for page in (first, second):  # the same end user in two tabs
        await page.connect()
        await page.send({"type": "register", "sessionId": "", "authToken": token})
        await page.expect("event", "registered")
    online = await feed.expect("event", "presence.online")
    assert online["data"]["session"]["sessionId"] == str(session.pk)
    assert online["data"]["session"]["displayName"] == "Ada"

    again = await dashboard(asgi_app)
    snapshot = await again.receive()
    assert [s["displayName"] for s in snapshot["data"]["online"]] == ["Ada"]
    await again.close()

    await first.close()
    assert [m for m in await feed.drain() if m["data"]["name"].startswith("presence")] == []
    await second.close()  # the last tab closes
    offline = await feed.expect("event", "presence.offline")
    assert offline["data"]["session"]["online"] is False
    stored = await EndUserSession.objects.aget(pk=session.pk)
    assert (stored.online, stored.sockets) == (False, 0)
    await feed.close()


async def test_it_only_listens(asgi_app: Any) -> None:
    feed = await dashboard(asgi_app)
    await feed.receive()
    await feed.send({"type": "offer"})
    assert (await feed.receive())["data"]["code"] == "INVALID_MESSAGE"
    await feed.close()


async def test_it_tells_the_dashboard_who_a_queued_call_rings(asgi_app: Any) -> None:
    from calls.models import Call, OperatorStatus, Queue
    from calls.principals import Principal

    feed = await dashboard(asgi_app)  # alice, an operator
    await feed.receive()

    def ring_alice() -> Call:
        from django.contrib.auth import get_user_model

        alice = get_user_model().objects.get(username="alice")
        queue = Queue.objects.create(name="Sales", public_id="sales", ring_timeout_s=20)
        queue.members.add(alice)
        OperatorStatus.set_availability(alice, "available", Principal.staff(alice))
        session, _ = EndUserSession.create(ttl_seconds=600, display_name="Ada")
        return Call.start(
            by=Principal.end_user(session), mode="bridge", media_worker="embedded", queue=queue
        )

    call = await sync_to_async(ring_alice)()
    seen: dict[str, dict[str, Any]] = {}
    while not {"queue.offered", "ringing"} <= seen.keys():  # in either order
        event = await feed.expect("event")
        name = event["data"]["name"]
        if name == "operator.status" and event["data"]["operator"] == "alice":
            seen[event["data"]["activity"]] = event
        seen.setdefault(name, event)
    message = seen["queue.offered"]
    # The supervisors' view: alice's activity is `ringing` while offered.
    assert seen["ringing"]["data"]["availability"] == "available"
    assert message["callSid"] == str(call.pk)
    offered = message["data"]
    assert (offered["operator"], offered["queue"], offered["record"]) == (
        "alice",
        "sales",
        "queue.offered",
    )
    assert offered["deadline"]
    # The call itself says who may answer it (what a reloaded dashboard draws from).
    summary = offered["call"]
    assert (summary["queue"], summary["queueName"], summary["openAnswer"]) == (
        "sales",
        "Sales",
        False,
    )
    assert summary["queuedAt"]
    assert summary["offers"] == [{"operator": "alice", "deadline": offered["deadline"]}]
    await sync_to_async(call.hang_up)(await sync_to_async(Principal.end_user)(call.session))
    ended = (await feed.expect("event", "queue.offer_ended"))["data"]
    assert (ended["operator"], ended["outcome"]) == ("alice", "cancelled")
    assert ended["call"]["offers"] == []
    await feed.close()


async def test_it_tells_supervisors_of_a_disposition_and_the_caller_nothing(
    asgi_app: Any,
) -> None:
    from calls import notes
    from calls.models import Call, DispositionCode
    from calls.principals import Principal

    feed = await dashboard(asgi_app)  # alice, an operator
    await feed.receive()
    session, token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    caller = SignalClient(asgi_app)
    await caller.connect()
    await caller.send({"type": "register", "sessionId": "", "authToken": token})
    await caller.expect("event", "registered")

    def answer_and_note() -> Call:
        from django.contrib.auth import get_user_model

        alice = Principal.staff(get_user_model().objects.get(username="alice"))
        DispositionCode.objects.create(code="resolved", label="Resolved")
        call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
        call.answer(alice)
        notes.save(alice, call, code="resolved", notes="confided secret")
        call.hang_up(alice)
        return call

    call = await sync_to_async(answer_and_note)()
    disposition = (await feed.expect("event", "call.disposition_set"))["data"]
    assert (disposition["disposition"], disposition["revision"]) == ("resolved", 1)
    assert disposition["call"]["disposition"] == "resolved"
    updated = (await feed.expect("event", "call.notes_updated"))["data"]
    assert updated["length"] == len("confided secret")
    await feed.expect("event", "call.ended")
    assert "confided" not in str(feed.received)

    # The caller's socket hears its call end (events arrive in order): nothing before it
    # spoke of notes or a disposition.
    ended = await caller.expect("event", "call.ended")
    assert ended["callSid"] == str(call.pk)
    told = str(caller.received)
    assert "resolved" not in told and "confided" not in told and "notes" not in told
    await caller.close()
    await feed.close()
