"""Blind transfer without media: who may (the call's operator party only), to whom (an
operator who is free now, or a queue), what it does to the call (one id, one timeline,
legs that say who was on it when), how it rings there (the queue's routing; one offer for
an operator, falling back to the line when it rings out or is declined), exactly once
under concurrency, the caller hanging up mid-transfer, and the same over /ws/operator.
The media (who hears whom, the gap at the switch): tests/test_transfer_media.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from calls import transfer
from calls.errors import CallbridgeError
from calls.models import (
    Activity,
    Call,
    EndUserSession,
    OfferOutcome,
    QueueOffer,
    Transfer,
    activity_of,
)
from calls.principals import Principal
from calls.routing import offers
from calls.workers import link, protocol
from tests.support.queues import (
    answer,
    answered_call,
    client_of,
    event_names,
    in_threads,
    make_operator,
    make_queue,
    pending_of,
    ring_out,
)
from tests.support.rest_client import assert_error, bearer_client
from tests.support.signal_client import operator_feed

pytestmark = [pytest.mark.django_db(transaction=True)]

Session = Callable[..., tuple[EndUserSession, str]]


def post_transfer(user: Any, call: Call, to: Any) -> Any:
    return client_of(user).post(f"/api/calls/{call.pk}/transfer", {"to": to}, format="json")


def operator_legs(call: Call) -> list[tuple[str, bool]]:
    """(party, still on the call) of each operator leg, oldest first."""
    legs = call.legs.filter(role="operator").order_by("created_at")
    return [(leg.party, leg.left_at is None) for leg in legs]


def test_it_transfers_to_a_queue_whose_member_answers(make_session: Session) -> None:
    alice, bob = make_operator("alice"), make_operator("bob")
    make_queue("sales", [bob])
    call, _ = answered_call(make_session, alice)
    answered_at = Call.objects.get(pk=call.pk).answered_at

    response = post_transfer(alice, call, {"queue": "sales"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["callID"], body["state"]) == (str(call.pk), "ringing")
    call.refresh_from_db()
    assert call.queue.public_id == "sales" and call.operator_user is None
    assert operator_legs(call) == [("operator alice", False)]
    # Alice left: wrap-up, not busy; the queue's member rings.
    assert activity_of(alice.pk) != Activity.BUSY
    assert pending_of(bob) is not None
    started = call.events.get(name="call.transfer_started")
    assert started.actor == "operator alice" and started.data["toQueue"] == "sales"
    assert started.data["from"] == "active" and started.data["state"] == "ringing"

    assert answer(bob, call.pk).status_code == 200
    call.refresh_from_db()
    assert (call.state, call.operator_user, call.answered_at) == ("active", bob, answered_at)
    assert operator_legs(call) == [("operator alice", False), ("operator bob", True)]
    done = Transfer.objects.get(call=call)
    assert (done.outcome, done.to_leg.party, done.by) == (
        "completed",
        "operator bob",
        started.actor,
    )
    completed = call.events.get(name="call.transfer_completed")
    assert completed.data["legID"] == str(done.to_leg_id) and completed.data["party"]
    assert event_names(call, "call.") == [
        "call.created",
        "call.answered",
        "call.transfer_started",
        "call.answered",
        "call.transfer_completed",
    ]
    # Alice is no longer a party: she cannot hold, transfer or hang up as its operator.
    assert_error(client_of(alice).post(f"/api/calls/{call.pk}/hold"), 403, "FORBIDDEN")
    assert_error(post_transfer(alice, call, {"queue": "sales"}), 409, "CALL_STATE")
    legs = client_of(bob).get(f"/api/calls/{call.pk}").json()["legs"]
    assert [(leg["party"], leg["leftAt"] is None) for leg in legs if leg["role"] == "operator"] == [
        ("operator alice", False),
        ("operator bob", True),
    ]


def test_it_rings_only_the_operator_and_falls_back_to_the_line(make_session: Session) -> None:
    alice, bob, carol = make_operator("alice"), make_operator("bob"), make_operator("carol")
    call, _ = answered_call(make_session, alice)

    assert post_transfer(alice, call, {"operator": "bob"}).status_code == 200
    offer = pending_of(bob)
    assert offer is not None and offer.call_id == call.pk
    # The default queue answers openly, but not a call that rings one operator.
    assert_error(answer(carol, call.pk), 403, "FORBIDDEN")
    ring_out(offer)
    call.refresh_from_db()
    assert call.state == "ringing"  # back in its queue's line: anyone may answer it now
    assert Transfer.objects.get(call=call).outcome == "unanswered"
    failed = call.events.get(name="call.transfer_failed")
    assert failed.data["outcome"] == "unanswered" and failed.data["reason"] == "missed"
    assert answer(carol, call.pk).status_code == 200

    # Declining is not answering either: the transfer ends, the call waits in the line.
    dave = make_operator("dave")
    assert post_transfer(carol, call, {"operator": "dave"}).status_code == 200
    offers.decline(call.pk, dave.pk)
    transfers = list(Transfer.objects.filter(call=call).values_list("outcome", flat=True))
    assert transfers == ["unanswered", "unanswered"]
    assert Call.objects.get(pk=call.pk).state == "ringing"
    assert answer(bob, call.pk).status_code == 200
    assert operator_legs(call) == [
        ("operator alice", False),
        ("operator carol", False),
        ("operator bob", True),
    ]


@pytest.mark.slow
def test_it_refuses_bad_transfers_and_changes_nothing(
    make_session: Session, api_token: Any
) -> None:
    alice, bob = make_operator("alice"), make_operator("bob")
    make_operator("olive", available=False)
    get_user_model().objects.create_user(username="plain", password="x", is_staff=True)
    make_queue("sales", [bob])
    call, user_token = answered_call(make_session, alice)
    path = f"/api/calls/{call.pk}/transfer"
    _, token = api_token
    outsiders = [bearer_client(user_token), bearer_client(token), client_of(bob)]
    for client in outsiders:
        assert_error(client.post(path, {"to": {"queue": "sales"}}, format="json"), 403, "FORBIDDEN")
    busy_call, _ = answered_call(make_session, make_operator("busy"))
    for to, status, code in [
        (None, 400, "INVALID_MESSAGE"),
        ("bob", 400, "INVALID_ARGUMENT"),
        ({"operator": ""}, 400, "INVALID_ARGUMENT"),
        ({"operator": "bob", "queue": "sales"}, 400, "INVALID_ARGUMENT"),
        ({"phone": "+1555"}, 400, "INVALID_ARGUMENT"),
        ({"operator": 7}, 400, "INVALID_ARGUMENT"),
        ({"operator": "alice"}, 400, "INVALID_ARGUMENT"),  # yourself
        ({"operator": "nobody"}, 404, "NOT_FOUND"),
        ({"operator": "plain"}, 404, "NOT_FOUND"),  # staff, but no operator
        ({"queue": "nosuch"}, 404, "NOT_FOUND"),
        ({"operator": "olive"}, 409, "CALL_STATE"),  # offline
        ({"operator": "busy"}, 409, "CALL_STATE"),  # on a call
    ]:
        assert_error(post_transfer(alice, call, to), status, code)
    assert_error(
        client_of(alice).post(path, "[]", content_type="application/json"), 400, "INVALID_MESSAGE"
    )
    call.refresh_from_db()
    assert (call.state, call.operator_user) == ("active", alice)
    assert operator_legs(call) == [("operator alice", True)]
    assert not Transfer.objects.exists() and event_names(call, "call.transfer") == []
    assert not QueueOffer.objects.filter(outcome=OfferOutcome.PENDING).exists()
    assert busy_call.pk != call.pk
    # A call the operator placed (outbound) is not transferred (yet): nothing changes.
    session, _ = make_session("Bea")
    outbound = Call.start(
        by=Principal.staff(alice), mode="bridge", session=session, media_worker="embedded"
    )
    outbound.answer(Principal.end_user(session))
    assert_error(post_transfer(alice, outbound, {"queue": "sales"}), 409, "CALL_STATE")
    assert Call.objects.get(pk=outbound.pk).state == "active"
    outbound.hang_up(Principal.staff(alice))
    # Transferred already: once more is CALL_STATE (to whoever transferred it).
    assert post_transfer(alice, call, {"queue": "sales"}).status_code == 200
    assert_error(post_transfer(alice, call, {"queue": "sales"}), 409, "CALL_STATE")
    assert Transfer.objects.filter(call=call).count() == 1


def test_it_lets_one_of_two_transfers_at_once_win(make_session: Session) -> None:
    alice, bob = make_operator("alice"), make_operator("bob")
    make_queue("sales", [make_operator("carol")])
    call, _ = answered_call(make_session, alice)
    staff = Principal.staff(alice)
    targets: list[Any] = [{"operator": "bob"}, {"queue": "sales"}]
    results = in_threads(
        lambda to: transfer.transfer(staff, Call.objects.get(pk=call.pk), to), targets
    )
    refused = [r for r in results if isinstance(r, CallbridgeError)]
    assert [r.code for r in refused] == ["CALL_STATE"], results
    assert Transfer.objects.filter(call=call).count() == 1
    assert event_names(call, "call.transfer") == ["call.transfer_started"]
    assert QueueOffer.objects.filter(call=call, outcome=OfferOutcome.PENDING).count() == 1
    assert Call.objects.get(pk=call.pk).legs.filter(left_at=None, role="operator").count() == 0
    assert bob.pk  # one of the two rang


def test_it_settles_everything_when_the_caller_hangs_up_mid_transfer(
    make_session: Session,
) -> None:
    alice, bob = make_operator("alice"), make_operator("bob")
    call, user_token = answered_call(make_session, alice)
    assert post_transfer(alice, call, {"operator": "bob"}).status_code == 200
    hung_up = bearer_client(user_token).post(f"/api/calls/{call.pk}/hangup")
    assert hung_up.status_code == 200, hung_up.json()
    call.refresh_from_db()
    assert (call.state, call.end_reason, call.ended_by_role) == ("ended", "hangup", "user")
    assert pending_of(bob) is None
    assert QueueOffer.objects.get(call=call).outcome == "cancelled"
    assert Transfer.objects.get(call=call).outcome == "call_ended"
    assert event_names(call, "call.")[-2:] == ["call.ended", "call.transfer_failed"]
    assert activity_of(bob.pk) == Activity.IDLE
    assert call.legs.filter(role="operator", left_at=None).count() == 0
    # Nothing rings any more: bob answering finds the call over.
    assert_error(answer(bob, call.pk), 409, "CALL_STATE")


async def test_it_transfers_over_the_operator_socket_and_tells_the_feeds(
    asgi_app: Any, make_session: Session
) -> None:
    alice_feed = await operator_feed(asgi_app, "alice")
    bob_feed = await operator_feed(asgi_app, "bob")
    for feed in (alice_feed, bob_feed):
        await feed.receive()  # the snapshot
    alice = await get_user_model().objects.aget(username="alice")
    bob = await get_user_model().objects.aget(username="bob")
    for user in (alice, bob):
        await sync_to_async(_available)(user)
    call, _ = await sync_to_async(answered_call)(make_session, alice)
    call_id = str(call.pk)

    refusals = [
        (bob_feed, {"type": "transfer", "callID": call_id, "to": {"queue": "x"}}, "FORBIDDEN"),
        (alice_feed, {"type": "transfer", "callID": call_id}, "INVALID_ARGUMENT"),
        (alice_feed, {"type": "transfer", "callID": call_id, "to": {"queue": "x"}}, "NOT_FOUND"),
    ]
    for feed, message, code in refusals:
        await feed.send(message)
        error = await feed.expect("error")
        assert error["data"]["code"] == code and error["callSid"] == call_id, error
    await alice_feed.send({"type": "transfer", "callID": call_id, "to": {"operator": "bob"}})
    for feed in (alice_feed, bob_feed):
        event = await feed.expect("event", "call.transfer_started")
        assert event["callSid"] == call_id and event["data"]["toOperator"] == "bob"
        assert event["data"]["call"]["state"] == "ringing"
    for client in (alice_feed, bob_feed):
        await client.close()


def _available(user: Any) -> None:
    from calls.models import Availability, OperatorStatus

    OperatorStatus.set_availability(user, Availability.AVAILABLE, Principal.staff(user))


async def test_it_orders_transfer_messages_at_the_worker(asgi_app: Any) -> None:
    """TransferOut holds the caller; TransferIn for a leg that has no audio at the worker
    yet keeps the hold until it has (a REST answer connects its media later); a later Hold
    decision overrides either; older ones change nothing; an ended call refuses them."""
    call_id = "11111111-2222-3333-4444-666666666666"

    async def ask(message: protocol.Request) -> bool:
        reply = await link.request("embedded", message)
        assert isinstance(reply, protocol.HoldSet), reply
        return reply.held

    assert await ask(protocol.TransferOut(call=call_id, leg="gone", seq=10)) is True
    assert await ask(protocol.TransferIn(call=call_id, leg="new", seq=11)) is True  # no audio
    assert await ask(protocol.TransferIn(call=call_id, leg="new", seq=9)) is True  # older
    assert await ask(protocol.Hold(call=call_id, held=False, seq=12)) is False  # resumed
    assert await ask(protocol.TransferOut(call=call_id, leg="gone", seq=12)) is False  # repeat
    await link.send("embedded", protocol.EndCall(call=call_id))
    with pytest.raises(CallbridgeError) as refused:
        await link.request("embedded", protocol.TransferIn(call=call_id, leg="new", seq=13))
    assert refused.value.code == "CALL_STATE"
