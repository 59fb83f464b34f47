"""POST /api/sessions: end-user sessions, their tokens and their page link."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from calls.models import EndUserSession
from tests.support.rest_client import assert_error, bearer_client

pytestmark = pytest.mark.django_db


def test_it_creates_a_session_whose_token_works(operator_client: APIClient) -> None:
    before = timezone.now()
    response = operator_client.post(
        "/api/sessions",
        {"displayName": "Ada", "metadata": {"userId": "u-1"}, "ttl": 600},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"sessionId", "sessionToken", "expiresAt", "iceServers", "url"}
    assert body["sessionToken"].startswith("cbs_")
    expires = datetime.fromisoformat(body["expiresAt"])
    assert timedelta(seconds=599) <= expires - before <= timedelta(seconds=602)
    session = EndUserSession.objects.get(pk=body["sessionId"])
    assert (session.display_name, session.metadata) == ("Ada", {"userId": "u-1"})
    assert session.created_by_token is not None

    user = bearer_client(body["sessionToken"])
    call = user.post("/api/calls").json()
    assert call["sessionId"] == body["sessionId"]


def test_it_stores_only_a_hash_of_the_token(operator_client: APIClient) -> None:
    token = operator_client.post("/api/sessions", {}, format="json").json()["sessionToken"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM calls_endusersession")
        rows = cursor.fetchall()
    assert rows and token not in json.dumps(rows, default=str)


def test_it_uses_the_default_ttl(operator_client: APIClient, settings: Any) -> None:
    settings.CALLBRIDGE_SESSION_TTL_S = 900
    body = operator_client.post("/api/sessions").json()
    remaining = datetime.fromisoformat(body["expiresAt"]) - timezone.now()
    assert timedelta(seconds=890) < remaining <= timedelta(seconds=900)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"ttl": 10}, "INVALID_ARGUMENT"),
        ({"ttl": 10**9}, "INVALID_ARGUMENT"),
        ({"ttl": "soon"}, "INVALID_ARGUMENT"),
        ({"metadata": ["not", "an", "object"]}, "INVALID_ARGUMENT"),
        ({"metadata": {"blob": "x" * 5000}}, "INVALID_ARGUMENT"),
        ({"displayName": "x" * 101}, "INVALID_ARGUMENT"),
        ({"displayName": {"first": "Ada"}}, "INVALID_ARGUMENT"),
    ],
)
def test_it_validates_session_fields(
    operator_client: APIClient, payload: dict[str, Any], code: str
) -> None:
    assert_error(operator_client.post("/api/sessions", payload, format="json"), 400, code)
    assert EndUserSession.objects.count() == 0


def test_it_links_to_the_end_user_page(operator_client: APIClient) -> None:
    body = operator_client.post("/api/sessions", {"displayName": "Ada"}, format="json").json()
    assert body["url"].startswith("http://testserver/talk/?token=cbs_")
    page = APIClient().get(body["url"])
    assert page.status_code == 200
    assert b"Ada" in page.content
    assert page["Referrer-Policy"] == "no-referrer"


def test_it_uses_the_public_url_for_links(operator_client: APIClient, settings: Any) -> None:
    settings.CALLBRIDGE_PUBLIC_URL = "https://calls.example.com"
    body = operator_client.post("/api/sessions").json()
    assert body["url"].startswith("https://calls.example.com/talk/?token=cbs_")


def test_it_tells_the_end_user_when_a_link_is_unusable(operator_client: APIClient) -> None:
    body = operator_client.post("/api/sessions", {"ttl": 60}, format="json").json()
    EndUserSession.objects.filter(pk=body["sessionId"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    expired = APIClient().get(body["url"])
    assert expired.status_code == 410 and b"expired" in expired.content
    invalid = APIClient().get("/talk/?token=cbs_nonsense")
    assert invalid.status_code == 401 and b"not valid" in invalid.content
