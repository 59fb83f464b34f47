"""`GET /api/calls/{id}/events`: a call's timeline, as each asker's socket saw it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from calls.models import Call, CallEvent, EndUserSession
from calls.principals import Principal
from tests.support.queues import client_of, make_operator
from tests.support.rest_client import assert_error, bearer_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def talked(
    make_session: Callable[..., tuple[EndUserSession, str]], operator: Principal
) -> tuple[Call, str]:
    """An end user's call, answered by the token, held, resumed and hung up by the user."""
    session, user_token = make_session("Ada")
    caller = Principal.end_user(session)
    call = Call.start(by=caller, mode="bridge", media_worker="embedded")
    call.answer(operator)
    call.hold(operator)
    call.resume(operator)
    call.hang_up(caller)
    return call, user_token


def names(body: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(event["name"], event["state"]) for event in body]


def test_it_shows_parties_what_their_socket_saw_and_operators_the_feed(
    talked: tuple[Call, str], operator_client: Any
) -> None:
    call, user_token = talked
    path = f"/api/calls/{call.pk}/events"

    mine = bearer_client(user_token).get(path)
    assert mine.status_code == 200, mine.json()
    assert names(mine.json()) == [
        ("call.ringing", "ringing"),
        ("call.answered", "active"),
        ("call.held", "active"),
        ("call.resumed", "active"),
        ("call.ended", "ended"),
    ]
    ended = mine.json()[-1]
    assert ended["reason"] == "hangup" and ended["mode"] == "bridge"
    for event in mine.json():  # never an operator's account, never a record's name
        assert not {"actor", "actorRole", "record", "call", "operator"} & set(event)
        assert "crm-backend" not in str(event)

    theirs = operator_client.get(path).json()
    records = CallEvent.objects.filter(call=call).order_by("created_at", "id")
    assert [event["eventID"] for event in theirs] == [record.pk for record in records]
    assert [event["record"] for event in theirs] == [record.name for record in records]
    assert theirs[0]["name"] == "call.incoming" and theirs[0]["state"] == "ringing"
    assert theirs[0]["at"] == records[0].created_at.isoformat()
    answered = next(event for event in theirs if event["record"] == "call.answered")
    assert answered["actor"].startswith("api token crm-backend")
    assert answered["actorRole"] == "operator" and answered["state"] == "active"
    assert "call" not in answered  # the call now: GET /api/calls/{id}
    resumed = next(event for event in theirs if event["record"] == "call.resumed")
    assert resumed["held"] is False and "heldS" in resumed


def test_it_pages_the_timeline_forwards(talked: tuple[Call, str], operator_client: Any) -> None:
    call, user_token = talked
    whole = operator_client.get(f"/api/calls/{call.pk}/events").json()
    seen: list[dict[str, Any]] = []
    url: str | None = f"/api/calls/{call.pk}/events?limit=2"
    while url is not None:
        page = operator_client.get(url)
        assert len(page.json()) <= 2
        seen += page.json()
        url = next_link(page)
    assert seen == whole and len(whole) > 4
    # A party's page starting mid-call knows the state the call was in then.
    second = next_link(bearer_client(user_token).get(f"/api/calls/{call.pk}/events?limit=2"))
    assert second is not None
    assert names(bearer_client(user_token).get(second).json())[0][1] == "active"
    assert_error(
        operator_client.get(f"/api/calls/{call.pk}/events?cursor=bogus"), 400, "INVALID_ARGUMENT"
    )


def next_link(response: Any) -> str | None:
    for part in response.get("Link", "").split(","):
        if 'rel="next"' in part:
            return part.split(";")[0].strip().strip("<>")
    return None


def test_it_refuses_strangers(
    talked: tuple[Call, str], make_session: Callable[..., tuple[EndUserSession, str]]
) -> None:
    call, _ = talked
    _, stranger = make_session("Eve")
    assert_error(bearer_client(stranger).get(f"/api/calls/{call.pk}/events"), 403, "FORBIDDEN")
    other_operator = client_of(make_operator("bob"))  # operators see every call
    assert other_operator.get(f"/api/calls/{call.pk}/events").status_code == 200
    missing = bearer_client(stranger).get(f"/api/calls/{'0' * 8}-0000-0000-0000-{'0' * 12}/events")
    assert_error(missing, 404, "NOT_FOUND")
