"""GET /api/webrtc/config and the TURN credentials in it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from calls.ice import turn_credentials
from calls.models import EndUserSession
from calls.workers.local import build_media_worker
from tests.support.rest_client import bearer_client

pytestmark = pytest.mark.django_db


def independent_hmac(secret: str, username: str) -> str:
    return base64.b64encode(
        hmac.HMAC(secret.encode(), username.encode(), digestmod=hashlib.sha1).digest()
    ).decode()


def test_it_hands_out_no_ice_servers_by_default(operator_client: APIClient) -> None:
    body = operator_client.get("/api/webrtc/config").json()
    assert body == {"iceServers": [], "turn": {"enabled": False, "status": "not_configured"}}


def test_it_lists_configured_stun_servers(operator_client: APIClient, settings: Any) -> None:
    settings.CALLBRIDGE_STUN_URLS = ["stun:stun.example.com:3478"]
    body = operator_client.get("/api/webrtc/config").json()
    assert body["iceServers"] == [{"urls": ["stun:stun.example.com:3478"]}]
    assert body["turn"]["enabled"] is False


def test_it_hands_clients_the_stun_servers_wago_returns(
    api_token: tuple[Any, str], settings: Any
) -> None:
    """A STUN server for clients only (WaGo's own answer names Google's): in both config
    answers, once, after the server's own; the media worker never asks it."""
    settings.CALLBRIDGE_CLIENT_STUN_URLS = ["stun:stun.l.google.com:19302"]
    wago = APIClient()
    wago.credentials(HTTP_TOKEN=api_token[1])
    body = wago.get("/call/webrtc/config").json()
    assert body == {
        "iceServers": [{"urls": ["stun:stun.l.google.com:19302"]}],
        "turn": {"enabled": False, "status": "not_configured"},
    }
    settings.CALLBRIDGE_STUN_URLS = ["stun:stun.example.com:3478", "stun:stun.l.google.com:19302"]
    both = bearer_client(api_token[1]).get("/api/webrtc/config").json()
    assert both["iceServers"] == [
        {"urls": ["stun:stun.example.com:3478", "stun:stun.l.google.com:19302"]}
    ]
    settings.CALLBRIDGE_STUN_URLS = []
    worker = build_media_worker("stun-check", host_addresses=["127.0.0.1"])
    assert worker.peer_settings.ice_servers == ()


def test_it_matches_a_known_coturn_credential() -> None:
    # Computed independently: printf '%s' "1700000000:end_user-abc" |
    #   openssl dgst -sha1 -hmac s3cret -binary | base64
    expires = datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert turn_credentials("s3cret", "end_user-abc", expires) == (
        "1700000000:end_user-abc",
        "OSMxmFoTNDEmBh3rB8elINI3boE=",
    )


def test_it_issues_time_limited_turn_credentials(operator_client: APIClient, settings: Any) -> None:
    settings.CALLBRIDGE_TURN_URLS = ["turn:turn.example.com:3478?transport=udp"]
    settings.CALLBRIDGE_TURN_SECRET = "north-wind"
    settings.CALLBRIDGE_TURN_TTL = 600
    body = operator_client.get("/api/webrtc/config").json()
    (turn,) = body["iceServers"]
    assert turn["urls"] == ["turn:turn.example.com:3478?transport=udp"]
    expiry, _, ident = turn["username"].partition(":")
    assert ident.startswith("api_token-cbk_")
    assert abs(int(expiry) - (time.time() + 600)) < 5
    assert turn["credential"] == independent_hmac("north-wind", turn["username"])
    assert body["turn"]["enabled"] is True and 595 <= body["turn"]["ttl"] <= 600
    assert abs(datetime.fromisoformat(body["turn"]["expiresAt"]).timestamp() - int(expiry)) < 1


def test_it_caps_an_end_users_credentials_at_session_expiry(
    make_session: Callable[..., tuple[EndUserSession, str]], settings: Any
) -> None:
    settings.CALLBRIDGE_TURN_URLS = ["turn:turn.example.com:3478"]
    settings.CALLBRIDGE_TURN_SECRET = "north-wind"
    settings.CALLBRIDGE_TURN_TTL = 86400
    session, token = make_session(ttl_seconds=300)
    body = bearer_client(token).get("/api/webrtc/config").json()
    username = body["iceServers"][0]["username"]
    assert int(username.split(":")[0]) == int(session.expires_at.timestamp())
    assert username.endswith(f"end_user-{session.pk}")
    assert body["turn"]["ttl"] <= 300


def test_it_gives_sessions_turn_credentials_too(operator_client: APIClient, settings: Any) -> None:
    settings.CALLBRIDGE_TURN_URLS = ["turns:turn.example.com:5349"]
    settings.CALLBRIDGE_TURN_SECRET = "north-wind"
    body = operator_client.post("/api/sessions", {"ttl": 120}, format="json").json()
    (turn,) = body["iceServers"]
    assert turn["credential"] == independent_hmac("north-wind", turn["username"])
    expires = datetime.fromisoformat(body["expiresAt"])
    assert int(turn["username"].split(":")[0]) <= expires.timestamp()
    assert expires - timezone.now() <= timedelta(seconds=120)
