"""Placement of new calls on media workers, and the end of a dead worker's calls.

(The same with real processes: tests/test_scale_out.py.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from calls.errors import CallbridgeError
from calls.models import Call, CallState, MediaWorkerStatus, WorkerState
from calls.principals import Principal
from calls.workers.placement import choose_worker, end_calls_of_silent_workers

pytestmark = pytest.mark.django_db


@pytest.fixture
def separate_workers(settings: Any) -> None:
    settings.CALLBRIDGE_EMBEDDED_MEDIA_WORKER = False
    settings.CALLBRIDGE_MEDIA_WORKER_TIMEOUT_S = 5
    settings.CALLBRIDGE_LIMIT_ECHO_CALLS = 100  # echo calls fill the workers here


def worker(name: str, capacity: int, state: str = "running", silent_for: float = 0.0) -> None:
    MediaWorkerStatus.objects.create(
        name=name,
        capacity=capacity,
        state=state,
        last_seen=timezone.now() - timedelta(seconds=silent_for),
    )


def echo_calls(operator: Principal, on: str, count: int) -> list[Call]:
    return [Call.start(by=operator, mode="echo", media_worker=on) for _ in range(count)]


def test_it_places_every_call_on_its_own_process_when_embedded(settings: Any) -> None:
    settings.CALLBRIDGE_MEDIA_WORKER_NAME = "here"
    worker("elsewhere", capacity=10)
    assert choose_worker() == "here"


def test_it_places_a_call_on_the_live_worker_with_the_most_room(
    separate_workers: None, operator: Principal
) -> None:
    worker("big", capacity=10)  # 2 of 10 in use
    worker("small", capacity=2)  # 1 of 2
    worker("leaving", capacity=10, state=WorkerState.DRAINING)
    worker("dead", capacity=10, silent_for=6)
    worker("gone", capacity=10, state=WorkerState.STOPPED)
    echo_calls(operator, "big", 2)
    echo_calls(operator, "small", 1)
    for ended in echo_calls(operator, "small", 3):
        ended.hang_up(operator)  # ended calls take no room
    assert choose_worker() == "big"
    echo_calls(operator, "big", 4)  # 6 of 10 now: more than half
    assert choose_worker() == "small"


def test_it_refuses_a_call_when_no_live_worker_has_room(
    separate_workers: None, operator: Principal
) -> None:
    worker("full", capacity=1)
    worker("dead", capacity=10, silent_for=6)
    echo_calls(operator, "full", 1)
    with pytest.raises(CallbridgeError) as refused:
        choose_worker()
    assert (refused.value.code, refused.value.recoverable) == ("MEDIA_BRIDGE_FAILURE", True)


def test_it_ends_the_calls_of_a_worker_that_stopped_beating(
    separate_workers: None, operator: Principal, make_session: Any
) -> None:
    worker("dead", capacity=10, silent_for=6)
    worker("alive", capacity=10)
    [lost] = echo_calls(operator, "dead", 1)
    session, _ = make_session()
    ringing = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="dead")
    [kept] = echo_calls(operator, "alive", 1)
    assert sorted(end_calls_of_silent_workers()) == sorted([lost.pk, ringing.pk])
    lost.refresh_from_db()
    ringing.refresh_from_db()
    kept.refresh_from_db()
    assert (lost.state, lost.end_reason, lost.ended_by_role) == ("ended", "media_failure", "system")
    assert (ringing.state, ringing.end_reason) == ("cancelled", "media_failure")
    assert kept.state == CallState.ACTIVE
    assert lost.events.filter(name="call.ended", data__reason="media_failure").count() == 1
    assert end_calls_of_silent_workers() == []  # nothing twice
