"""Floods: per-token, per-socket and per-IP limits answer RATE_LIMITED and change nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from calls.api.throttling import ClientIpRateThrottle, PrincipalRateThrottle
from calls.consumers import throttle
from calls.models import ApiToken, Call, CallEvent, EndUserSession
from calls.signaling.rate_limit import PRUNE_EVERY, Rate, TokenBuckets
from tests.support.rest_client import assert_error, bearer_client
from tests.support.signal_client import SignalClient


class TestTokenBuckets:
    def test_it_parses_the_rest_throttles_rate_format(self) -> None:
        assert Rate.parse("600/min") == Rate(600, 60.0)
        assert Rate.parse("5/s") == Rate(5, 1.0)
        assert Rate.parse("2/hour") == Rate(2, 3600.0)
        assert Rate.parse("1/day") == Rate(1, 86400.0)
        for bad in ("0/min", "ten/min", "5", "5/fortnight"):
            with pytest.raises(ValueError):
                Rate.parse(bad)

    def test_it_allows_a_burst_then_the_steady_rate(self) -> None:
        buckets = TokenBuckets(Rate(3, 1.0))
        assert [buckets.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
        assert buckets.allow("b", 0.0)  # keys are independent
        assert buckets.retry_after("a") == pytest.approx(1 / 3)
        assert not buckets.allow("a", 0.2)  # 0.6 of a token back: still empty
        assert buckets.allow("a", 0.34)
        assert buckets.allow("a", 100.0) and buckets.allow("a", 100.0)  # refills to 3, no more
        assert buckets.allow("a", 100.0) and not buckets.allow("a", 100.0)

    def test_it_keeps_memory_bounded_under_many_keys(self) -> None:
        buckets = TokenBuckets(Rate(10, 1.0))
        for second in range(5):
            for n in range(PRUNE_EVERY):
                buckets.allow(f"ip-{second}-{n}", float(second * 10))
        assert len(buckets) <= 2 * PRUNE_EVERY


# --- WebSocket ------------------------------------------------------------------------------
pytestmark_db = pytest.mark.django_db(transaction=True)


def make_session(name: str = "Ada") -> tuple[EndUserSession, str]:
    return EndUserSession.create(ttl_seconds=600, display_name=name)


def counts() -> tuple[int, int]:
    return Call.objects.count(), CallEvent.objects.count()


def from_ip(application: Any, ip: str, path: str = "/ws/signal") -> SignalClient:
    client = SignalClient(application, path)
    client.communicator.scope["client"] = (ip, 50000)
    return client


def register(token: str) -> dict[str, Any]:
    return {"type": "register", "sessionId": "", "authToken": token}


async def replies(client: SignalClient, count: int) -> list[dict[str, Any]]:
    return [await client.receive() for _ in range(count)]


def codes(messages: list[dict[str, Any]]) -> list[str]:
    return [m["data"]["code"] if m["type"] == "error" else m["data"]["name"] for m in messages]


@pytestmark_db
async def test_it_limits_messages_per_socket(
    asgi_app: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CALLBRIDGE_WS_RATE_LIMIT_SOCKET = "4/min"
    now = [1000.0]
    monkeypatch.setattr(throttle, "clock", lambda: now[0])
    _, token = await sync_to_async(make_session)()
    client = from_ip(asgi_app, "127.0.0.2")
    await client.connect()
    try:
        await client.send(register(token))  # before signing in: the IP's bucket pays
        await client.expect("event", "registered")
        before = await sync_to_async(counts)()
        for _ in range(6):
            await client.send({"type": "hangup", "sessionId": "", "callSid": "no-such-call"})
        answered = await replies(client, 6)
        assert codes(answered) == ["NOT_FOUND"] * 4 + ["RATE_LIMITED"] * 2
        limited = answered[-1]["data"]
        assert limited["recoverable"] is True and limited["details"]["retryAfter"] > 0
        assert await sync_to_async(counts)() == before
        now[0] += 15  # 4/min: one message back after 15 s
        await client.send(register(token))
        await client.expect("event", "registered")
    finally:
        await client.close()


@pytestmark_db
async def test_it_limits_messages_per_token_over_all_its_sockets(
    asgi_app: Any, settings: Any
) -> None:
    settings.CALLBRIDGE_WS_RATE_LIMIT_PRINCIPAL = "5/min"
    _, token = await sync_to_async(make_session)()
    _, other_token = await sync_to_async(make_session)("Bob")
    first, second, other = (from_ip(asgi_app, "127.0.0.2") for _ in range(3))
    for client in (first, second, other):
        await client.connect()
    try:
        for client, secret in ((first, token), (second, token), (other, other_token)):
            await client.send(register(secret))
            await client.expect("event", "registered")
        # 5 signed-in messages of this token in all: 3 on the first socket, 2 on the second.
        for _ in range(3):
            await first.send(register(token))
        assert codes(await replies(first, 3)) == ["registered"] * 3
        for _ in range(3):
            await second.send(register(token))
        assert codes(await replies(second, 3)) == ["registered"] * 2 + ["RATE_LIMITED"]
        await other.send(register(other_token))  # another token is not affected
        assert codes(await replies(other, 1)) == ["registered"]
    finally:
        for client in (first, second, other):
            await client.close()


@pytestmark_db
async def test_it_limits_token_guessing_per_ip_before_authentication(
    asgi_app: Any, settings: Any
) -> None:
    settings.CALLBRIDGE_WS_RATE_LIMIT_IP = "4/min"
    _, token = await sync_to_async(make_session)()
    guesser = from_ip(asgi_app, "127.0.0.3")
    await guesser.connect()  # the handshake is the first of 4
    try:
        for n in range(4):
            await guesser.send(register(f"cbs_guess{n:04d}" + "x" * 40))
        assert codes(await replies(guesser, 4)) == ["UNAUTHORIZED"] * 3 + ["RATE_LIMITED"]
        await guesser.send(register(token))  # even the right token waits now
        assert codes(await replies(guesser, 1)) == ["RATE_LIMITED"]

        refused = from_ip(asgi_app, "127.0.0.3")  # a new socket from the same address
        await refused.connect()
        assert codes(await replies(refused, 1)) == ["RATE_LIMITED"]
        closed = await refused.communicator.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4429}

        elsewhere = from_ip(asgi_app, "127.0.0.4")  # other addresses are not affected
        await elsewhere.connect()
        await elsewhere.send(register(token))
        assert codes(await replies(elsewhere, 1)) == ["registered"]
        await elsewhere.close()
    finally:
        await guesser.close()


@pytestmark_db
async def test_it_limits_operator_feed_handshakes_per_ip_logged_in_or_not(
    asgi_app: Any, settings: Any
) -> None:
    from tests.support.signal_client import staff_cookie

    settings.CALLBRIDGE_WS_RATE_LIMIT_IP = "2/min"
    cookie = await sync_to_async(staff_cookie)()
    refused = WebsocketCommunicator(
        asgi_app,
        "/ws/operator",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")],
    )
    refused.scope["client"] = ("127.0.0.5", 50000)
    assert (await refused.connect(timeout=5))[0] is False  # no login: 4403, but counted
    headers = [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", cookie.encode()),
    ]
    answers = []
    for _ in range(2):
        communicator = WebsocketCommunicator(asgi_app, "/ws/operator", headers=headers)
        communicator.scope["client"] = ("127.0.0.5", 50000)
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        answers.append(json.loads(await communicator.receive_from(timeout=5)))
        await communicator.disconnect(timeout=5)
    assert answers[0]["type"] == "snapshot"
    assert answers[1]["data"]["code"] == "RATE_LIMITED"


@pytestmark_db
async def test_it_limits_the_operator_feed_socket(asgi_app: Any, settings: Any) -> None:
    from tests.support.signal_client import staff_cookie

    settings.CALLBRIDGE_WS_RATE_LIMIT_SOCKET = "2/min"
    cookie = await sync_to_async(staff_cookie)()
    communicator = WebsocketCommunicator(
        asgi_app,
        "/ws/operator",
        headers=[
            (b"origin", b"http://localhost"),
            (b"host", b"localhost"),
            (b"cookie", cookie.encode()),
        ],
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    try:
        assert json.loads(await communicator.receive_from(timeout=5))["type"] == "snapshot"
        answered = []
        for _ in range(3):
            await communicator.send_to(text_data="{}")
            answered.append(json.loads(await communicator.receive_from(timeout=5)))
        assert [m["data"]["code"] for m in answered] == [
            "INVALID_MESSAGE",
            "INVALID_MESSAGE",
            "RATE_LIMITED",
        ]
    finally:
        await communicator.disconnect(timeout=5)


# --- REST -----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_it_limits_unauthenticated_requests_per_ip(
    monkeypatch: pytest.MonkeyPatch, api_token: tuple[ApiToken, str]
) -> None:
    """Token guessing over REST: bad tokens count against the client's address."""
    monkeypatch.setitem(ClientIpRateThrottle.THROTTLE_RATES, "client_ip", "3/min")
    statuses = [
        bearer_client(f"cbk_guess{n:04d}" + "x" * 40).get("/api/calls").status_code
        for n in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    limited = bearer_client(api_token[1]).get("/api/calls")  # the same address
    assert_error(limited, 429, "RATE_LIMITED")
    assert int(limited["Retry-After"]) >= 1
    other = bearer_client(api_token[1])
    other.defaults["REMOTE_ADDR"] = "127.0.0.9"
    assert other.get("/api/calls").status_code == 200


@pytest.mark.django_db
def test_it_ignores_forged_forwarded_for_headers(
    monkeypatch: pytest.MonkeyPatch, api_token: tuple[ApiToken, str]
) -> None:
    """A client cannot dodge its address's limit by inventing X-Forwarded-For values
    (behind a proxy only CALLBRIDGE_TRUSTED_PROXIES may name it: test_client_address.py)."""
    monkeypatch.setitem(ClientIpRateThrottle.THROTTLE_RATES, "client_ip", "3/min")
    client = bearer_client(api_token[1])
    statuses = [
        client.get("/api/calls", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code
        for n in range(4)
    ]
    assert statuses == [200, 200, 200, 429]


@pytest.mark.django_db
def test_it_limits_each_kind_of_principal(
    monkeypatch: pytest.MonkeyPatch,
    api_token: tuple[ApiToken, str],
    make_session: Callable[..., tuple[EndUserSession, str]],
    staff_user: Any,
) -> None:
    monkeypatch.setitem(PrincipalRateThrottle.THROTTLE_RATES, "principal", "2/min")
    staff = APIClient()
    staff.force_login(staff_user)
    clients = [bearer_client(api_token[1]), bearer_client(make_session()[1]), staff]
    for client in clients:
        assert [client.get("/api/calls").status_code for _ in range(3)] == [200, 200, 429]
    assert Call.objects.count() == 0
