"""Nobody let in: origins, CSRF, token handling, scoping, files, admin, TLS settings.

docs/security.md says what each test proves against which threat.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client, override_settings
from django.urls import URLResolver, get_resolver
from django.views.static import serve as static_serve
from rest_framework.test import APIClient

from calls.authn import principal_for_token
from calls.consumers.operator import OperatorConsumer
from calls.consumers.origins import PageOriginValidator
from calls.models import (
    ApiToken,
    Call,
    CallEvent,
    EndUserSession,
    Leg,
    Recording,
    RecordingConsent,
)
from calls.principals import Principal
from calls.tokens import hash_token
from tests.support.live_call import LiveCall
from tests.support.media_peers import ClientPeer
from tests.support.rest_client import assert_error, bearer_client
from tests.support.settings_process import settings_in_subprocess
from tests.support.signal_client import SignalClient, staff_cookie

ROOT = Path(__file__).resolve().parent.parent
TOKEN_SECRET = re.compile(r"cb[ks]_[A-Za-z0-9_-]{12,}")  # longer than the public prefix


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def records() -> tuple[int, ...]:
    return tuple(
        model.objects.count() for model in (Call, Leg, CallEvent, Recording, RecordingConsent)
    )


# --- WebSocket origins -------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        ("http://localhost:8000", True),  # the page this server served (Host localhost:8000)
        ("HTTP://LocalHost:8000", True),  # origins compare case-insensitively
        ("https://evil.example.net", False),  # a hostile page in the operator's browser
        ("http://localhost.evil.example.net:8000", False),  # look-alike host
        ("http://localhost:9999", False),  # another port: another origin
        ("http://localhost", False),  # port 80, not 8000
        ("https://localhost:8000", False),  # another scheme: another origin
        ("http://127.0.0.1:8000", False),  # an allowed host, but not the one addressed
        ("null", False),  # sandboxed frames, file:// pages
        ("http://localhost:8000, http://localhost:8000", False),
        (None, False),  # the cookie alone is not enough
    ],
)
async def test_it_lets_only_allowed_pages_open_the_operator_feed_with_a_staff_cookie(
    asgi_app: Any, origin: str | None, accepted: bool
) -> None:
    cookie = await sync_to_async(staff_cookie)()
    headers = [(b"cookie", cookie.encode()), (b"host", b"localhost:8000")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    for path in ("/ws/operator", "/ws/signal", "/api/v1/webrtc/signal"):
        communicator = WebsocketCommunicator(asgi_app, path, headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        # The signaling paths take clients without an Origin (not browsers); with one, the
        # same rule.
        assert connected is (accepted or (origin is None and path != "/ws/operator")), path
        await communicator.disconnect(timeout=5)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("host", "forwarded_proto", "origin", "accepted"),
    [
        ("calls.example.com", "https", "https://calls.example.com", True),
        ("calls.example.com", "https", "http://calls.example.com", False),
        ("calls.example.com", None, "https://calls.example.com", False),  # came in over http
        ("calls.example.com", "http", "http://calls.example.com", True),
        ("rebound.example.net", "https", "https://rebound.example.net", False),  # not our host
    ],
)
async def test_it_takes_the_scheme_from_a_trusted_tls_proxy(
    asgi_app: Any,
    settings: Any,
    host: str,
    forwarded_proto: str | None,
    origin: str,
    accepted: bool,
) -> None:
    settings.ALLOWED_HOSTS = ["calls.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    cookie = await sync_to_async(staff_cookie)()
    headers = [(b"cookie", cookie.encode()), (b"host", host.encode()), (b"origin", origin.encode())]
    if forwarded_proto:
        headers.append((b"x-forwarded-proto", forwarded_proto.encode()))
    communicator = WebsocketCommunicator(asgi_app, "/ws/operator", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected is accepted
    await communicator.disconnect(timeout=5)


@pytest.mark.django_db(transaction=True)
async def test_it_lets_configured_cors_origins_open_the_sockets(settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    app = PageOriginValidator(
        AuthMiddlewareStack(OperatorConsumer.as_asgi()), allow_no_origin=False
    )
    cookie = (await sync_to_async(staff_cookie)()).encode()
    for origin, accepted in [
        ("https://app.example.com", True),
        ("https://app.example.com:443", True),
        ("https://app.example.org", False),
        ("http://app.example.com", False),  # the configured origin is https
        ("https://app.example.com:8443", False),
    ]:
        headers = [(b"cookie", cookie), (b"origin", origin.encode())]
        communicator = WebsocketCommunicator(app, "/ws/operator", headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        assert connected is accepted, origin
        await communicator.disconnect(timeout=5)


# --- CSRF on cookie-authenticated REST ---------------------------------------------------------
UNSAFE = [
    ("/api/calls", {}),
    ("/api/sessions", {}),
    ("/api/calls/{call}/answer", {}),
    ("/api/calls/{call}/reject", {}),
    ("/api/calls/{call}/hangup", {}),
    ("/api/calls/{call}/consent", {"granted": True, "policy": "1"}),
    ("/api/calls/{call}/play", {"file": "x"}),
    ("/api/calls/{call}/play/stop", {}),
    ("/api/calls/{call}/record", {}),
    ("/api/calls/{call}/record/stop", {}),
    ("/api/calls/{call}/webrtc/offer", {"type": "offer", "sdp": "v=0"}),
    ("/api/calls/{call}/webrtc/close", {}),
    ("/call/make", {}),
    ("/call/hangup", {"callID": "{call}"}),
    ("/call/webrtc/offer", {"callID": "{call}", "type": "offer", "sdp": "v=0"}),
    ("/call/webrtc/close", {"callID": "{call}"}),
    ("/call/record", {"CallID": "{call}"}),
    ("/call/play", {"callID": "{call}", "file": "x"}),
]


def fill(value: Any, call: Call) -> Any:
    if isinstance(value, str):
        return value.replace("{call}", str(call.pk))
    if isinstance(value, dict):
        return {key: fill(item, call) for key, item in value.items()}
    return value


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "body"), UNSAFE, ids=[path for path, _ in UNSAFE])
def test_it_refuses_staff_cookie_requests_without_a_csrf_token(
    staff_user: Any, inbound_call: Call, path: str, body: dict[str, Any]
) -> None:
    """A hostile page can make the operator's browser send the session cookie, not the
    CSRF token: every unsafe endpoint must refuse, and change nothing."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    before = records()
    response = client.post(
        fill(path, inbound_call), fill(body, inbound_call), content_type="application/json"
    )
    assert_error(response, 403, "FORBIDDEN")
    assert records() == before


