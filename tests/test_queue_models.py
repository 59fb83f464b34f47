"""Queues, operator statuses and offers: the records and the database's guarantees."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from calls.model_signals import operator_available, operator_status_changed
from calls.models import (
    Activity,
    Availability,
    Call,
    EndUserSession,
    OfferOutcome,
    OperatorStatus,
    Queue,
    QueueOffer,
    activities,
    activity_of,
)
from calls.operators import operators_group
from calls.principals import Principal

pytestmark = pytest.mark.django_db


def make_operator(name: str, *, operator: bool = True, staff: bool = True) -> Any:
    user = get_user_model().objects.create_user(username=name, password="x", is_staff=staff)
    if operator:
        user.groups.add(operators_group())
    return user


def offer(call: Call, user: Any, **fields: Any) -> QueueOffer:
    now = timezone.now()
    assert call.queue is not None
    return QueueOffer.objects.create(
        call=call, queue=call.queue, operator=user, deadline=now + timedelta(seconds=20), **fields
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_makes_the_default_queue_in_its_migration_reversibly(settings: Any) -> None:
    settings.CALLBRIDGE_RING_TIMEOUT_S = 33
    executor = MigrationExecutor(connection)
    executor.migrate([("calls", "0010_operator_permission")])
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes("calls"))
    default = Queue.objects.get(is_default=True)
    assert (default.ring_timeout_s, default.max_wait_s) == (33, 33)
    assert (default.public_id, default.name, default.strategy) == (
        "default",
        "Everyone",
        "ring_all",
    )
    assert default.all_operators and default.open_answer
    assert default.overflow == "refuse"


def test_it_keeps_at_most_one_default_queue() -> None:
    Queue.objects.default()  # made again if a flushing test ran before on this database
    with pytest.raises(IntegrityError), transaction.atomic():
        Queue.objects.create(name="Other", public_id="other", is_default=True)


def test_it_refuses_an_overflow_to_no_queue() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Queue.objects.create(name="Sales", public_id="sales", overflow="queue")


def test_it_puts_end_users_calls_in_the_default_queue(inbound_call: Call) -> None:
    assert inbound_call.queue == Queue.objects.default()
    assert inbound_call.queued_at == inbound_call.created_at
    joined = inbound_call.events.get(name="queue.joined")
    assert joined.data == {"queue": "default", "queueName": "Everyone"}


def test_it_puts_a_call_in_the_queue_its_caller_named(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    sales = Queue.objects.create(name="Sales", public_id="sales")
    session, _ = make_session()
    call = Call.start(
        by=Principal.end_user(session), mode="bridge", media_worker="embedded", queue=sales
    )
    assert call.queue == sales


def test_it_gives_outbound_and_echo_calls_no_queue(
    staff_user: Any, make_session: Callable[..., tuple[EndUserSession, str]]
) -> None:
    session, _ = make_session()
    operator = Principal.staff(staff_user)
    outbound = Call.start(by=operator, mode="bridge", session=session, media_worker="embedded")
    echo = Call.start(by=operator, mode="echo", media_worker="embedded")
    assert (outbound.queue, outbound.queued_at, echo.queue) == (None, None, None)
    assert not outbound.events.filter(name="queue.joined").exists()


def test_it_makes_the_default_queue_again_when_it_is_missing(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    Queue.objects.all().delete()
    session, _ = make_session()
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    assert call.queue is not None and call.queue.is_default and call.queue.open_answer


def test_it_lists_a_queues_members_holding_the_operator_permission() -> None:
    direct, grouped, not_operator, other = (
        make_operator("direct"),
        make_operator("grouped"),
        make_operator("plain", operator=False),
        make_operator("other"),
    )
    team = Group.objects.create(name="Support team")
    grouped.groups.add(team)
    not_operator.groups.add(team)
    support = Queue.objects.create(name="Support", public_id="support")
    support.members.add(direct)
    support.member_groups.add(team)
    assert set(support.member_users()) == {direct, grouped}
    assert set(Queue.objects.default().member_users()) == {direct, grouped, other}
    assert set(Queue.objects.for_operator(grouped)) == {support, Queue.objects.default()}
    assert set(Queue.objects.for_operator(other)) == {Queue.objects.default()}
    assert not Queue.objects.for_operator(not_operator).exists()


def test_it_starts_operators_offline_and_records_who_set_their_availability(
    django_capture_on_commit_callbacks: Any,
) -> None:
    user = make_operator("bob")
    assert OperatorStatus.for_user(user).availability == Availability.OFFLINE
    changed: list[int] = []
    available: list[int] = []

    def on_changed(user_id: int, **kwargs: Any) -> None:
        changed.append(user_id)

    def on_available(user_id: int, **kwargs: Any) -> None:
        available.append(user_id)

    operator_status_changed.connect(on_changed)
    operator_available.connect(on_available)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            OperatorStatus.set_availability(user, "available", Principal.staff(user))
            assert available == []  # only once committed
        for availability in ("available", "away"):
            with django_capture_on_commit_callbacks(execute=True):
                OperatorStatus.set_availability(user, availability, Principal.staff(user))
    finally:
        operator_status_changed.disconnect(on_changed)
        operator_available.disconnect(on_available)
    status = OperatorStatus.objects.get(user=user)
    assert status.availability == "away"
    assert status.availability_changed_by == "operator bob"
    assert status.availability_changed_at is not None
    assert changed == [user.pk] * 3
    assert available == [user.pk]  # available → available is no change


def test_it_refuses_an_unknown_availability() -> None:
    user = make_operator("bob")
    with pytest.raises(ValueError):
        OperatorStatus.set_availability(user, "asleep", Principal.staff(user))
    assert OperatorStatus.for_user(user).availability == Availability.OFFLINE


def test_it_derives_each_operators_activity_in_three_queries(
    inbound_call: Call,
    make_session: Callable[..., tuple[EndUserSession, str]],
    django_assert_num_queries: Any,
) -> None:
    ringing, busy, wrapping, idle = (make_operator(n) for n in ("r", "b", "w", "i"))
    offer(inbound_call, ringing)
    session, _ = make_session("Grace")
    Call.start(by=Principal.staff(busy), mode="bridge", session=session, media_worker="embedded")
    OperatorStatus.objects.create(
        user=wrapping, wrap_up_until=timezone.now() + timedelta(seconds=30)
    )
    OperatorStatus.objects.create(user=idle, wrap_up_until=timezone.now() - timedelta(seconds=1))
    ids = [ringing.pk, busy.pk, wrapping.pk, idle.pk]
    with django_assert_num_queries(3):
        found = activities(ids)
    assert [found[i] for i in ids] == [
        Activity.RINGING,
        Activity.BUSY,
        Activity.WRAP_UP,
        Activity.IDLE,
    ]
    assert activity_of(idle.pk) == Activity.IDLE


def test_it_refuses_a_second_pending_offer_for_one_operator(
    inbound_call: Call, make_session: Callable[..., tuple[EndUserSession, str]]
) -> None:
    user = make_operator("bob")
    offer(inbound_call, user)
    session, _ = make_session("Grace")
    second = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    with pytest.raises(IntegrityError), transaction.atomic():
        offer(second, user)
    # Ended offers do not count.
    QueueOffer.objects.update(outcome=OfferOutcome.MISSED, ended_at=timezone.now())
    offer(second, user)


def test_it_refuses_an_ended_offer_without_its_end(inbound_call: Call) -> None:
    pending = offer(inbound_call, make_operator("bob"))
    with pytest.raises(IntegrityError), transaction.atomic():
        QueueOffer.objects.filter(pk=pending.pk).update(outcome=OfferOutcome.MISSED)


@pytest.mark.django_db(transaction=True)
def test_it_lets_one_of_two_threads_offer_an_operator_at_once(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    user = make_operator("bob")
    calls = []
    for name in ("Ada", "Grace"):
        session, _ = make_session(name)
        calls.append(
            Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
        )
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def contend(call: Call) -> None:
        try:
            start.wait(timeout=10)
            with transaction.atomic():
                offer(call, user)
            outcomes.append("offered")
        except IntegrityError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=contend, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["offered", "refused"]
    assert QueueOffer.objects.filter(operator=user, outcome="pending").count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_makes_one_status_row_when_two_threads_set_a_new_operators_availability() -> None:
    user = make_operator("bob")
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def set_to(availability: str) -> None:
        try:
            start.wait(timeout=10)
            OperatorStatus.set_availability(user, availability, Principal.staff(user))
        except BaseException as error:  # reported below: a thread's exception is lost
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=set_to, args=(a,)) for a in ("available", "away")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert OperatorStatus.objects.filter(user=user).count() == 1
    assert OperatorStatus.objects.get(user=user).availability in ("available", "away")
