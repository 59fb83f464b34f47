"""Declining an offer passes the call on; overflow rules never send a caller round a loop.

Driven through the REST API as the dashboard does (`POST /api/calls/{id}/decline`), with
the deadlines service's sweep standing in for its timer.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from calls.models import ApiToken, Call, CallEvent, EndUserSession, OperatorStatus, Queue
from calls.models.activity import activity_of
from calls.principals import Principal
from tests.support.queues import (
    answer,
    call_in,
    client_of,
    in_threads,
    make_operator,
    make_queue,
    pending_of,
    pending_operators,
    ring_out,
    wait_passes,
)
from tests.support.rest_client import assert_error

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

Session = Callable[..., tuple[EndUserSession, str]]


def decline(user: object, call: Call) -> object:
    return client_of(user).post(f"/api/calls/{call.pk}/decline")


def test_it_rings_the_next_operator_and_never_the_decliner_again(make_session: Session) -> None:
    ann, bob = make_operator("ann"), make_operator("bob")
    queue = make_queue("desk", [ann, bob], strategy="round_robin")
    call = call_in(queue, make_session)
    assert pending_operators(call) == ["ann"]  # never offered before, ties by id

    response = decline(ann, call)
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "ringing"
    assert pending_operators(call) == ["bob"]
    ended = CallEvent.objects.get(call=call, name="queue.offer_ended", data__operator="ann")
    assert ended.data["outcome"] == "declined"
    # A decline is not a miss: ann is free, her misses are untouched.
    assert OperatorStatus.objects.get(user=ann).missed_in_a_row == 0
    assert activity_of(ann.pk) == "idle"

    # bob lets it ring out: he is rung again (nobody else may have it), never ann.
    ring_out(pending_of(bob))
    assert pending_operators(call) == ["bob"]
    # ann is free for the next caller.
    second = call_in(queue, make_session, "Grace")
    assert pending_operators(second) == ["ann"]
    assert answer(ann, second.pk).status_code == 200


def test_it_stops_ringing_only_the_decliner_in_a_ring_all_queue(make_session: Session) -> None:
    ann, bob = make_operator("ann"), make_operator("bob")
    call = call_in(make_queue("all", [ann, bob], strategy="ring_all"), make_session)
    assert pending_operators(call) == ["ann", "bob"]
    assert decline(ann, call).status_code == 200
    assert pending_operators(call) == ["bob"]
    ring_out(pending_of(bob))
    assert pending_operators(call) == ["bob"]  # whoever becomes free is rung, not ann
    assert answer(bob, call.pk).status_code == 200


def test_it_refuses_a_decline_that_is_not_yours_to_make(make_session: Session) -> None:
    ann, bob = make_operator("ann"), make_operator("bob", available=False)
    call = call_in(make_queue("desk", [ann, bob], strategy="round_robin"), make_session)
    _, secret = ApiToken.create("backend")
    backend = APIClient()
    backend.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    _, token = make_session("Eve")  # an end user, not this call's caller
    caller = APIClient()
    caller.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert_error(decline(bob, call), 403, "FORBIDDEN")  # not offered to him
    assert_error(backend.post(f"/api/calls/{call.pk}/decline"), 403, "FORBIDDEN")
    assert_error(caller.post(f"/api/calls/{call.pk}/decline"), 403, "FORBIDDEN")
    assert pending_operators(call) == ["ann"]  # nothing changed
    assert decline(ann, call).status_code == 200
    assert_error(decline(ann, call), 409, "CALL_STATE")  # her offer has ended
    assert Call.objects.get(pk=call.pk).state == "ringing"


def test_it_settles_an_offer_once_when_answer_and_decline_meet(make_session: Session) -> None:
    ann = make_operator("ann")
    queue = make_queue("desk", [ann], strategy="round_robin")
    for round_ in range(3):
        call = call_in(queue, make_session, f"caller{round_}")
        assert pending_operators(call) == ["ann"]
        answered, declined = in_threads(
            lambda verb, call=call: verb(ann, call.pk if verb is answer else call),
            [answer, decline],
        )
        codes = (answered.status_code, declined.status_code)
        state = Call.objects.get(pk=call.pk).state
        outcomes = list(call.offers.values_list("outcome", flat=True))
        if codes[0] == 200:  # the answer won: the decline finds no pending offer
            assert (codes[1], state, outcomes) == (409, "active", ["answered"]), codes
            assert client_of(ann).post(f"/api/calls/{call.pk}/hangup").status_code == 200
        else:  # the decline won: the answer needs an offer it no longer has
            assert codes == (403, 200) or codes == (409, 200), codes
            assert (state, outcomes) == ("ringing", ["declined"])
            fresh = Call.objects.get(pk=call.pk)
            fresh.hang_up(Principal.end_user(fresh.session))  # the caller gives up


def test_it_refuses_to_save_an_overflow_loop() -> None:
    first = make_queue("first", [], max_wait_s=60)
    second = make_queue("second", [], overflow="queue", overflow_queue=first)
    first.overflow, first.overflow_queue = "queue", second
    with pytest.raises(ValidationError, match="First → Second → First"):
        first.full_clean()
    third = make_queue("third", [], overflow="queue", overflow_queue=second)
    third.full_clean()  # into a chain that ends: fine


def test_it_never_sends_a_caller_round_an_overflow_loop(make_session: Session) -> None:
    first = make_queue("first", [], max_wait_s=60)
    second = make_queue("second", [], overflow="queue", overflow_queue=first)
    # Saved around the admin's check, as rules changed while callers wait might be.
    Queue.objects.filter(pk=first.pk).update(overflow="queue", overflow_queue=second)
    call = call_in(Queue.objects.get(pk=first.pk), make_session)
    wait_passes(call)
    assert Call.objects.get(pk=call.pk).queue_id == second.pk
    wait_passes(call)
    ended = Call.objects.get(pk=call.pk)
    assert (ended.state, ended.end_reason, ended.queue_id) == ("missed", "no_operator", second.pk)
    assert CallEvent.objects.filter(call=call, name="queue.overflowed").count() == 1