@pytest.mark.django_db
def test_it_refuses_a_valid_csrf_token_sent_from_another_origin(
    staff_user: Any, inbound_call: Call
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    client.get("/admin/")
    token = client.cookies["csrftoken"].value
    path = f"/api/calls/{inbound_call.pk}/answer"
    json_body = {"data": "{}", "content_type": "application/json", "HTTP_X_CSRFTOKEN": token}
    foreign = client.post(path, **json_body, HTTP_ORIGIN="https://evil.example.net")
    assert_error(foreign, 403, "FORBIDDEN")
    assert Call.objects.get(pk=inbound_call.pk).state == "ringing"
    same = client.post(path, **json_body, HTTP_ORIGIN="http://testserver")
    assert same.status_code == 200


# --- tokens ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_it_compares_token_digests_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
    api_token: tuple[ApiToken, str],
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    """The secret is only ever compared with hmac.compare_digest (hash against stored hash);
    rows are found by the public 8-character prefix, never by the secret."""
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    token, secret = api_token
    session, session_secret = make_session()
    assert bearer_client(secret).get("/api/calls").status_code == 200
    assert (hash_token(secret), token.token_hash) in compared
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert_error(bearer_client(forged).get("/api/calls"), 401, "UNAUTHORIZED")
    assert (hash_token(forged), token.token_hash) in compared
    assert principal_for_token(session_secret) == Principal.end_user(session)
    assert (hash_token(session_secret), session.token_hash) in compared


def test_it_has_no_other_comparison_of_secrets_in_the_code() -> None:
    """Code review, kept: no `==` / `!=` / `in` against a token or its hash anywhere."""
    risky = re.compile(r"(token_hash|digest|secret|raw_token)\s*(==|!=)|(==|!=)\s*\w*token_hash")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in (ROOT / "calls").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if risky.search(line)
    ]
    assert offenders == []
    assert (
        "hmac.compare_digest(hash_token(token), stored_digest)"
        in (ROOT / "calls" / "tokens.py").read_text()
    )


