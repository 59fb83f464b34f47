"""Queue statistics (calls.queue_stats) through the REST API and the admin.

Calls are made and ended through the model verbs as callers and operators would; their
timestamps are then set on the rows to known instants of one past day, so each number
the statistics report can be checked exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
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
from calls.routing import engine
from tests.support.queues import call_in, client_of
from tests.support.rest_client import assert_error

pytestmark = pytest.mark.django_db

Session = Callable[..., tuple[EndUserSession, str]]
DAY = datetime(2026, 1, 5, tzinfo=UTC)
T0 = DAY + timedelta(hours=10)
PERIOD = {"since": "2026-01-05", "until": "2026-01-05"}  # the whole day (TIME_ZONE is UTC)


def make_operator(name: str) -> Any:
    user = get_user_model().objects.create_user(username=name, password="x", is_staff=True)
    user.groups.add(operators_group())
    return user


def at(call: Call, queued: float, answered: float | None = None, ended: float | None = None):
    """Move the call's times to T0 + these seconds."""
    Call.objects.filter(pk=call.pk).update(
        queued_at=T0 + timedelta(seconds=queued),
        answered_at=None if answered is None else T0 + timedelta(seconds=answered),
        ended_at=None if ended is None else T0 + timedelta(seconds=ended),
    )


@pytest.fixture
def day(make_session: Session) -> dict[str, Any]:
    """One day of the `sales` queue (any operator answers it: no offers needed)."""
    bob, carol = make_operator("bob"), make_operator("carol")
    sales = Queue.objects.create(name="Sales", public_id="sales", open_answer=True)
    sales.members.set([bob, carol])
    quick = call_in(sales, make_session)  # answered in 10 s, talked 60 s
    quick.answer(Principal.staff(bob))
    quick.hang_up(Principal.staff(bob))
    at(quick, 0, 10, 70)
    slow = call_in(sales, make_session)  # answered in 30 s, talked 120 s
    slow.answer(Principal.staff(bob))
    slow.hang_up(Principal.staff(bob))
    at(slow, 100, 130, 250)
    exactly = call_in(sales, make_session)  # answered at the service level, 20 s; still on
    exactly.answer(Principal.staff(carol))
    at(exactly, 300, 320)
    gave_up = call_in(sales, make_session)  # the caller hangs up after 40 s
    gave_up.hang_up(Principal.end_user(gave_up.session))
    at(gave_up, 400, None, 440)
    refused = call_in(sales, make_session)
    refused.refuse()
    at(refused, 500, None, 800)
    missed = call_in(sales, make_session)
    missed.miss()
    at(missed, 900, None, 945)
    yesterday = call_in(sales, make_session)  # outside the period
    yesterday.answer(Principal.staff(carol))
    yesterday.hang_up(Principal.staff(carol))
    at(yesterday, -86400, -86390, -86000)
    # Waiting now: it joined `front` today and overflowed into `sales` (events are
    # append-only: its `queue.overflowed` stays today).
    front = Queue.objects.create(
        name="Front", public_id="front", overflow="queue", overflow_queue=sales
    )
    waiting = call_in(front, make_session)
    Call.objects.filter(pk=waiting.pk).update(ring_deadline=timezone.now() - timedelta(seconds=1))
    routing_deadlines.sweep()
    waiting.refresh_from_db()
    assert waiting.queue_id == sales.pk
    Call.objects.filter(pk=waiting.pk).update(queued_at=timezone.now() - timedelta(seconds=50))
    return {"bob": bob, "carol": carol, "sales": sales, "front": front}


def test_it_reports_a_queues_day(day: dict[str, Any]) -> None:
    body = client_of(day["bob"]).get("/api/queues/sales/stats", PERIOD).json()
    assert body["queue"] == "sales" and body["name"] == "Sales"
    assert body["since"].startswith("2026-01-05T00:00:00")
    assert body["until"].startswith("2026-01-06T00:00:00")
    assert body["waiting"] == 1
    assert 50 <= body["longestWaitS"] < 600
    assert body["joined"] == 6  # the waiting caller joined sales now, not in the period
    assert body["answered"] == 3
    assert body["serviceLevelS"] == 20
    assert body["answeredWithinServiceLevel"] == 2  # 10 s and exactly 20 s
    assert body["serviceLevelPct"] == pytest.approx(66.7)
    assert (body["abandoned"], body["missed"], body["refused"]) == (1, 1, 1)
    assert body["overflowed"] == 0
    assert body["averageWaitS"] == pytest.approx(20.0)  # (10 + 30 + 20) / 3
    assert body["averageHandleS"] == pytest.approx(90.0)  # (60 + 120) / 2: one still on
    front = client_of(day["bob"]).get("/api/queues/front/stats", PERIOD).json()
    assert (front["overflowed"], front["waiting"], front["joined"]) == (0, 0, 0)
    assert front["serviceLevelPct"] is None and front["averageWaitS"] is None
    today = client_of(day["bob"]).get("/api/queues/front/stats").json()
    assert (today["overflowed"], today["waiting"], today["joined"]) == (1, 0, 0)


