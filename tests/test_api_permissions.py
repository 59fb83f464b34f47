"""The contract's credentials table over REST: who may see and act on which call."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from calls.models import ApiToken, Call, CallEvent, EndUserSession
from calls.principals import Principal
from tests.support.rest_client import assert_error, bearer_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_users(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> dict[str, tuple[EndUserSession, APIClient]]:
    a, a_token = make_session("Ada")
    b, b_token = make_session("Bob")
    return {"a": (a, bearer_client(a_token)), "b": (b, bearer_client(b_token))}


def snapshot(call: Call) -> tuple[Any, ...]:
    stored = Call.objects.get(pk=call.pk)
    return stored.state, stored.ended_at, CallEvent.objects.filter(call=call).count()


@pytest.mark.parametrize("verb", ["answer", "reject", "hangup"])
def test_it_forbids_an_end_user_acting_on_another_users_call(
    two_users: dict[str, tuple[EndUserSession, APIClient]], verb: str
) -> None:
    a_session, _ = two_users["a"]
    _, b_client = two_users["b"]
    call = Call.start(by=Principal.end_user(a_session), mode="bridge", media_worker="embedded")
    before = snapshot(call)
    assert_error(b_client.post(f"/api/calls/{call.pk}/{verb}"), 403, "FORBIDDEN")
    assert snapshot(call) == before


def test_it_hides_other_users_calls(
    two_users: dict[str, tuple[EndUserSession, APIClient]], operator_client: APIClient
) -> None:
    a_session, a_client = two_users["a"]
    b_session, b_client = two_users["b"]
    a_call = Call.start(by=Principal.end_user(a_session), mode="bridge", media_worker="embedded")
    b_call = Call.start(by=Principal.end_user(b_session), mode="echo", media_worker="embedded")
    assert_error(b_client.get(f"/api/calls/{a_call.pk}"), 403, "FORBIDDEN")
    assert [c["callID"] for c in b_client.get("/api/calls").json()] == [str(b_call.pk)]
    assert [c["callID"] for c in a_client.get("/api/calls").json()] == [str(a_call.pk)]
    assert a_client.get(f"/api/calls/{a_call.pk}").status_code == 200
    everyone = {c["callID"] for c in operator_client.get("/api/calls").json()}
    assert everyone == {str(a_call.pk), str(b_call.pk)}


def test_it_forbids_an_end_user_ringing_another_session(
    two_users: dict[str, tuple[EndUserSession, APIClient]],
) -> None:
    b_session, _ = two_users["b"]
    _, a_client = two_users["a"]
    response = a_client.post("/api/calls", {"sessionId": str(b_session.pk)}, format="json")
    assert_error(response, 403, "FORBIDDEN")
    assert Call.objects.count() == 0


def test_it_forbids_end_users_creating_sessions(
    two_users: dict[str, tuple[EndUserSession, APIClient]],
) -> None:
    _, a_client = two_users["a"]
    assert_error(a_client.post("/api/sessions", {}, format="json"), 403, "FORBIDDEN")
    assert EndUserSession.objects.count() == 2


def test_it_lets_only_the_rung_side_answer(
    two_users: dict[str, tuple[EndUserSession, APIClient]], operator_client: APIClient
) -> None:
    a_session, a_client = two_users["a"]
    inbound = Call.start(by=Principal.end_user(a_session), mode="bridge", media_worker="embedded")
    assert_error(a_client.post(f"/api/calls/{inbound.pk}/answer"), 403, "FORBIDDEN")
    assert operator_client.post(f"/api/calls/{inbound.pk}/answer").json()["state"] == "active"
    operator_client.post(f"/api/calls/{inbound.pk}/hangup")

    created = operator_client.post("/api/calls", {"sessionId": str(a_session.pk)}, format="json")
    outbound = created.json()["callID"]
    assert_error(operator_client.post(f"/api/calls/{outbound}/answer"), 403, "FORBIDDEN")
    assert a_client.post(f"/api/calls/{outbound}/answer").json()["state"] == "active"


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/calls", "get"),
        ("/api/calls", "post"),
        ("/api/sessions", "post"),
        ("/api/webrtc/config", "get"),
    ],
)
def test_it_requires_a_token(path: str, method: str) -> None:
    body = assert_error(getattr(APIClient(), method)(path), 401, "UNAUTHORIZED")
    assert body["message"] == "Auth token required"


@pytest.mark.parametrize("header", ["authorization", "token"])
def test_it_accepts_both_token_headers(api_token: tuple[ApiToken, str], header: str) -> None:
    assert bearer_client(api_token[1], header).get("/api/calls").status_code == 200


@pytest.mark.parametrize(
    "token",
    ["nonsense", "cbk_short", "cbk_" + "x" * 60, "cbs_" + "y" * 60, "Bearer", "cbk_" + "🙂" * 30],
)
def test_it_rejects_invalid_tokens(token: str) -> None:
    body = assert_error(bearer_client(token).get("/api/calls"), 401, "UNAUTHORIZED")
    assert body["message"] == "Invalid authentication token"


def test_it_refuses_a_bad_token_to_a_browser_without_failing() -> None:
    # DRF's HTML renderer reads request.user while drawing the error: a refusal from our
    # authentication classes must leave the request anonymous, not authenticate again.
    response = bearer_client("nonsense").get("/api/calls", HTTP_ACCEPT="text/html")
    assert response.status_code == 401


def test_it_rejects_a_revoked_api_token(api_token: tuple[ApiToken, str]) -> None:
    token, secret = api_token
    token.revoke()
    body = assert_error(bearer_client(secret).get("/api/calls"), 401, "UNAUTHORIZED")
    assert body["message"] == "API token revoked"


def test_it_rejects_expired_and_revoked_session_tokens(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    expired, expired_token = make_session()
    EndUserSession.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    revoked, revoked_token = make_session()
    revoked.revoke()
    expired_body = assert_error(
        bearer_client(expired_token).post("/api/calls"), 401, "UNAUTHORIZED"
    )
    assert "expired" in expired_body["message"]
    assert_error(bearer_client(revoked_token).post("/api/calls"), 401, "UNAUTHORIZED")
    assert Call.objects.count() == 0


def test_it_records_when_an_api_token_was_last_used(api_token: tuple[ApiToken, str]) -> None:
    token, secret = api_token
    assert token.last_used_at is None
    bearer_client(secret).get("/api/calls")
    token.refresh_from_db()
    assert token.last_used_at is not None


class TestStaffSession:
    def test_it_lets_staff_act_on_every_call(self, staff_user: Any, inbound_call: Call) -> None:
        client = APIClient()
        client.force_login(staff_user)
        response = client.post(f"/api/calls/{inbound_call.pk}/answer")
        assert response.status_code == 200
        assert Call.objects.get(pk=inbound_call.pk).operator_user == staff_user

    def test_it_requires_csrf_on_unsafe_methods(self, staff_user: Any, inbound_call: Call) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(staff_user)
        assert client.get("/api/calls").status_code == 200
        response = client.post(f"/api/calls/{inbound_call.pk}/answer")
        assert_error(response, 403, "FORBIDDEN")
        assert Call.objects.get(pk=inbound_call.pk).state == "ringing"
        client.get("/admin/")  # sets the CSRF cookie
        token = client.cookies["csrftoken"].value
        ok = client.post(
            f"/api/calls/{inbound_call.pk}/answer",
            "{}",
            content_type="application/json",
            HTTP_X_CSRFTOKEN=token,
        )
        assert ok.status_code == 200

    def test_it_does_not_treat_non_staff_logins_as_operators(self, inbound_call: Call) -> None:
        from django.contrib.auth import get_user_model

        someone = get_user_model().objects.create_user("mallory", password="x" * 12)
        client = APIClient()
        client.force_login(someone)
        assert_error(client.get("/api/calls"), 401, "UNAUTHORIZED")
        assert_error(client.post(f"/api/calls/{inbound_call.pk}/hangup"), 401, "UNAUTHORIZED")
        assert Call.objects.get(pk=inbound_call.pk).state == "ringing"
