"""Queues, operators and waits for tests (as tests/test_routing.py makes them)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from calls.models import (
    Availability,
    Call,
    EndUserSession,
    OfferOutcome,
    OperatorStatus,
    Queue,
    QueueOffer,
)
from calls.operators import operators_group
from calls.principals import Principal
from calls.routing import deadlines as routing_deadlines


def make_operator(name: str, available: bool = True) -> Any:
    user = get_user_model().objects.create_user(username=name, password="x", is_staff=True)
    user.groups.add(operators_group())
    OperatorStatus.set_availability(
        user, Availability.AVAILABLE if available else Availability.OFFLINE, Principal.staff(user)
    )
    return user


def make_queue(public_id: str, members: Iterable[Any], **fields: Any) -> Queue:
    queue = Queue.objects.create(name=public_id.title(), public_id=public_id, **fields)
    queue.members.set(list(members))
    return queue


def answer(user: Any, call_id: Any) -> Any:
    """The staff operator answers through the REST API."""
    return client_of(user).post(f"/api/calls/{call_id}/answer")


def pending_of(user: Any) -> QueueOffer | None:
    return QueueOffer.objects.filter(operator=user, outcome=OfferOutcome.PENDING).first()


def in_threads(work: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """Run work(item) for every item at the same instant, each on its own connection."""
    start = threading.Barrier(len(items))
    results: list[Any] = [None] * len(items)

    def run(index: int, item: Any) -> None:
        try:
            start.wait(timeout=10)
            results[index] = work(item)
        except Exception as error:  # the caller's assertion shows it
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(items)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def wait_passes(call: Call) -> None:
    """The caller's maximum wait passes; the deadlines service sweeps, as its timer would."""
    Call.objects.filter(pk=call.pk).update(ring_deadline=timezone.now() - timedelta(seconds=1))
    routing_deadlines.sweep()


def call_in(
    queue: Queue, make_session: Callable[..., tuple[EndUserSession, str]], name: str = "Ada"
) -> Call:
    """An end user calls the queue (as POST /api/calls {queue} would)."""
    session, _ = make_session(name)
    return Call.start(
        by=Principal.end_user(session), mode="bridge", media_worker="embedded", queue=queue
    )


def client_of(user: Any) -> APIClient:
    """A REST client logged in as this staff user."""
    client = APIClient()
    client.force_login(user)
    return client


def hang_up(user: Any, call_id: Any) -> Any:
    return client_of(user).post(f"/api/calls/{call_id}/hangup")


def pending_operators(call: Call) -> list[str]:
    return sorted(
        QueueOffer.objects.filter(call=call, outcome=OfferOutcome.PENDING).values_list(
            "operator__username", flat=True
        )
    )


def ring_out(*offers: QueueOffer | None) -> None:
    """Their deadlines pass; the deadlines service sweeps."""
    past = timezone.now() - timedelta(seconds=1)
    QueueOffer.objects.filter(pk__in=[o.pk for o in offers if o is not None]).update(deadline=past)
    routing_deadlines.sweep()


def answered_call(
    make_session: Callable[..., tuple[EndUserSession, str]], operator: Any
) -> tuple[Call, str]:
    """An end user's call in the default queue, answered by `operator`: (call, user token)."""
    session, token = make_session("Ada")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    assert answer(operator, call.pk).status_code == 200
    return call, token


def event_names(call: Call, *prefixes: str) -> list[str]:
    """The names of the call's events that start with one of `prefixes`, oldest first."""
    return [n for n in call.events.values_list("name", flat=True) if n.startswith(prefixes)]
