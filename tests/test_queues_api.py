"""REST: operators' availability, the queues, and end users calling a queue; the admin pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from calls.models import (
    Call,
    EndUserSession,
    OperatorStatus,
    Queue,
)
from calls.operators import operators_group
from calls.principals import Principal
from tests.support.rest_client import assert_error, bearer_client

pytestmark = pytest.mark.django_db

STATUS = "/api/operators/me/status"


def staff_client(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def make_operator(name: str) -> Any:
    user = get_user_model().objects.create_user(username=name, password="x", is_staff=True)
    user.groups.add(operators_group())
    return user


def test_it_shows_a_new_operator_offline_and_idle(staff_user: Any) -> None:
    body = staff_client(staff_user).get(STATUS).json()
    assert body["operator"] == "alice"
    assert (body["availability"], body["activity"]) == ("offline", "idle")
    assert body["availabilityChangedAt"] is None


def test_it_sets_the_operators_availability(
    staff_user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client = staff_client(staff_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.put(STATUS, {"availability": "available"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["availability"] == "available"
    assert response.json()["availabilityChangedBy"] == "operator alice"
    assert client.get(STATUS).json()["availability"] == "available"
    assert OperatorStatus.objects.get(user=staff_user).availability == "available"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"availability": "asleep"}, "INVALID_ARGUMENT"),
        ({"availability": 3}, "INVALID_ARGUMENT"),
        ({}, "INVALID_MESSAGE"),  # a required field missing, as everywhere in the API
    ],
)
def test_it_refuses_a_bad_availability_and_changes_nothing(
    staff_user: Any, body: Any, code: str
) -> None:
    client = staff_client(staff_user)
    assert_error(client.put(STATUS, body, format="json"), 400, code)
    assert client.get(STATUS).json()["availability"] == "offline"


def test_it_refuses_a_body_that_is_not_an_object(staff_user: Any) -> None:
    response = staff_client(staff_user).put(STATUS, ["available"], format="json")
    assert_error(response, 400, "INVALID_MESSAGE")


def test_it_refuses_api_tokens_a_status_of_their_own(operator_client: APIClient) -> None:
    body = assert_error(operator_client.get(STATUS), 403, "FORBIDDEN")
    assert "API tokens have no availability" in body["message"]
    response = operator_client.put(STATUS, {"availability": "available"}, format="json")
    assert_error(response, 403, "FORBIDDEN")
    assert not OperatorStatus.objects.exists()


def test_it_refuses_end_users_and_strangers(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    _, token = make_session()
    end_user = bearer_client(token)
    for path in (STATUS, "/api/operators", "/api/queues", "/api/queues/default"):
        assert_error(end_user.get(path), 403, "FORBIDDEN")
        assert_error(APIClient().get(path), 401, "UNAUTHORIZED")


def test_it_lists_every_operators_status(staff_user: Any, operator_client: APIClient) -> None:
    bob = make_operator("bob")
    OperatorStatus.set_availability(bob, "away", Principal.staff(bob))
    get_user_model().objects.create_user(username="clerk", password="x", is_staff=True)
    for client in (staff_client(staff_user), operator_client):
        listed = client.get("/api/operators").json()
        assert [(o["operator"], o["availability"]) for o in listed] == [
            ("alice", "offline"),
            ("bob", "away"),
        ]  # the clerk is staff without the operator permission: not an operator


def test_it_lists_the_queues_with_their_waiting_callers(
    staff_user: Any, inbound_call: Call, make_session: Callable[..., tuple[EndUserSession, str]]
) -> None:
    support = Queue.objects.create(name="Support", public_id="support")
    support.members.add(staff_user)
    listed = staff_client(staff_user).get("/api/queues").json()
    assert [q["queue"] for q in listed] == ["default", "support"]
    default, mine = listed
    assert (default["waiting"], default["isDefault"], default["openAnswer"]) == (1, True, True)
    assert default["longestWaitS"] >= 0
    assert (mine["waiting"], mine["longestWaitS"], mine["memberCount"]) == (0, None, 1)


def test_it_shows_one_queue_with_its_members_statuses(staff_user: Any) -> None:
    bob = make_operator("bob")
    support = Queue.objects.create(name="Support", public_id="support", strategy="longest_idle")
    support.members.add(bob)
    OperatorStatus.set_availability(bob, "available", Principal.staff(bob))
    body = staff_client(staff_user).get("/api/queues/support").json()
    assert (body["name"], body["strategy"], body["waiting"]) == ("Support", "longest_idle", 0)
    assert [(m["operator"], m["availability"], m["activity"]) for m in body["members"]] == [
        ("bob", "available", "idle")
    ]


def test_it_answers_not_found_for_an_unknown_queue(staff_user: Any) -> None:
    assert_error(staff_client(staff_user).get("/api/queues/nope"), 404, "NOT_FOUND")


def test_it_lets_an_end_user_call_a_named_queue(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    Queue.objects.create(name="Sales", public_id="sales")
    _, token = make_session()
    response = bearer_client(token).post("/api/calls", {"queue": "sales"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["queue"] == "sales" and response.json()["queuedAt"]
    call = Call.objects.get()
    assert call.events.get(name="queue.joined").data["queue"] == "sales"


def test_it_puts_an_end_users_call_naming_no_queue_in_the_default_one(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    _, token = make_session()
    response = bearer_client(token).post("/api/calls", {}, format="json")
    assert response.status_code == 201 and response.json()["queue"] == "default"


def test_it_refuses_an_unknown_queue_and_places_no_call(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    _, token = make_session()
    client = bearer_client(token)
    assert_error(client.post("/api/calls", {"queue": "nope"}, format="json"), 404, "NOT_FOUND")
    bad = client.post("/api/calls", {"queue": "not a slug!"}, format="json")
    assert_error(bad, 400, "INVALID_ARGUMENT")
    assert not Call.objects.exists()


def test_it_refuses_a_queue_on_operators_and_echo_calls(
    operator_client: APIClient, make_session: Callable[..., tuple[EndUserSession, str]]
) -> None:
    session, token = make_session()
    outbound = {"sessionId": str(session.pk), "queue": "default"}
    assert_error(
        operator_client.post("/api/calls", outbound, format="json"), 400, "INVALID_ARGUMENT"
    )
    echo = bearer_client(token).post(
        "/api/calls", {"mode": "echo", "queue": "default"}, format="json"
    )
    assert_error(echo, 400, "INVALID_ARGUMENT")
    assert not Call.objects.exists()


# --- admin -------------------------------------------------------------------------------------
@pytest.fixture
def admin_client(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def test_it_lists_and_edits_queues_in_the_admin(
    admin_client: Client, staff_user: Any, inbound_call: Call
) -> None:
    listing = admin_client.get("/admin/calls/queue/")
    assert listing.status_code == 200
    assert b"Everyone" in listing.content and b"all operators (2)" in listing.content
    added = admin_client.get("/admin/calls/queue/add/")
    assert added.status_code == 200 and b"selectfilter" in added.content
    assert b'id="id_members"' in added.content
    default = Queue.objects.default()
    assert admin_client.get(f"/admin/calls/queue/{default.pk}/change/").status_code == 200
    assert admin_client.get(f"/admin/calls/queue/{default.pk}/delete/").status_code == 403


def test_it_refuses_an_overflow_queue_missing_in_the_admin(admin_client: Client) -> None:
    form = {
        "name": "Sales",
        "public_id": "sales",
        "strategy": "ring_all",
        "ring_timeout_s": 20,
        "max_wait_s": 300,
        "wrap_up_s": 0,
        "overflow": "queue",
    }
    response = admin_client.post("/admin/calls/queue/add/", form)
    assert response.status_code == 200 and b"choose the queue callers move to" in response.content
    form["overflow_queue"] = str(Queue.objects.default().pk)
    assert admin_client.post("/admin/calls/queue/add/", form).status_code == 302
    assert Queue.objects.get(public_id="sales").overflow_queue == Queue.objects.default()


def test_it_shows_operator_statuses_read_only_in_the_admin(
    admin_client: Client, staff_user: Any
) -> None:
    OperatorStatus.set_availability(staff_user, "available", Principal.staff(staff_user))
    listing = admin_client.get("/admin/calls/operatorstatus/")
    assert listing.status_code == 200
    assert b"alice" in listing.content and b"idle" in listing.content
    assert admin_client.get("/admin/calls/operatorstatus/add/").status_code == 403


def test_it_keeps_staff_without_permissions_out_of_the_queue_admin(staff_user: Any) -> None:
    client = Client()
    client.force_login(staff_user)  # an operator, not a supervisor: no model permissions
    assert client.get("/admin/calls/queue/").status_code == 403
    assert client.get("/admin/calls/operatorstatus/").status_code == 403