def test_it_honours_the_service_level_setting(day: dict[str, Any], settings: Any) -> None:
    settings.CALLBRIDGE_SERVICE_LEVEL_S = 30
    body = client_of(day["bob"]).get("/api/queues/sales/stats", PERIOD).json()
    assert (body["serviceLevelS"], body["answeredWithinServiceLevel"]) == (30, 3)
    assert body["serviceLevelPct"] == 100.0


def test_it_reports_each_operators_day(day: dict[str, Any], make_session: Session) -> None:
    # A queue that offers: dave lets one offer ring out in the period.
    dave = make_operator("dave")
    support = Queue.objects.create(name="Support", public_id="support", strategy="round_robin")
    support.members.set([dave])
    OperatorStatus.set_availability(dave, Availability.AVAILABLE, Principal.staff(dave))
    call = call_in(support, make_session)
    engine.route(support.pk)
    offer = QueueOffer.objects.get(operator=dave, outcome=OfferOutcome.PENDING)
    QueueOffer.objects.filter(pk=offer.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    routing_deadlines.sweep()  # rang out; the only member is rung again, and declines
    assert client_of(dave).post(f"/api/calls/{call.pk}/decline").status_code == 200
    assert QueueOffer.objects.filter(operator=dave).update(offered_at=T0) == 2
    body = client_of(day["bob"]).get("/api/operators/stats", PERIOD).json()
    rows = {row["operator"]: row for row in body}
    assert rows["bob"] == {
        "operator": "bob",
        "displayName": "",
        "answered": 2,
        "offersMissed": 0,
        "offersDeclined": 0,
        "talkTimeS": 180.0,
    }
    assert (rows["carol"]["answered"], rows["carol"]["offersMissed"]) == (1, 0)
    assert rows["carol"]["talkTimeS"] == 0.0  # her call is still on
    dave_row = rows["dave"]
    assert (dave_row["answered"], dave_row["offersMissed"], dave_row["offersDeclined"]) == (0, 1, 1)
    only_support = (
        client_of(day["bob"]).get("/api/operators/stats", {**PERIOD, "queue": "support"}).json()
    )
    assert [(r["operator"], r["answered"], r["offersMissed"]) for r in only_support] == [
        ("dave", 0, 1)
    ]


def test_it_counts_with_a_handful_of_queries(day: dict[str, Any]) -> None:
    client = client_of(day["bob"])
    with CaptureQueriesContext(connection) as few:
        client.get("/api/queues/sales/stats", PERIOD)
    make_operator("dave")
    with CaptureQueriesContext(connection) as more:
        client.get("/api/operators/stats", PERIOD)
    assert len(few) <= 10
    assert len(more) <= 10


def test_it_defaults_to_today(day: dict[str, Any]) -> None:
    body = client_of(day["bob"]).get("/api/queues/sales/stats").json()
    today = timezone.localdate().isoformat()
    assert body["since"].startswith(today)
    assert (body["joined"], body["answered"], body["waiting"]) == (1, 0, 1)


@pytest.mark.parametrize(
    "query",
    [
        {"since": "yesterday"},
        {"until": "2026-13-01"},
        {"since": "2026-01-05T25:00"},
        {"until": "9999-12-31"},
        {"since": "9999-12-31T23:59:59-05:00"},
        {"since": "2026-01-05T10:00+25:00"},
        {"since": "2026-01-06", "until": "2026-01-05"},
    ],
)
def test_it_refuses_a_bad_period(day: dict[str, Any], query: dict[str, str]) -> None:
    response = client_of(day["bob"]).get("/api/queues/sales/stats", query)
    assert_error(response, 400, "INVALID_ARGUMENT")
    response = client_of(day["bob"]).get("/api/operators/stats", query)
    assert_error(response, 400, "INVALID_ARGUMENT")


def test_it_refuses_an_unknown_queue_and_non_operators(
    day: dict[str, Any], make_session: Session
) -> None:
    assert_error(client_of(day["bob"]).get("/api/queues/nope/stats"), 404, "NOT_FOUND")
    assert_error(
        client_of(day["bob"]).get("/api/operators/stats", {"queue": "nope"}), 404, "NOT_FOUND"
    )
    _, token = make_session("Eve")
    end_user = APIClient()
    end_user.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert end_user.get("/api/queues/sales/stats").status_code == 403
    assert end_user.get("/api/operators/stats").status_code == 403


def test_it_shows_the_stats_in_the_admin_to_who_may_view_queues(day: dict[str, Any]) -> None:
    supervisor = get_user_model().objects.create_user(username="sue", password="x", is_staff=True)
    client = Client()
    client.force_login(supervisor)
    url = f"/admin/calls/queue/{day['sales'].pk}/stats/"
    assert client.get(url).status_code == 403
    supervisor.user_permissions.add(Permission.objects.get(codename="view_queue"))
    page = client.get(url, PERIOD)
    assert page.status_code == 200
    text = page.content.decode()
    assert "66.7" in text and "Sales" in text and "bob" in text
    assert url in client.get(f"/admin/calls/queue/{day['sales'].pk}/change/").content.decode()
    assert url in client.get("/admin/calls/queue/").content.decode()
    assert "INVALID" in client.get(url, {"since": "nonsense"}).content.decode().upper()
