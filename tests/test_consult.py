"""Attended transfer without media: consult (the caller held, the target rung by an
offer), the target's answer (a leg of its own), cancel (back to the first operator) and
complete (the target takes the call); who may (the call's operator party; the target may
hang up on the consult), bad targets and states changing nothing, complete and cancel at
the same instant (one wins), the target declining or letting it ring out, the caller
hanging up mid-consult, the same over /ws/operator. Who hears whom, by tone:
tests/test_transfer_media.py; the pure ears function is tested at the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from calls.media.worker import consulting_ears, held_ears, supervised_ears
from calls.models import (
    Activity,
    Call,
    EndUserSession,
    OfferOutcome,
    QueueOffer,
    Transfer,
    activity_of,
)
from calls.routing import offers
from calls.signaling.protocol import wire_event_name
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


def post(user: Any, call: Call, verb: str, body: Any = None) -> Any:
    path = f"/api/calls/{call.pk}/{verb}"
    return client_of(user).post(path, body, format="json") if body else client_of(user).post(path)


def consult_to(user: Any, call: Call, to: Any) -> Any:
    return post(user, call, "consult", {"to": to})


def legs(call: Call) -> list[tuple[str, str, bool]]:
    """(role, party, still on the call) of every operator's leg, oldest first."""
    found = call.legs.filter(role__in=("operator", "consult")).order_by("created_at")
    return [(leg.role, leg.party, leg.left_at is None) for leg in found]


def test_it_consults_cancels_consults_again_and_completes(
    make_session: Session, admin_client: Any
) -> None:
    alice, bob = make_operator("alice"), make_operator("bob")
    call, _ = answered_call(make_session, alice)

    # Consult: the caller is held, bob rings (his offer), the call stays alice's.
    response = consult_to(alice, call, {"operator": "bob"})
    assert response.status_code == 200, response.json()
    assert response.json()["state"] == "active"
    call.refresh_from_db()
    assert call.is_held and call.operator_user == alice
    consult = Transfer.objects.get(call=call)
    assert (consult.kind, consult.outcome, consult.to_user) == ("attended", "pending", bob)
    assert pending_of(bob) is not None and activity_of(bob.pk) == Activity.RINGING
    started = call.events.get(name="call.consult_started")
    assert started.data["toOperator"] == "bob" and started.data["kind"] == "attended"

    # Bob answers: a consult leg of his own on the same call.
    assert answer(bob, call.pk).status_code == 200
    assert legs(call) == [
        ("operator", "operator alice", True),
        ("consult", "operator bob", True),
    ]
    assert pending_of(bob) is None and activity_of(bob.pk) == Activity.BUSY
    assert_error(answer(bob, call.pk), 409, "CALL_STATE")  # answered already

    # Cancel: bob's leg leaves, the hold ends, the caller and alice again.
    assert post(alice, call, "consult/cancel").status_code == 200
    call.refresh_from_db()
    assert not call.is_held and call.operator_user == alice
    assert Transfer.objects.get(pk=consult.pk).outcome == "cancelled"
    assert legs(call)[-1] == ("consult", "operator bob", False)
    assert activity_of(bob.pk) == Activity.IDLE

    # Consult again, bob answers, alice completes: bob is the call's operator now.
    assert consult_to(alice, call, {"operator": "bob"}).status_code == 200
    assert answer(bob, call.pk).status_code == 200
    response = post(alice, call, "consult/complete")
    assert response.status_code == 200, response.json()
    call.refresh_from_db()
    assert (call.state, call.operator_user, call.is_held) == ("active", bob, False)
    assert legs(call) == [
        ("operator", "operator alice", False),
        ("consult", "operator bob", False),
        ("operator", "operator bob", True),  # the consult leg, now the operator's
    ]
    assert list(Transfer.objects.filter(call=call).values_list("outcome", flat=True)) == [
        "cancelled",
        "completed",
    ]
    assert event_names(call, "call.consult", "call.held", "call.resumed") == [
        "call.held",
        "call.consult_started",
        "call.consult_answered",
        "call.consult_cancelled",
        "call.resumed",
        "call.held",
        "call.consult_started",
        "call.consult_answered",
        "call.consult_completed",
        "call.resumed",
    ]
    timeline = client_of(bob).get(f"/api/calls/{call.pk}/events").json()
    listed = [e["name"] for e in timeline if "consult" in e["name"]]
    assert listed[-2:] == ["call.consult_answered", "call.consult_completed"]
    # Admin: the call's page lists both consults and the timeline's consult steps.
    page = admin_client.get(f"/admin/calls/call/{call.pk}/change/").content.decode()
    assert page.count("attended") >= 2 and "call.consult_completed" in page
    # Bob has the call's controls now; alice has none, and is in wrap-up or idle.
    assert post(bob, call, "hold").status_code == 200
    assert_error(post(alice, call, "resume"), 403, "FORBIDDEN")
    assert activity_of(alice.pk) in (Activity.IDLE, Activity.WRAP_UP)


