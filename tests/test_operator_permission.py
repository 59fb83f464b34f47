"""One explicit operator permission: `calls.operate_calls`, held through the Operators group.

Staff without it may log in to the admin but operate nothing: REST answers 403 FORBIDDEN,
/ws/operator refuses the handshake, the dashboard answers 403 and the admin does not offer
it. Superusers hold every permission.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from calls.operators import OPERATOR_PERMISSION, OPERATORS_GROUP_NAME, operators_group

pytestmark = [pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"


def make_staff(kind: str) -> Any:
    users = get_user_model().objects
    if kind == "superuser":
        return users.create_superuser(username=kind, password=PASSWORD)
    user = users.create_user(username=kind, password=PASSWORD, is_staff=True)
    if kind == "operator":
        user.groups.add(operators_group())
    return user


def browser_of(user: Any) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.mark.parametrize(
    ("kind", "operates"), [("staff", False), ("operator", True), ("superuser", True)]
)
def test_it_lets_only_staff_holding_the_operator_permission_operate_over_rest(
    kind: str, operates: bool
) -> None:
    browser = browser_of(make_staff(kind))
    listing = browser.get("/api/calls")
    placed = browser.post("/api/calls", {"mode": "echo"}, content_type="application/json")
    if operates:
        assert listing.status_code == 200, listing.content
        assert placed.status_code == 201, placed.content
    else:
        for answer in (listing, placed):
            assert answer.status_code == 403, answer.content
            assert answer.json()["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    ("kind", "operates"), [("staff", False), ("operator", True), ("superuser", True)]
)
def test_it_shows_the_dashboard_only_to_operators(kind: str, operates: bool) -> None:
    browser = browser_of(make_staff(kind))
    assert browser.get("/admin/dashboard/").status_code == (200 if operates else 403)
    index = browser.get("/admin/")
    assert index.status_code == 200
    assert ("Open the operator dashboard" in index.content.decode()) is operates


@pytest.mark.parametrize(
    ("kind", "operates"), [("staff", False), ("operator", True), ("superuser", True)]
)
async def test_it_opens_the_operator_feed_only_to_operators(
    asgi_app: Any, kind: str, operates: bool
) -> None:
    user = await sync_to_async(make_staff)(kind)
    browser = await sync_to_async(browser_of)(user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(asgi_app, "/ws/operator", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected is operates
    await communicator.disconnect(timeout=5)


def test_it_makes_the_demo_operator_an_operator_through_the_group() -> None:
    call_command("demo_operator", stdout=io.StringIO())
    user = get_user_model().objects.get(username="operator")
    assert list(user.groups.values_list("name", flat=True)) == [OPERATORS_GROUP_NAME]
    assert user.has_perm(OPERATOR_PERMISSION)
