"""Recording consents: append-only answers, the policy, who may answer for whom."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from calls.consent import consent_text_sha256
from calls.models import Call, CallEvent, EndUserSession, RecordingConsent
from calls.principals import Principal
from tests.support.rest_client import assert_error, bearer_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def answered_call(
    make_session: Callable[..., tuple[EndUserSession, str]], operator: Principal
) -> tuple[Call, APIClient]:
    session, token = make_session("Ada")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    call.answer(operator)
    return call, bearer_client(token)


def consent(client: APIClient, call: Call, **body: Any) -> Any:
    return client.post(
        f"/api/calls/{call.pk}/consent",
        {"granted": True, "policy": "1", **body},
        format="json",
        HTTP_USER_AGENT="TestBrowser/1.0",
    )


def test_it_records_an_end_users_consent_with_its_evidence(
    answered_call: tuple[Call, APIClient],
) -> None:
    call, user = answered_call
    response = consent(user, call, via="page")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["role"], body["granted"], body["policy"], body["method"]) == (
        "user",
        True,
        "1",
        "page",
    )
    assert body["consent"] == {
        "policy": "all",
        "version": "1",
        "required": ["operator", "user"],
        "missing": ["operator"],
    }
    row = RecordingConsent.objects.get()
    assert row.text_sha256 == consent_text_sha256() and len(row.text_sha256) == 64
    assert (row.ip, row.user_agent) == ("127.0.0.1", "TestBrowser/1.0")
    assert row.party.startswith("end user Ada")
    assert CallEvent.objects.filter(call=call, name="consent.granted").count() == 1


def test_it_needs_every_party_under_the_default_policy(
    answered_call: tuple[Call, APIClient], operator_client: APIClient
) -> None:
    call, user = answered_call
    consent(user, call)
    body = consent(operator_client, call).json()
    assert body["consent"]["missing"] == []
    withdrawn = consent(user, call, granted=False).json()
    assert withdrawn["consent"]["missing"] == ["user"]  # the latest answer counts
    assert RecordingConsent.objects.count() == 3  # every answer is kept
    detail = operator_client.get(f"/api/calls/{call.pk}").json()
    assert detail["consent"]["missing"] == ["user"]


@pytest.mark.parametrize(("policy", "missing"), [("user", ["user"]), ("none", [])])
def test_it_follows_the_configured_policy(
    answered_call: tuple[Call, APIClient],
    operator_client: APIClient,
    settings: Any,
    policy: str,
    missing: list[str],
) -> None:
    settings.CALLBRIDGE_RECORDING_CONSENT = policy
    call, _ = answered_call
    assert operator_client.get(f"/api/calls/{call.pk}").json()["consent"]["missing"] == missing


def test_it_stops_counting_consents_to_an_older_text(
    answered_call: tuple[Call, APIClient], operator_client: APIClient, settings: Any
) -> None:
    call, user = answered_call
    consent(user, call)
    consent(operator_client, call)
    settings.CALLBRIDGE_CONSENT_POLICY_VERSION = "2"
    settings.CALLBRIDGE_CONSENT_TEXT = "A new text."
    status = operator_client.get(f"/api/calls/{call.pk}").json()["consent"]
    assert status["missing"] == ["operator", "user"]
    stale = consent(user, call, policy="1")
    assert_error(stale, 400, "INVALID_ARGUMENT")


def test_it_forbids_consenting_on_someone_elses_call(
    answered_call: tuple[Call, APIClient], make_session: Callable[..., tuple[EndUserSession, str]]
) -> None:
    call, _ = answered_call
    _, bob_token = make_session("Bob")
    assert_error(consent(bearer_client(bob_token), call), 403, "FORBIDDEN")
    assert RecordingConsent.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"granted": "maybe"}, "INVALID_ARGUMENT"),
        ({"granted": None}, "INVALID_MESSAGE"),
        ({"via": "dashboard"}, "INVALID_ARGUMENT"),  # an end user has no dashboard
        ({"via": "carrier pigeon"}, "INVALID_ARGUMENT"),
        ({"policy": "x" * 40}, "INVALID_ARGUMENT"),
    ],
)
def test_it_refuses_bad_answers(
    answered_call: tuple[Call, APIClient], body: dict[str, Any], code: str
) -> None:
    call, user = answered_call
    assert_error(consent(user, call, **body), 400, code)
    assert RecordingConsent.objects.count() == 0


def test_it_refuses_consent_on_an_ended_call(answered_call: tuple[Call, APIClient]) -> None:
    call, user = answered_call
    call.hang_up(Principal.end_user(call.session))
    assert_error(consent(user, call), 409, "CALL_STATE")


def test_it_lets_staff_consent_from_the_dashboard(
    make_session: Callable[..., tuple[EndUserSession, str]], staff_user: Any
) -> None:
    session, _ = make_session("Ada")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    call.answer(Principal.staff(staff_user))
    client = APIClient()
    client.force_login(staff_user)
    response = client.post(
        f"/api/calls/{call.pk}/consent",
        {"granted": True, "policy": "1", "via": "dashboard"},
        format="json",
    )
    assert response.status_code == 201
    assert RecordingConsent.objects.get().user == staff_user


def test_it_keeps_consents_append_only_and_read_only_in_admin(
    answered_call: tuple[Call, APIClient], superuser: Any
) -> None:
    call, user = answered_call
    consent(user, call)
    row = RecordingConsent.objects.get()
    row.granted = False
    with pytest.raises(PermissionError):
        row.save()
    with pytest.raises(PermissionError):
        RecordingConsent.objects.all().update(granted=False)
    with pytest.raises(PermissionError):
        RecordingConsent.objects.all().delete()
    admin = Client()
    admin.force_login(superuser)
    assert admin.get(f"/admin/calls/recordingconsent/{row.pk}/delete/").status_code == 403
    page = admin.get(f"/admin/calls/call/{call.pk}/change/").content.decode()
    assert "Recording consents" in page and row.text_sha256 in page