@pytest.mark.slow
def test_it_refuses_wrong_parties_bad_targets_and_states_changing_nothing(
    make_session: Session, api_token: Any
) -> None:
    alice, bob, carol = make_operator("alice"), make_operator("bob"), make_operator("carol")
    make_operator("away", available=False)
    make_queue("empty", [])
    call, user_token = answered_call(make_session, alice)
    path = f"/api/calls/{call.pk}/consult"

    # Nobody but the call's operator consults, completes or cancels.
    user = bearer_client(user_token)
    assert_error(user.post(path, {"to": {"operator": "bob"}}, format="json"), 403, "FORBIDDEN")
    assert_error(consult_to(carol, call, {"operator": "bob"}), 403, "FORBIDDEN")
    for verb in ("consult/complete", "consult/cancel"):
        assert_error(post(carol, call, verb), 403, "FORBIDDEN")
        assert_error(user.post(f"{path}/{verb.split('/')[1]}"), 403, "FORBIDDEN")
    # Bad targets: the contract's codes.
    for to, status, code in [
        (None, 400, "INVALID_MESSAGE"),
        ({"operator": ""}, 400, "INVALID_ARGUMENT"),
        ({"operator": "bob", "queue": "sales"}, 400, "INVALID_ARGUMENT"),
        ({"operator": "alice"}, 400, "INVALID_ARGUMENT"),  # yourself
        ({"operator": "nobody"}, 404, "NOT_FOUND"),
        ({"queue": "nosuch"}, 404, "NOT_FOUND"),
        ({"operator": "away"}, 409, "CALL_STATE"),  # not available
        ({"queue": "empty"}, 409, "CALL_STATE"),  # nobody free there
    ]:
        assert_error(consult_to(alice, call, to), status, code)
    # Wrong states: nothing to complete or cancel yet.
    assert_error(post(alice, call, "consult/complete"), 409, "CALL_STATE")
    assert_error(post(alice, call, "consult/cancel"), 409, "CALL_STATE")
    call.refresh_from_db()
    assert (call.is_held, call.operator_user) == (False, alice)
    assert not Transfer.objects.exists() and event_names(call, "call.consult", "call.held") == []
    assert not QueueOffer.objects.filter(outcome=OfferOutcome.PENDING).exists()

    # Mid-consult: no second consult or transfer, no resume, no complete before the answer;
    # another operator cannot answer it; a busy target (on a call) is refused.
    assert consult_to(alice, call, {"operator": "bob"}).status_code == 200
    assert_error(consult_to(alice, call, {"operator": "carol"}), 409, "CALL_STATE")
    assert_error(post(alice, call, "transfer", {"to": {"operator": "carol"}}), 409, "CALL_STATE")
    assert_error(post(alice, call, "resume"), 409, "CALL_STATE")
    assert_error(post(alice, call, "consult/complete"), 409, "CALL_STATE")
    assert_error(answer(carol, call.pk), 409, "CALL_STATE")
    other, _ = answered_call(make_session, carol)
    assert_error(consult_to(carol, other, {"operator": "bob"}), 409, "CALL_STATE")  # ringing
    assert Transfer.objects.filter(outcome="pending").count() == 1
    assert call.legs.filter(role="consult").count() == 0
    # Bob, rung, may hang up on it (cancel) too: it ends as the target's.
    assert post(bob, call, "consult/cancel").status_code == 200
    cancelled = call.events.get(name="call.consult_cancelled")
    assert cancelled.data["reason"] == "target_left" and cancelled.actor == "operator bob"
    assert_error(post(bob, call, "consult/cancel"), 403, "FORBIDDEN")  # not his any more


