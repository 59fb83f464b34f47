"""A credential that dies closes its sockets within 1 s, and no message of it acts any more.

API tokens and end-user sessions on /ws/signal (revoked by the model, by the admin's bulk
action, expired, expiry moved earlier), staff logins on /ws/operator (logout in that
browser only, deactivation, demotion, the operator permission taken away, deletion, a
password change). The cross-process case (two daphnes sharing Redis) is in
tests/test_scale_out.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from calls.consumers.credential_watch import CLOSE_UNAUTHORIZED
from calls.models import ApiToken, Call, EndUserSession
from calls.operators import operators_group
from calls.principals import Principal
from tests.support.media_peers import ClientPeer
from tests.support.signal_client import SignalClient

pytestmark = [pytest.mark.django_db(transaction=True)]

# The contract says 1 s; the bound leaves room for a loaded 2-core machine.
DEADLINE_S = 2.0


async def closed_unauthorized(client: SignalClient, within: float = DEADLINE_S) -> str:
    """The next output is `error UNAUTHORIZED`, then the close (4401); returns the message.
    Events already queued before the death may come first, nothing after it."""
    communicator = client.communicator
    while True:
        output = await communicator.receive_output(timeout=within)
        assert output["type"] == "websocket.send", output
        message = json.loads(output["text"])
        if message["type"] == "error":
            break
    assert message["data"]["code"] == "UNAUTHORIZED", message
    close = await communicator.receive_output(timeout=within)
    assert close == {"type": "websocket.close", "code": CLOSE_UNAUTHORIZED}, close
    return message["data"]["message"]


@pytest.fixture
async def clients(asgi_app: Any) -> AsyncIterator[Callable[..., Any]]:
    opened: list[SignalClient] = []

    async def open_client(path: str = "/ws/signal", cookie: str = "") -> SignalClient:
        origin = "http://localhost" if path == "/ws/operator" else None
        client = SignalClient(asgi_app, path, origin=origin)
        if cookie:
            client.communicator.scope["headers"].append((b"cookie", cookie.encode()))
        await client.connect()
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.close()


async def registered(clients: Any, token: str) -> SignalClient:
    client = await clients()
    await client.send({"type": "register", "sessionId": "", "authToken": token})
    await client.expect("event", "registered")
    return client


def ring(session: EndUserSession) -> Call:
    return Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")


async def call_state(call: Call) -> str:
    return (await Call.objects.aget(pk=call.pk)).state


# --- API tokens -----------------------------------------------------------------------------
async def test_it_closes_a_revoked_api_tokens_sockets_and_refuses_their_hangup(
    clients: Any,
) -> None:
    token, secret = await sync_to_async(ApiToken.create)("console")
    session, _ = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    watcher, other = await registered(clients, secret), await registered(clients, secret)
    call = await sync_to_async(ring)(session)
    await watcher.expect("event", "call.incoming")
    await other.expect("event", "call.incoming")

    await sync_to_async(token.revoke)()
    # A hangup already on its way when the token died: refused, the call rings on.
    await other.send({"type": "hangup", "sessionId": "", "callSid": str(call.pk)})
    assert await closed_unauthorized(other) == "API token revoked"
    assert await closed_unauthorized(watcher) == "API token revoked"
    assert await call_state(call) == "ringing"

    # Nothing more reaches them: not the next call.
    another, _ = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    await sync_to_async(ring)(another)
    assert await watcher.communicator.receive_nothing(timeout=0.3)


async def test_it_revokes_the_sessions_an_api_token_issued_with_it(clients: Any) -> None:
    token, _ = await sync_to_async(ApiToken.create)("console")
    issued, issued_secret = await sync_to_async(EndUserSession.create)(
        ttl_seconds=600, created_by_token=token
    )
    own, own_secret = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    issued_page, own_page = (
        await registered(clients, issued_secret),
        await registered(clients, own_secret),
    )
    await sync_to_async(token.revoke)()
    assert await closed_unauthorized(issued_page) == "Session token revoked"
    await sync_to_async(issued.refresh_from_db)()
    await sync_to_async(own.refresh_from_db)()
    assert (issued.is_revoked, own.is_revoked) == (True, False)
    await own_page.send({"type": "hangup", "sessionId": "", "callSid": str(uuid.uuid4())})
    assert (await own_page.expect("error"))["data"]["code"] == "NOT_FOUND"


async def test_it_closes_sockets_of_tokens_revoked_through_the_admins_bulk_action(
    clients: Any, superuser: Any
) -> None:
    (first, first_secret), (second, second_secret) = [
        await sync_to_async(ApiToken.create)(name) for name in ("one", "two")
    ]
    sockets = [await registered(clients, secret) for secret in (first_secret, second_secret)]

    def revoke_in_admin() -> None:
        browser = Client()
        browser.force_login(superuser)
        answer = browser.post(
            "/admin/calls/apitoken/",
            {"action": "revoke", "_selected_action": [first.pk, second.pk]},
        )
        assert answer.status_code == 302, answer.content[:500]

    await sync_to_async(revoke_in_admin)()
    for socket in sockets:
        assert await closed_unauthorized(socket) == "API token revoked"


async def test_it_closes_sockets_of_credentials_revoked_by_the_revoke_command(
    clients: Any,
) -> None:
    token, token_secret = await sync_to_async(ApiToken.create)("console")
    session, session_secret = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    console, page = (
        await registered(clients, token_secret),
        await registered(clients, session_secret),
    )
    with pytest.raises(CommandError):  # one unknown: nothing revoked
        await sync_to_async(call_command)("revoke", token.prefix, "cbk_00000000", stdout=StringIO())
    assert [m for m in await console.drain(0.3) if m["type"] == "error"] == []

    await sync_to_async(call_command)("revoke", token.prefix, str(session.pk), stdout=StringIO())
    assert await closed_unauthorized(console) == "API token revoked"
    assert await closed_unauthorized(page) == "Session token revoked"


# --- end-user sessions ------------------------------------------------------------------------
async def test_it_closes_a_revoked_end_user_sessions_socket(clients: Any) -> None:
    session, secret = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    page = await registered(clients, secret)
    await sync_to_async(ring)(session)
    await page.expect("event", "call.ringing")
    await sync_to_async(session.revoke)()
    assert await closed_unauthorized(page) == "Session token revoked"


async def test_it_closes_an_end_user_socket_when_its_session_expires(clients: Any) -> None:
    session, secret = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    page = await registered(clients, secret)
    # Moved to the near past's edge (as an admin edit does): the socket re-arms its timer.
    session.expires_at = timezone.now() + timedelta(seconds=1)
    await sync_to_async(session.save)(update_fields=["expires_at"])
    assert await closed_unauthorized(page, within=DEADLINE_S + 1) == "Session token expired"


@pytest.mark.slow
async def test_it_lets_a_call_finish_when_the_end_users_session_expires_mid_call(
    clients: Any,
) -> None:
    session, secret = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    page = await clients()
    peer = ClientPeer(440)
    try:
        answer = await page.offer(secret, await peer.offer(), mode="echo")
        await peer.accept(answer["data"]["sdp"])
        await peer.wait_connected()
        await peer.hears(440)
        session.expires_at = timezone.now() + timedelta(seconds=0.5)
        await sync_to_async(session.save)(update_fields=["expires_at"])
        assert await closed_unauthorized(page, within=DEADLINE_S + 1) == "Session token expired"

        # Closing the socket is not a hang-up: the call and its media go on ...
        call = await Call.objects.aget(pk=answer["callSid"])
        assert call.state == "active"
        await peer.hears(440)
        # ... but the expired session starts nothing new and cannot sign in again.
        again = await clients()
        await again.send({"type": "register", "sessionId": "", "authToken": secret})
        refused = await again.expect("error")
        assert refused["data"]["code"] == "UNAUTHORIZED"
    finally:
        await peer.close()


# --- staff on /ws/operator ------------------------------------------------------------------
def staff_login(username: str = "alice", password: str = "correct horse battery") -> Client:
    """A browser logged in through the admin's form (sync)."""
    users = get_user_model().objects
    if not users.filter(username=username).exists():
        user = users.create_user(username=username, password=password, is_staff=True)
        user.groups.add(operators_group())
    browser = Client()
    answer = browser.post("/admin/login/", {"username": username, "password": password})
    assert answer.status_code == 302, answer.content[:300]
    return browser


