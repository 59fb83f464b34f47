"""The routing engine on the database: offers, answers, ring-outs, wrap-up, overflow.

Operators answer and hang up through the REST API as staff; callers start calls as end
users. Time is never waited for: a deadline that should have passed is moved into the past
and the deadlines service's sweep (calls.routing.deadlines.sweep) runs, as its timer would.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from calls.models import (
    ApiToken,
    Call,
    CallEvent,
    EndUserSession,
    OperatorStatus,
    QueueOffer,
)
from calls.principals import Principal
from calls.routing import deadlines as routing_deadlines
from tests.support.queues import (
    answer,
    call_in,
    client_of,
    hang_up,
    in_threads,
    make_operator,
    make_queue,
    pending_of,
    pending_operators,
    ring_out,
    wait_passes,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

Session = Callable[..., tuple[EndUserSession, str]]


def assert_never_overlapping() -> None:
    """Over the whole history: no call rang two operators at once (one-by-one queues), no
    operator was rung for two calls at once."""
    for key in ("call_id", "operator_id"):
        spans = defaultdict(list)
        for offer in QueueOffer.objects.order_by("offered_at", "pk"):
            spans[getattr(offer, key)].append(offer)
        for offers in spans.values():
            for earlier, later in pairwise(offers):
                assert earlier.ended_at is not None and earlier.ended_at <= later.offered_at, (
                    key,
                    earlier,
                    later,
                )


@pytest.mark.slow
def test_it_spreads_twenty_callers_over_four_operators_round_robin(make_session: Session):
    operators = [make_operator(f"op{n}") for n in range(4)]
    queue = make_queue("sales", operators, strategy="round_robin")
    sessions = [make_session(f"caller{n}")[0] for n in range(20)]

    def caller(session: EndUserSession) -> Call:
        return Call.start(
            by=Principal.end_user(session), mode="bridge", media_worker="embedded", queue=queue
        )

    calls = in_threads(caller, sessions)
    assert all(isinstance(call, Call) for call in calls), calls
    answered: Counter[str] = Counter()
    free_to_offer: list[float] = []
    while Call.objects.filter(queue=queue, state="ringing").exists():
        offers = [pending_of(user) for user in operators]
        ringing = [(user, offer) for user, offer in zip(operators, offers, strict=True) if offer]
        assert ringing, "callers wait and nobody is rung"
        assert len({offer.call_id for _, offer in ringing}) == len(ringing)
        statuses = in_threads(lambda pair: answer(pair[0], pair[1].call_id).status_code, ringing)
        assert statuses == [200] * len(ringing)
        answered.update(user.username for user, _ in ringing)
        ended = in_threads(lambda pair: hang_up(pair[0], pair[1].call_id).status_code, ringing)
        assert ended == [200] * len(ringing)
        for user, offer in ringing:
            end = CallEvent.objects.get(call_id=offer.call_id, name="call.ended").created_at
            nxt = QueueOffer.objects.filter(operator=user, offered_at__gte=end).first()
            if nxt is not None:
                free_to_offer.append((nxt.offered_at - end).total_seconds() * 1000)
    assert sum(answered.values()) == 20
    assert max(answered.values()) - min(answered.values()) <= 1, answered
    assert Call.objects.filter(queue=queue, state="ended").count() == 20
    assert CallEvent.objects.filter(name="call.answered").count() == 20
    assert_never_overlapping()
    free_to_offer.sort()
    p95 = free_to_offer[int(len(free_to_offer) * 0.95) - 1]
    print(
        f"\nfree → next offer over {len(free_to_offer)} hand-overs: median"
        f" {statistics.median(free_to_offer):.1f} ms, p95 {p95:.1f} ms,"
        f" max {free_to_offer[-1]:.1f} ms"
    )


def test_it_offers_the_longest_idle_first_and_skips_who_lets_it_ring_out(
    make_session: Session,
) -> None:
    now = timezone.now()
    recent, earlier, never = (make_operator(name) for name in ("recent", "earlier", "never"))
    OperatorStatus.objects.filter(user=recent).update(last_call_ended_at=now)
    OperatorStatus.objects.filter(user=earlier).update(
        last_call_ended_at=now - timedelta(minutes=5)
    )
    queue = make_queue("support", [recent, earlier, never], strategy="longest_idle")
    call = call_in(queue, make_session)
    seen = []
    for _ in range(3):
        (rung,) = pending_operators(call)
        seen.append(rung)
        ring_out(QueueOffer.objects.get(call=call, outcome="pending"))
    assert seen == ["never", "earlier", "recent"]
    missed = CallEvent.objects.filter(call=call, name="queue.offer_missed")
    assert [event.data["operator"] for event in missed] == seen
    offered = CallEvent.objects.filter(call=call, name="queue.offered")
    assert [event.data["operator"] for event in offered][:3] == seen
    # Everyone let it ring out once: it rings the longest idle again.
    assert pending_operators(call) == ["never"]


def test_it_sets_away_an_operator_who_lets_offers_ring_out(
    make_session: Session, settings: Any
) -> None:
    settings.CALLBRIDGE_AWAY_AFTER_MISSES = 2
    alone = make_operator("alone")
    queue = make_queue("night", [alone], strategy="round_robin")
    call = call_in(queue, make_session)
    ring_out(pending_of(alone))
    status = OperatorStatus.objects.get(user=alone)
    assert (status.availability, status.missed_in_a_row) == ("available", 1)
    ring_out(pending_of(alone))
    status = OperatorStatus.objects.get(user=alone)
    assert (status.availability, status.missed_in_a_row) == ("away", 2)
    assert pending_of(alone) is None
    assert Call.objects.get(pk=call.pk).state == "ringing"  # still waiting for someone
    # Back from away: offered again, and answering resets the count.
    OperatorStatus.set_availability(alone, "available", Principal.staff(alone))
    assert pending_operators(call) == ["alone"]
    assert answer(alone, call.pk).status_code == 200
    assert OperatorStatus.objects.get(user=alone).missed_in_a_row == 0


def test_it_waits_for_the_wrap_up_before_the_next_offer(make_session: Session) -> None:
    agent = make_operator("agent")
    queue = make_queue("desk", [agent], strategy="longest_idle", wrap_up_s=30)
    first, second = call_in(queue, make_session, "Ada"), call_in(queue, make_session, "Bob")
    assert pending_operators(first) == ["agent"] and pending_operators(second) == []
    assert answer(agent, first.pk).status_code == 200
    assert pending_operators(second) == []  # busy
    assert hang_up(agent, first.pk).status_code == 200
    status = OperatorStatus.objects.get(user=agent)
    ended_at = Call.objects.get(pk=first.pk).ended_at
    assert status.wrap_up_until == ended_at + timedelta(seconds=30)
    assert status.last_call_ended_at == ended_at
    routing_deadlines.sweep()
    assert pending_operators(second) == []  # wrapping up
    OperatorStatus.objects.filter(user=agent).update(
        wrap_up_until=timezone.now() - timedelta(seconds=1)
    )
    routing_deadlines.sweep()
    assert pending_operators(second) == ["agent"]
    assert OperatorStatus.objects.get(user=agent).wrap_up_until is None


def test_it_moves_a_caller_to_the_overflow_queue(make_session: Session) -> None:
    first_line, second_line = make_operator("first", available=False), make_operator("second")
    backup = make_queue("backup", [second_line], max_wait_s=120)
    front = make_queue("front", [first_line], overflow="queue", overflow_queue=backup)
    call = call_in(front, make_session)
    assert pending_operators(call) == []  # nobody available in front
    wait_passes(call)
    moved = Call.objects.get(pk=call.pk)
    assert (moved.state, moved.queue_id) == ("ringing", backup.pk)
    assert moved.ring_deadline is not None and moved.ring_deadline > timezone.now()
    overflowed = CallEvent.objects.get(call=call, name="queue.overflowed")
    assert (overflowed.data["from"], overflowed.data["to"]) == ("front", "backup")
    assert pending_operators(call) == ["second"]
    assert answer(second_line, call.pk).status_code == 200


def test_it_refuses_a_caller_nobody_took_with_no_operator(make_session: Session) -> None:
    agent = make_operator("agent")
    queue = make_queue("strict", [agent], overflow="refuse")
    call = call_in(queue, make_session)
    offer = pending_of(agent)
    assert offer is not None
    wait_passes(call)
    ended = Call.objects.get(pk=call.pk)
    assert (ended.state, ended.end_reason, ended.ended_by_role) == (
        "missed",
        "no_operator",
        "system",
    )
    offer.refresh_from_db()
    assert offer.outcome == "cancelled"
    assert pending_of(agent) is None


def test_it_lets_exactly_one_of_two_operators_answer_at_once(make_session: Session) -> None:
    both = [make_operator("left"), make_operator("right")]
    queue = make_queue("hotline", both, strategy="ring_all")
    for round_ in range(4):
        call = call_in(queue, make_session, f"caller{round_}")
        assert pending_operators(call) == ["left", "right"]
        responses = in_threads(lambda user, call=call: answer(user, call.pk), both)
        assert sorted(r.status_code for r in responses) == [200, 409], responses
        loser = next(r for r in responses if r.status_code == 409)
        assert loser.json()["code"] == "CALL_STATE"
        outcomes = sorted(QueueOffer.objects.filter(call=call).values_list("outcome", flat=True))
        assert outcomes == ["answered", "cancelled"]
        assert CallEvent.objects.filter(call=call, name="call.answered").count() == 1
        assert call.legs.filter(role="operator").count() == 1
        winner = Call.objects.get(pk=call.pk).operator_user
        assert hang_up(winner, call.pk).status_code == 200


def test_it_forbids_answering_a_queued_call_offered_to_someone_else(
    make_session: Session,
) -> None:
    rung, other = make_operator("rung"), make_operator("other", available=False)
    queue = make_queue("vip", [rung, other], strategy="round_robin")
    call = call_in(queue, make_session)
    response = answer(other, call.pk)
    assert response.status_code == 403 and response.json()["code"] == "FORBIDDEN"
    assert Call.objects.get(pk=call.pk).state == "ringing"
    assert pending_operators(call) == ["rung"]


def test_it_never_lets_an_operator_reject_a_queued_call_for_the_team(
    make_session: Session,
) -> None:
    rung, other = make_operator("rung"), make_operator("other", available=False)
    queue = make_queue("vip", [rung, other], strategy="round_robin")
    call = call_in(queue, make_session)
    for user in (rung, other):  # offered or not
        for verb in ("reject", "hangup"):
            response = client_of(user).post(f"/api/calls/{call.pk}/{verb}")
            assert response.status_code == 403, (user, verb, response.content)
            assert response.json()["code"] == "FORBIDDEN"
    assert Call.objects.get(pk=call.pk).state == "ringing"
    assert pending_operators(call) == ["rung"]
    assert answer(rung, call.pk).status_code == 200


def test_it_lets_an_integrators_backend_end_a_queued_call(make_session: Session) -> None:
    rung = make_operator("rung")
    call = call_in(make_queue("vip", [rung], strategy="round_robin"), make_session)
    _, secret = ApiToken.create("backend")
    backend = APIClient()
    backend.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert backend.post(f"/api/calls/{call.pk}/hangup").status_code == 200
    assert Call.objects.get(pk=call.pk).end_reason == "rejected"
    assert pending_operators(call) == []


def test_it_frees_the_operator_when_the_caller_gives_up(make_session: Session) -> None:
    agent = make_operator("agent")
    queue = make_queue("desk", [agent], strategy="round_robin")
    session, _ = make_session("Ada")
    first = Call.start(
        by=Principal.end_user(session), mode="bridge", media_worker="embedded", queue=queue
    )
    second = call_in(queue, make_session, "Bob")
    assert pending_operators(first) == ["agent"]
    first.hang_up(Principal.end_user(session))
    assert QueueOffer.objects.get(call=first).outcome == "cancelled"
    assert pending_operators(second) == ["agent"]


def test_it_makes_no_offers_in_the_default_queue(make_session: Session) -> None:
    agent = make_operator("agent")
    session, _ = make_session("Ada")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    assert call.queue is not None and call.queue.is_default
    assert not QueueOffer.objects.exists()
    assert answer(agent, call.pk).status_code == 200  # open answer, as before queues
    assert Call.objects.get(pk=call.pk).operator_user == agent


def test_it_rings_the_next_operator_when_the_rung_one_goes_away(make_session: Session) -> None:
    first, second = make_operator("first"), make_operator("second")
    queue = make_queue("desk", [first, second], strategy="round_robin")
    call = call_in(queue, make_session)
    assert pending_operators(call) == ["first"]
    OperatorStatus.set_availability(first, "away", Principal.staff(first))
    assert QueueOffer.objects.get(call=call, operator=first).outcome == "cancelled"
    assert pending_operators(call) == ["second"]


def test_it_stops_ringing_an_operator_who_answers_another_call(make_session: Session) -> None:
    both = make_operator("both")
    other = make_operator("other", available=False)
    queue = make_queue("desk", [both, other], strategy="round_robin")
    queued = call_in(queue, make_session, "Ada")
    assert pending_operators(queued) == ["both"]
    session, _ = make_session("Bob")
    walk_in = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    assert answer(both, walk_in.pk).status_code == 200  # the default queue: open answer
    assert QueueOffer.objects.get(call=queued, operator=both).outcome == "cancelled"
    assert pending_operators(queued) == []  # busy: not rung again
    OperatorStatus.set_availability(other, "available", Principal.staff(other))
    assert pending_operators(queued) == ["other"]


def test_it_expires_an_offer_once_when_two_processes_sweep_at_once(make_session: Session) -> None:
    first, second = make_operator("first"), make_operator("second")
    queue = make_queue("desk", [first, second], strategy="round_robin")
    call = call_in(queue, make_session)
    QueueOffer.objects.update(deadline=timezone.now() - timedelta(seconds=1))
    results = in_threads(lambda _: routing_deadlines.sweep(), [1, 2])
    assert not [r for r in results if isinstance(r, Exception)], results
    assert CallEvent.objects.filter(call=call, name="queue.offer_missed").count() == 1
    assert OperatorStatus.objects.get(user=first).missed_in_a_row == 1
    assert pending_operators(call) == ["second"]
    assert_never_overlapping()