def test_it_lets_one_of_complete_and_cancel_at_the_same_instant_win(
    make_session: Session,
) -> None:
    alice, bob = make_operator("alice"), make_operator("bob")
    call, _ = answered_call(make_session, alice)
    for _ in range(3):
        assert consult_to(alice, call, {"operator": bob.username}).status_code == 200
        assert answer(bob, call.pk).status_code == 200
        results = in_threads(
            lambda verb, by=alice: post(by, call, verb), ["consult/complete", "consult/cancel"]
        )
        statuses = sorted(r.status_code for r in results)
        assert statuses == [200, 409], [r.json() for r in results]
        settled = Transfer.objects.filter(call=call).order_by("-started_at").first()
        assert settled is not None and settled.outcome in ("completed", "cancelled")
        assert not Transfer.objects.filter(outcome="pending").exists()
        call.refresh_from_db()
        assert not call.is_held
        assert call.legs.filter(role__in=("operator", "consult"), left_at=None).count() == 1
        if settled.outcome == "completed":
            alice, bob = bob, alice  # the call is bob's: he consults alice next time
    ends = event_names(call, "call.consult_completed", "call.consult_cancelled")
    assert len(ends) == 3 and event_names(call, "call.resumed").__len__() == 3


def test_it_cancels_when_the_target_declines_or_lets_it_ring_out(make_session: Session) -> None:
    alice, bob = make_operator("alice"), make_operator("bob")
    call, _ = answered_call(make_session, alice)

    assert consult_to(alice, call, {"operator": "bob"}).status_code == 200
    offers.decline(call.pk, bob.pk)
    call.refresh_from_db()
    assert (call.state, call.is_held, call.operator_user) == ("active", False, alice)
    cancelled = call.events.filter(name="call.consult_cancelled").last()
    assert cancelled is not None
    assert (cancelled.data["outcome"], cancelled.data["reason"]) == ("unanswered", "declined")

    assert consult_to(alice, call, {"operator": "bob"}).status_code == 200
    ring_out(pending_of(bob))
    call.refresh_from_db()
    assert (call.state, call.is_held) == ("active", False)
    cancelled = call.events.filter(name="call.consult_cancelled").last()
    assert cancelled is not None and cancelled.data["reason"] == "missed"
    assert list(Transfer.objects.values_list("outcome", flat=True)) == ["unanswered"] * 2
    assert_error(answer(bob, call.pk), 409, "CALL_STATE")  # nothing rings for him


def test_it_cancels_when_the_consulted_operators_connection_ends(make_session: Session) -> None:
    """Their page closed (the worker reports the leg `closed`): as if they hung up; a
    connection that ends after the consult did changes nothing."""
    alice, bob = make_operator("alice"), make_operator("bob")
    call, _ = answered_call(make_session, alice)
    assert consult_to(alice, call, {"operator": "bob"}).status_code == 200
    assert answer(bob, call.pk).status_code == 200
    leg = call.legs.get(role="consult")
    leg.set_media_state("connected")
    leg.set_media_state("closed")  # what the media worker reports
    call.refresh_from_db()
    assert (call.state, call.is_held, call.operator_user) == ("active", False, alice)
    cancelled = call.events.get(name="call.consult_cancelled")
    assert (cancelled.actor_role, cancelled.data["reason"]) == ("system", "target_left")
    assert event_names(call, "call.")[-1] == "call.resumed"


def test_it_ends_the_consult_with_the_call_when_the_caller_hangs_up(
    make_session: Session,
) -> None:
    alice, bob = make_operator("alice"), make_operator("bob")
    make_queue("sales", [bob])
    call, user_token = answered_call(make_session, alice)
    # A queue as target: its free member rings.
    assert consult_to(alice, call, {"queue": "sales"}).status_code == 200
    assert Transfer.objects.get().to_user == bob
    assert answer(bob, call.pk).status_code == 200

    hung_up = bearer_client(user_token).post(f"/api/calls/{call.pk}/hangup")
    assert hung_up.status_code == 200, hung_up.json()
    call.refresh_from_db()
    assert (call.state, call.held_at) == ("ended", None)
    assert Transfer.objects.get().outcome == "call_ended"
    assert event_names(call, "call.")[-2:] == ["call.ended", "call.consult_cancelled"]
    assert call.legs.filter(role="consult", left_at=None).count() == 0
    assert activity_of(bob.pk) == Activity.IDLE


