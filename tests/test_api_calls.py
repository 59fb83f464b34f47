"""The REST call lifecycle and its error answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from calls.api.throttling import PrincipalRateThrottle
from calls.models import Call, CallEvent, EndUserSession
from calls.principals import Principal
from tests.support.rest_client import assert_error, bearer_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> tuple[EndUserSession, APIClient]:
    session, token = make_session("Ada")
    return session, bearer_client(token)


def test_it_runs_an_inbound_call_from_ring_to_hangup(
    ada: tuple[EndUserSession, APIClient], operator_client: APIClient
) -> None:
    session, user = ada
    created = user.post("/api/calls", {}, format="json")
    assert created.status_code == 201
    call = created.json()
    assert (call["state"], call["mode"], call["direction"]) == ("ringing", "bridge", "inbound")
    assert call["sessionId"] == str(session.pk)
    assert call["ringDeadline"] is not None and call["recording"] is None
    assert [leg["role"] for leg in call["legs"]] == ["user"]
    assert call["legs"][0]["mediaState"] == "new"

    ringing = operator_client.get("/api/calls?state=ringing").json()
    assert [c["callID"] for c in ringing] == [call["callID"]]

    answered = operator_client.post(f"/api/calls/{call['callID']}/answer").json()
    assert answered["state"] == "active" and answered["answeredAt"] is not None
    assert answered["ringDeadline"] is None
    assert sorted(leg["role"] for leg in answered["legs"]) == ["operator", "user"]

    ended = user.post(f"/api/calls/{call['callID']}/hangup").json()
    assert (ended["state"], ended["endReason"]) == ("ended", "hangup")
    assert ended["endedBy"] == {"role": "user", "name": "Ada"}  # the end user's own view
    seen_by_operator = operator_client.get(f"/api/calls/{call['callID']}").json()
    assert seen_by_operator["endedBy"]["name"] == f"end user Ada ({str(session.pk)[:8]})"
    again = operator_client.post(f"/api/calls/{call['callID']}/hangup")
    assert_error(again, 409, "CALL_STATE")


def test_it_lets_an_operator_ring_an_end_user_who_rejects(
    ada: tuple[EndUserSession, APIClient], operator_client: APIClient
) -> None:
    session, user = ada
    created = operator_client.post("/api/calls", {"sessionId": str(session.pk)}, format="json")
    assert created.status_code == 201
    call = created.json()
    assert (call["state"], call["direction"]) == ("ringing", "outbound")
    assert user.get("/api/calls?state=ringing").json()[0]["callID"] == call["callID"]
    rejected = user.post(f"/api/calls/{call['callID']}/reject").json()
    assert (rejected["state"], rejected["endReason"]) == ("rejected", "rejected")
    assert_error(user.post(f"/api/calls/{call['callID']}/answer"), 409, "CALL_STATE")


def test_it_cancels_when_the_caller_hangs_up_while_ringing(
    ada: tuple[EndUserSession, APIClient],
) -> None:
    _, user = ada
    call_id = user.post("/api/calls").json()["callID"]
    ended = user.post(f"/api/calls/{call_id}/hangup").json()
    assert (ended["state"], ended["endReason"]) == ("cancelled", "cancelled")


def test_it_starts_echo_calls_active(
    ada: tuple[EndUserSession, APIClient], operator_client: APIClient
) -> None:
    _, user = ada
    for client in (user, operator_client):
        call = client.post("/api/calls", {"mode": "echo"}, format="json").json()
        assert (call["state"], call["mode"]) == ("active", "echo")
        assert call["answeredAt"] == call["createdAt"]


def test_it_refuses_a_second_call_while_one_is_open(
    ada: tuple[EndUserSession, APIClient], operator_client: APIClient
) -> None:
    session, user = ada
    user.post("/api/calls")
    assert_error(user.post("/api/calls"), 409, "CALL_STATE")
    busy = operator_client.post("/api/calls", {"sessionId": str(session.pk)}, format="json")
    assert_error(busy, 409, "CALL_STATE")
    assert Call.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "INVALID_MESSAGE"),
        ("[1, 2]", "application/json", 400, "INVALID_MESSAGE"),
        ("[]", "application/json", 400, "INVALID_MESSAGE"),
        ("null", "application/json", 400, "INVALID_MESSAGE"),
        ('"echo"', "application/json", 400, "INVALID_MESSAGE"),
        ("mode=echo", "application/x-www-form-urlencoded", 400, "INVALID_MESSAGE"),
        ('{"mode": "conference"}', "application/json", 400, "INVALID_ARGUMENT"),
        ('{"mode": null}', "application/json", 400, "INVALID_MESSAGE"),
        ('{"mode": "bridge"}', "application/json", 400, "INVALID_ARGUMENT"),  # no sessionId
        ('{"sessionId": "not-a-uuid"}', "application/json", 400, "INVALID_ARGUMENT"),
        (
            '{"sessionId": "00000000-0000-4000-8000-000000000000"}',
            "application/json",
            404,
            "NOT_FOUND",
        ),
    ],
)
def test_it_answers_bad_call_requests_with_the_contract_codes(
    operator_client: APIClient, body: str, content_type: str, status: int, code: str
) -> None:
    response = operator_client.post("/api/calls", body, content_type=content_type)
    assert_error(response, status, code)
    assert Call.objects.count() == 0


def test_it_refuses_oversized_bodies(operator_client: APIClient, settings: Any) -> None:
    body = '{"mode": "echo", "pad": "%s"}' % ("x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1))
    response = operator_client.post("/api/calls", body, content_type="application/json")
    assert_error(response, 400, "INVALID_MESSAGE")
    assert Call.objects.count() == 0


@pytest.mark.parametrize(
    "path",
    [
        "/api/calls/00000000-0000-4000-8000-000000000000",
        "/api/calls/00000000-0000-4000-8000-000000000000/answer",
        "/api/calls/not-a-call-id",
        "/api/nothing-here",
    ],
)
def test_it_answers_unknown_paths_and_calls_with_not_found(
    operator_client: APIClient, path: str
) -> None:
    method = operator_client.post if path.endswith("answer") else operator_client.get
    assert_error(method(path), 404, "NOT_FOUND")


def test_it_refuses_unsupported_methods(operator_client: APIClient, inbound_call: Call) -> None:
    assert_error(operator_client.delete(f"/api/calls/{inbound_call.pk}"), 405, "INVALID_MESSAGE")
    assert_error(
        operator_client.get(f"/api/calls/{inbound_call.pk}/answer"), 405, "INVALID_MESSAGE"
    )


def test_it_validates_the_state_filter(operator_client: APIClient) -> None:
    assert_error(operator_client.get("/api/calls?state=ringing,bogus"), 400, "INVALID_ARGUMENT")
    assert operator_client.get("/api/calls?state=ringing,active").json() == []


def test_it_pages_newest_first_with_link_headers(
    operator_client: APIClient, make_session: Callable[..., tuple[EndUserSession, str]]
) -> None:
    ids = []
    for index in range(5):
        session, _ = make_session(f"user {index}")
        ids.append(
            str(Call.start(by=Principal.end_user(session), mode="echo", media_worker="embedded").pk)
        )
    first = operator_client.get("/api/calls?limit=2")
    assert [c["callID"] for c in first.json()] == ids[::-1][:2]
    next_url = first["Link"].split(";")[0].strip("<>")
    second = operator_client.get(next_url)
    assert [c["callID"] for c in second.json()] == ids[::-1][2:4]
    assert 'rel="prev"' in second["Link"]
    assert_error(operator_client.get("/api/calls?cursor=garbage"), 400, "INVALID_ARGUMENT")


def test_it_rate_limits_with_retry_after(
    operator_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PrincipalRateThrottle.THROTTLE_RATES, "principal", "3/min")
    for _ in range(3):
        assert operator_client.get("/api/calls").status_code == 200
    limited = operator_client.get("/api/calls")
    body = assert_error(limited, 429, "RATE_LIMITED")
    assert body["recoverable"] is True
    assert int(limited["Retry-After"]) >= 1


def test_it_keeps_a_timeline_per_call(
    ada: tuple[EndUserSession, APIClient], operator_client: APIClient
) -> None:
    _, user = ada
    call_id = user.post("/api/calls").json()["callID"]
    operator_client.post(f"/api/calls/{call_id}/answer")
    operator_client.post(f"/api/calls/{call_id}/hangup")
    names = list(CallEvent.objects.filter(call_id=call_id).values_list("name", "actor_role"))
    assert names == [
        ("call.created", "user"),
        ("queue.joined", "user"),
        ("call.answered", "operator"),
        ("call.ended", "operator"),
    ]


def test_it_allows_cors_preflight_only_for_configured_origins(
    operator_client: APIClient, settings: Any
) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    allowed = operator_client.options(
        "/api/calls",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="token, authorization, content-type",
    )
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert {"token", "authorization"} <= set(allowed["Access-Control-Allow-Headers"].split(", "))
    other = operator_client.options(
        "/api/calls",
        HTTP_ORIGIN="https://evil.example.net",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
    )
    assert "Access-Control-Allow-Origin" not in other


def test_it_answers_unexpected_failures_with_a_reference_and_no_traceback(
    operator_client: APIClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Call:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Call, "start", broken)
    response = operator_client.post("/api/calls", {"mode": "echo"}, format="json")
    body = assert_error(response, 500, "HANDLER_ERROR")
    assert "disk on fire" not in response.content.decode()
    reference = body["message"].rsplit(" ", 1)[-1].rstrip(")")
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and logged[0].exc_info is not None
