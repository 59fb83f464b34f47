"""The framed end-user page (/talk/embed/): who may frame it, the token handed over in a body."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from callbridge.env import env_origin_list

pytestmark = pytest.mark.django_db

HOST = "https://shop.example.com"


def page_config(response: Any) -> dict[str, Any]:
    match = re.search(
        r'<script id="config" type="application/json">(.*?)</script>', response.content.decode()
    )
    assert match, "no config on the page"
    return json.loads(match.group(1))


def test_it_reads_embed_origins_as_browsers_serialise_them() -> None:
    environ = {"X": "HTTPS://Shop.Example.com:443, http://127.0.0.1:8001/, https://a.example:8443"}
    assert env_origin_list("X", environ=environ) == [
        "https://shop.example.com",
        "http://127.0.0.1:8001",
        "https://a.example:8443",
    ]
    for bad in ("shop.example.com", "https://a.example/page", "ftp://a.example", "https://:1"):
        with pytest.raises(ImproperlyConfigured, match="is not an origin"):
            env_origin_list("X", environ={"X": bad})


def test_it_lets_only_configured_origins_frame_the_embed_page_and_nothing_else(
    settings: Any, make_session: Any
) -> None:
    settings.CALLBRIDGE_EMBED_ORIGINS = [HOST, "http://127.0.0.1:8001"]
    _, token = make_session("Ada")
    embed = Client().get("/talk/embed/?queue=billing")
    assert embed.status_code == 200
    assert embed["Content-Security-Policy"] == f"frame-ancestors {HOST} http://127.0.0.1:8001"
    assert "X-Frame-Options" not in embed
    assert (embed["Cache-Control"], embed["Referrer-Policy"]) == ("no-store", "no-referrer")
    config = page_config(embed)
    assert config == {
        "embed": True,
        "embedOrigins": [HOST, "http://127.0.0.1:8001"],
        "sessionPath": "/talk/embed/session",
        "queue": "billing",
    }
    # The plain page (token in its URL), the admin and the dashboard are never framed.
    for path in (f"/talk/?token={token}", "/admin/login/", "/admin/dashboard/"):
        response = Client().get(path)
        assert response["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors" not in response.get("Content-Security-Policy", ""), path

    settings.CALLBRIDGE_EMBED_ORIGINS = []
    assert Client().get("/talk/embed/")["Content-Security-Policy"] == "frame-ancestors 'none'"


def test_it_trades_a_posted_token_for_the_pages_config(make_session: Any) -> None:
    session, token = make_session("Ada")
    response = Client().post(
        "/talk/embed/session", json.dumps({"token": token}), content_type="application/json"
    )
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    config = response.json()
    assert (config["token"], config["sessionId"], config["displayName"]) == (
        token,
        str(session.pk),
        "Ada",
    )
    assert config["signalPath"] == "/ws/signal" and "consentVersion" in config


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("not json", 400, "INVALID_MESSAGE"),
        ("[]", 400, "INVALID_ARGUMENT"),
        ('{"token": 5}', 400, "INVALID_ARGUMENT"),
        ('{"token": "cbs_notarealtoken"}', 401, "UNAUTHORIZED"),
        ('{"token": "cbt_apitokensarenotsessions"}', 401, "UNAUTHORIZED"),
        (json.dumps({"token": "x" * 4000}), 400, "INVALID_ARGUMENT"),
    ],
)
def test_it_refuses_a_bad_token_body_with_the_contracts_code(
    body: str, status: int, code: str
) -> None:
    response = Client().post("/talk/embed/session", body, content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert "token" not in response.json().get("details", {})


def test_it_refuses_withdrawn_and_expired_sessions(make_session: Any) -> None:
    session, token = make_session("Ada")
    session.revoke()
    response = Client().post(
        "/talk/embed/session", json.dumps({"token": token}), content_type="application/json"
    )
    assert (response.status_code, response.json()["code"]) == (401, "UNAUTHORIZED")
    assert "withdrawn" in response.json()["message"]
    assert Client().get("/talk/embed/session").status_code == 405