async def test_it_consults_over_the_operator_socket_and_tells_the_feeds(
    asgi_app: Any, make_session: Session
) -> None:
    alice = await sync_to_async(make_operator)("alice")
    bob = await sync_to_async(make_operator)("bob")
    alice_feed = await operator_feed(asgi_app, "alice")
    bob_feed = await operator_feed(asgi_app, "bob")
    for feed in (alice_feed, bob_feed):
        await feed.receive()  # the snapshot
    call, _ = await sync_to_async(answered_call)(make_session, alice)
    call_id = str(call.pk)
    try:
        for feed, message, code in [
            (
                bob_feed,
                {"type": "consult", "callID": call_id, "to": {"operator": "bob"}},
                "FORBIDDEN",
            ),
            (alice_feed, {"type": "consult", "callID": call_id}, "INVALID_ARGUMENT"),
            (alice_feed, {"type": "completeConsult", "callID": call_id}, "CALL_STATE"),
        ]:
            await feed.send(message)
            error = await feed.expect("error")
            assert error["data"]["code"] == code and error["callSid"] == call_id, error
        await alice_feed.send({"type": "consult", "callID": call_id, "to": {"operator": "bob"}})
        for feed in (alice_feed, bob_feed):
            event = await feed.expect("event", "call.consult_started")
            assert event["data"]["toOperator"] == "bob" and event["data"]["kind"] == "attended"
            consult = event["data"]["call"]["consult"]
            assert consult == {"operator": "bob", "answered": False, "by": "operator alice"}
            assert event["data"]["call"]["heldAt"] is not None
        await sync_to_async(answer)(bob, call.pk)
        answered = await bob_feed.expect("event", "call.consult_answered")
        assert answered["data"]["call"]["consult"]["answered"] is True
        await alice_feed.send({"type": "cancelConsult", "callID": call_id})
        for feed in (alice_feed, bob_feed):
            event = await feed.expect("event", "call.consult_cancelled")
            assert (
                event["data"]["reason"] == "cancelled" and event["data"]["call"]["consult"] is None
            )
    finally:
        for client in (alice_feed, bob_feed):
            await client.close()


def test_it_tells_the_steps_to_operators_and_only_the_hold_to_the_caller() -> None:
    for name in ("call.consult_started", "call.consult_completed", "call.consult_cancelled"):
        assert wire_event_name(name, {}, "user", "operator") == name
        assert wire_event_name(name, {}, "user", "user") is None
    consulted_media = {"role": "consult", "legID": "l-3"}
    assert wire_event_name("media.connected", consulted_media, "user", "user") is None
    assert wire_event_name("media.connected", consulted_media, "user", "operator")
    assert wire_event_name("call.held", {"consult": True}, "user", "user") == "call.held"


def test_it_says_who_hears_whom_during_a_consult() -> None:
    """The pure ears: the held caller hears nobody (the hold audio), the operator and the
    consulted operator hear each other, a supervisor hears them both, in every mode."""
    parties = {"user": ("operator",), "operator": ("user",)}
    ears = consulting_ears(held_ears(supervised_ears(parties, None)))
    assert ears == {
        "user": (),
        "operator": ("consult",),
        "supervisor": (),
        "consult": ("operator",),
    }
    for mode, operator_hears in [
        ("monitor", ("consult",)),
        ("whisper", ("supervisor", "consult")),
        ("barge", ("supervisor", "consult")),
    ]:
        ears = consulting_ears(held_ears(supervised_ears(parties, mode)))
        assert ears["user"] == ()
        assert ears["operator"] == operator_hears
        assert ears["consult"] == ("operator",)
        assert ears["supervisor"] == ("operator", "consult")