def cookie_of(browser: Client) -> str:
    return f"sessionid={browser.cookies['sessionid'].value}"


async def feed(clients: Any, browser: Client) -> SignalClient:
    socket = await clients("/ws/operator", cookie_of(browser))
    assert (await socket.receive())["type"] == "snapshot"
    return socket


async def test_it_closes_the_operator_feed_of_the_browser_that_logged_out_only(
    clients: Any,
) -> None:
    laptop, phone = await sync_to_async(staff_login)(), await sync_to_async(staff_login)()
    leaving, staying = await feed(clients, laptop), await feed(clients, phone)
    answer = await sync_to_async(laptop.post)("/admin/logout/")
    assert answer.status_code == 200
    assert await closed_unauthorized(leaving) == "Staff login ended"
    assert await staying.communicator.receive_nothing(timeout=0.5)
    session, _ = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    await sync_to_async(ring)(session)
    await staying.expect("event", "call.incoming")


async def test_it_closes_the_operator_feed_when_the_staff_login_expires(clients: Any) -> None:
    browser = await sync_to_async(staff_login)()
    key = browser.cookies["sessionid"].value
    soon = timezone.now() + timedelta(seconds=1)
    await Session.objects.filter(session_key=key).aupdate(expire_date=soon)
    socket = await feed(clients, browser)
    assert await closed_unauthorized(socket, within=DEADLINE_S + 1) == "Staff login ended"


def deactivate(user: Any) -> None:
    user.is_active = False
    user.save()


def demote(user: Any) -> None:
    user.is_staff = False
    user.save()


def take_the_operator_permission(user: Any) -> None:
    user.groups.remove(operators_group())


def take_the_groups_permission(user: Any) -> None:
    operators_group().permissions.clear()


def delete(user: Any) -> None:
    user.delete()


def change_password(user: Any) -> None:
    user.set_password("a whole new battery staple")
    user.save()


@pytest.mark.parametrize(
    "change",
    [
        deactivate,
        demote,
        take_the_operator_permission,
        take_the_groups_permission,
        delete,
        change_password,
    ],
)
async def test_it_closes_the_operator_feed_when_the_staff_user_stops_being_an_operator(
    clients: Any, change: Callable[[Any], None]
) -> None:
    browser = await sync_to_async(staff_login)()
    socket = await feed(clients, browser)
    user = await get_user_model().objects.aget(username="alice")
    await sync_to_async(change)(user)
    assert await closed_unauthorized(socket) in (
        "Staff login ended",
        "This login may not operate calls",
    )


async def test_it_keeps_the_feed_of_an_operator_whose_other_details_change(clients: Any) -> None:
    browser = await sync_to_async(staff_login)()
    socket = await feed(clients, browser)
    user = await get_user_model().objects.aget(username="alice")
    user.first_name = "Alice"
    await sync_to_async(user.save)()
    assert await socket.communicator.receive_nothing(timeout=0.5)