@pytest.mark.django_db
def test_it_stores_only_hashes_of_tokens(operator_client: APIClient) -> None:
    created = operator_client.post("/api/sessions", {}, format="json").json()
    _, api_secret = ApiToken.create("second")
    stored = []
    with connection.cursor() as cursor:
        for table in ("calls_apitoken", "calls_endusersession"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 (constant names)
            stored.append(repr(cursor.fetchall()))
    everything = "\n".join(stored)
    for secret in (created["sessionToken"], api_secret):
        assert secret not in everything
        assert secret[12:] not in everything  # not even the part after the public prefix
        assert hash_token(secret) in everything
        assert secret[:12] in everything  # the prefix is what finds the row


@pytest.mark.django_db(transaction=True)
async def test_it_logs_no_token_during_a_whole_call(
    live_call: LiveCall, caplog: pytest.LogCaptureFixture
) -> None:
    """Everything logged at DEBUG by callbridge, Django, Channels, aiortc and aioice while
    a bridged call is placed, recorded, stopped, hung up, and bad tokens are tried."""
    for name in ("", "calls", "callbridge", "django", "channels", "aiortc", "aioice"):
        caplog.set_level(logging.DEBUG, logger=name)
    revoked, revoked_secret = await sync_to_async(ApiToken.create)("revoked")
    await sync_to_async(revoked.revoke)()
    await live_call.consent_all()
    started = await live_call.post(
        f"/api/calls/{live_call.call_id}/record", live_call.operator_token
    )
    assert started.status_code == 201, started.json()
    stopped = await live_call.post(
        f"/api/calls/{live_call.call_id}/record/stop", live_call.operator_token
    )
    assert stopped.status_code == 200
    refused = await live_call.post(f"/api/calls/{live_call.call_id}/hangup", revoked_secret)
    assert refused.status_code == 401
    await live_call.user.send({"type": "register", "sessionId": "", "authToken": revoked_secret})
    assert (await live_call.user.expect("error"))["data"]["code"] in ("UNAUTHORIZED", "FORBIDDEN")
    hung_up = await live_call.post(f"/api/calls/{live_call.call_id}/hangup", live_call.user_token)
    assert hung_up.status_code == 200
    await live_call.operator.expect("event", "call.ended")
    logged = caplog.text
    assert len(caplog.records) > 20  # the capture works: the call was logged in detail
    for secret in (live_call.user_token, live_call.operator_token, revoked_secret):
        assert secret not in logged
    assert TOKEN_SECRET.findall(logged) == []


# --- session tokens see only their own calls ---------------------------------------------------
PER_CALL = [path for path, _ in UNSAFE if "{call}" in path] + ["/api/calls/{call}"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PER_CALL)
def test_it_keeps_an_end_user_out_of_other_users_calls(
    make_session: Callable[..., tuple[EndUserSession, str]], path: str
) -> None:
    owner, _ = make_session("Ada")
    _, intruder = make_session("Mallory")
    call = Call.start(by=Principal.end_user(owner), mode="echo", media_worker="embedded")
    body = next((b for p, b in UNSAFE if p == path), None)
    before = records()
    client = bearer_client(intruder)
    if body is None:
        response = client.get(fill(path, call))
    else:
        response = client.post(fill(path, call), fill(body, call), format="json")
    assert_error(response, 403, "FORBIDDEN")
    assert records() == before


@pytest.mark.django_db(transaction=True)
async def test_it_keeps_an_end_user_socket_out_of_other_users_calls(asgi_app: Any) -> None:
    owner = SignalClient(asgi_app)
    intruder = SignalClient(asgi_app)
    _, owner_token = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    _, intruder_token = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    peer, other_peer = ClientPeer(440), ClientPeer(880)
    try:
        await owner.connect()
        await intruder.connect()
        await intruder.send({"type": "register", "sessionId": "", "authToken": intruder_token})
        await intruder.expect("event", "registered")
        answer = await owner.offer(owner_token, await peer.offer(), mode="echo")
        before = await sync_to_async(records)()
        await intruder.send(
            {
                "type": "offer",
                "sessionId": "",
                "authToken": intruder_token,
                "callSid": answer["callSid"],
                "data": {"type": "offer", "sdp": await other_peer.offer()},
            }
        )
        assert (await intruder.expect("error"))["data"]["code"] == "FORBIDDEN"
        for message in (
            {"type": "hangup", "sessionId": "", "callSid": answer["callSid"]},
            {"type": "close", "sessionId": answer["sessionId"]},
            {
                "type": "ice-candidate",
                "sessionId": answer["sessionId"],
                "data": {"candidate": "", "sdpMid": "0"},
            },
        ):
            await intruder.send(message)
            assert (await intruder.expect("error"))["data"]["code"] == "FORBIDDEN", message
        assert await sync_to_async(records)() == before
        await owner.send({"type": "hangup", "sessionId": answer["sessionId"]})
        await owner.expect("event", "call.ended")
        events = await intruder.drain(quiet_for=0.5)
        assert events == []  # none of the other user's call events reached this socket
    finally:
        await peer.close()
        await other_peer.close()
        await owner.close()
        await intruder.close()


# --- files are never served by path ------------------------------------------------------------
@pytest.mark.django_db
def test_it_never_serves_recordings_or_audio_files_by_path(
    settings: Any, tmp_path: Path, superuser: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path
    for folder in ("recordings", "audio"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "secret.wav").write_bytes(b"RIFF-not-public")
    admin = Client()
    admin.force_login(superuser)  # even a superuser gets files only through the audio view
    for folder in ("recordings", "audio"):
        for url in (
            f"/media/{folder}/secret.wav",
            f"/{folder}/secret.wav",
            f"/static/../media/{folder}/secret.wav",
            f"/static/%2e%2e/media/{folder}/secret.wav",
            f"/static/..%2fmedia%2f{folder}%2fsecret.wav",
            f"/var/media/{folder}/secret.wav",
            f"/api/../media/{folder}/secret.wav",
        ):
            for client in (Client(), admin):
                response = client.get(url)
                assert response.status_code == 404, url
                body = (
                    b"".join(response.streaming_content) if response.streaming else response.content
                )
                assert b"RIFF-not-public" not in body, url


def test_it_keeps_media_out_of_the_static_tree() -> None:
    from django.conf import settings

    media = Path(settings.MEDIA_ROOT)
    static_roots = [Path(settings.STATIC_ROOT), *(Path(p) for p in settings.STATICFILES_DIRS)]
    for static in static_roots:
        assert not media.is_relative_to(static) and not static.is_relative_to(media)
    served = [
        pattern
        for pattern in _all_patterns(get_resolver().url_patterns)
        if getattr(pattern, "callback", None) is static_serve
    ]
    assert served == []  # no URL maps onto MEDIA_ROOT (nor any folder) by path


def _all_patterns(patterns: list[Any]) -> list[Any]:
    found = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found += _all_patterns(pattern.url_patterns)
        else:
            found.append(pattern)
    return found


# --- admin pages -------------------------------------------------------------------------------
ADMIN_PAGES = [
    "/admin/",
    "/admin/dashboard/",
    "/admin/calls/call/",
    "/admin/calls/apitoken/",
    "/admin/calls/apitoken/add/",
    "/admin/calls/endusersession/",
    "/admin/calls/endusersession/add/",
    "/admin/calls/recording/",
    "/admin/calls/recording/00000000-0000-0000-0000-000000000000/audio/",
    "/admin/calls/recordingconsent/",
    "/admin/calls/audiofile/",
    "/admin/calls/audiofile/add/",
]


@pytest.mark.django_db
def test_it_locks_admin_pages_to_staff(make_session: Callable[..., Any]) -> None:
    someone = get_user_model().objects.create_user("mallory")
    logged_in = Client()
    logged_in.force_login(someone)
    _, session_token = make_session()
    _, api_secret = ApiToken.create("crm")
    callers = [
        (Client(), "anonymous"),
        (logged_in, "non-staff login"),
        (Client(HTTP_AUTHORIZATION=f"Bearer {session_token}"), "end-user token"),
        (Client(HTTP_AUTHORIZATION=f"Bearer {api_secret}"), "API token"),
    ]
    for page in ADMIN_PAGES:
        for client, name in callers:
            response = client.get(page)
            assert response.status_code == 302, (page, name)
            assert response["Location"].startswith("/admin/login/"), (page, name)


@pytest.mark.django_db
def test_it_gives_staff_without_permissions_no_model_pages(staff_user: Any) -> None:
    client = Client()
    client.force_login(staff_user)  # staff, but no model permissions
    assert client.get("/admin/dashboard/").status_code == 200
    for page in [p for p in ADMIN_PAGES if "/calls/" in p]:
        assert client.get(page).status_code == 403, page


# --- security headers and cookies behind TLS ---------------------------------------------------
PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "calls.example.com",
    "CALLBRIDGE_BEHIND_TLS_PROXY": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
}


def test_it_turns_on_secure_cookies_and_the_proxy_header_from_the_environment() -> None:
    expression = (
        "s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER, "
        "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS"
    )
    result = settings_in_subprocess(PRODUCTION, expression)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "False True True ('HTTP_X_FORWARDED_PROTO', 'https') True 31536000"
    )
    debug = settings_in_subprocess({"DEBUG": "true"}, "s.SESSION_COOKIE_SECURE")
    assert debug.stdout.strip() == "False"  # plain-HTTP development only


