"""The page views: end-user page (and lobby), operator dashboard."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from calls.models import ApiToken, EndUserSession

pytestmark = pytest.mark.django_db


def page_config(response: Any) -> dict[str, Any]:
    match = re.search(
        r'<script id="config" type="application/json">(.*?)</script>', response.content.decode()
    )
    assert match, "no config on the page"
    return json.loads(match.group(1))


def test_it_refuses_the_bare_page_without_the_lobby(settings: Any) -> None:
    settings.CALLBRIDGE_PUBLIC_LOBBY = False
    response = Client().get("/talk/")
    assert response.status_code == 401
    assert EndUserSession.objects.count() == 0


def test_it_gives_lobby_visitors_an_anonymous_session(settings: Any) -> None:
    settings.CALLBRIDGE_PUBLIC_LOBBY = True
    response = Client().get("/talk/?name=Walk-in%20Wendy")
    assert response.status_code == 302
    assert response["Location"].startswith("/talk/?token=cbs_")
    session = EndUserSession.objects.get()
    assert (session.display_name, session.metadata) == ("Walk-in Wendy", {"lobby": True})
    page = Client().get(response["Location"])
    config = page_config(page)
    assert config["sessionId"] == str(session.pk)
    assert config["signalPath"] == "/ws/signal" and config["iceServers"] == []


def test_it_puts_only_the_pages_own_token_in_its_config(make_session: Any) -> None:
    session, token = make_session("Ada")
    config = page_config(Client().get(f"/talk/?token={token}"))
    assert config["token"] == token and config["displayName"] == "Ada"
    assert config["sessionId"] == str(session.pk)


@pytest.mark.parametrize(
    ("asked", "given"),
    [("billing", "billing"), ("", ""), ("<script>", ""), ("a" * 65, ""), ("b/../c", "")],
)
def test_it_passes_on_only_a_queue_id_a_link_names(make_session: Any, asked: str, given: str):
    _, token = make_session("Ada")
    config = page_config(Client().get("/talk/", {"token": token, "queue": asked}))
    assert config["queue"] == given


def test_it_keeps_the_dashboard_for_staff(staff_user: Any) -> None:
    anonymous = Client().get("/admin/dashboard/")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    someone = get_user_model().objects.create_user("mallory", password="x" * 12)
    client = Client()
    client.force_login(someone)
    assert client.get("/admin/dashboard/").status_code == 302
    client.force_login(staff_user)
    response = client.get("/admin/dashboard/")
    assert response.status_code == 200
    config = page_config(response)
    assert config["feedPath"] == "/ws/operator" and config["csrfToken"]
    assert "token" not in config  # the dashboard acts with the admin session, not a token
    assert config["callSupervisor"] is False  # Monitor / Whisper / Barge: supervisors only
    assert ApiToken.objects.count() == 0
    home = client.get("/admin/")
    assert b"/admin/dashboard/" in home.content


def test_it_gives_supervisors_the_supervisor_modes_on_the_dashboard(supervisor_user: Any) -> None:
    client = Client()
    client.force_login(supervisor_user)
    assert page_config(client.get("/admin/dashboard/"))["callSupervisor"] is True