@pytest.mark.django_db
@override_settings(
    ALLOWED_HOSTS=["calls.example.com"],
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    SECURE_SSL_REDIRECT=True,
    SECURE_HSTS_SECONDS=31536000,
    SESSION_COOKIE_SECURE=True,
    CSRF_COOKIE_SECURE=True,
)
def test_it_sends_security_headers_and_secure_cookies_behind_a_tls_proxy(superuser: Any) -> None:
    plain = Client(HTTP_HOST="calls.example.com").get("/admin/login/")
    assert plain.status_code == 301
    assert plain["Location"] == "https://calls.example.com/admin/login/"

    client = Client(HTTP_HOST="calls.example.com", HTTP_X_FORWARDED_PROTO="https")
    page = client.get("/admin/login/")
    assert page.status_code == 200
    assert page["Strict-Transport-Security"] == "max-age=31536000"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert page["X-Frame-Options"] == "DENY"
    assert page["Referrer-Policy"] == "same-origin"
    assert page["Cross-Origin-Opener-Policy"] == "same-origin"
    csrf_cookie = page.cookies["csrftoken"]
    assert csrf_cookie["secure"] and csrf_cookie["samesite"] == "Lax"

    hidden = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert hidden
    login = client.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": "correct horse battery", "csrfmiddlewaretoken": hidden[1]},
        HTTP_REFERER="https://calls.example.com/admin/login/",
    )
    assert login.status_code == 302, login.content[:300]
    session_cookie = login.cookies["sessionid"]
    assert session_cookie["secure"] and session_cookie["httponly"]
    assert session_cookie["samesite"] == "Lax"

    api = client.get("/api/webrtc/config")  # JSON answers carry the same headers
    assert api["X-Content-Type-Options"] == "nosniff"
    assert api["Strict-Transport-Security"] == "max-age=31536000"
