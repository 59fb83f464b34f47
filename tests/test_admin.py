"""Django admin: tokens shown once and revocable, calls read-only with their timeline."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from calls.models import ApiToken, Call, CallEvent, EndUserSession
from calls.principals import Principal
from tests.support.rest_client import assert_error, bearer_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def shown_token(html: str, prefix: str) -> str:
    match = re.search(rf'value="({prefix}_[A-Za-z0-9_-]+)"', html)
    assert match, "the new token is not on the page"
    return match.group(1)


def test_it_shows_a_new_api_token_once_and_stores_only_its_hash(
    admin_client: Client, superuser: Any
) -> None:
    response = admin_client.post("/admin/calls/apitoken/add/", {"name": "crm"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = shown_token(response.content.decode(), "cbk")
    stored = ApiToken.objects.get(name="crm")
    assert stored.created_by == superuser
    assert token.startswith(stored.prefix) and token != stored.token_hash
    assert bearer_client(token).get("/api/calls").status_code == 200
    change_page = admin_client.get(f"/admin/calls/apitoken/{stored.pk}/change/")
    assert token not in change_page.content.decode()
    assert stored.prefix in change_page.content.decode()


def test_it_revokes_tokens_from_the_list(admin_client: Client) -> None:
    token, secret = ApiToken.create("old")
    response = admin_client.post(
        "/admin/calls/apitoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
        follow=True,
    )
    assert b"Revoked 1." in response.content
    assert_error(bearer_client(secret).get("/api/calls"), 401, "UNAUTHORIZED")


def test_it_never_deletes_tokens_or_sessions(admin_client: Client) -> None:
    token, _ = ApiToken.create("keep")
    session, _ = EndUserSession.create(ttl_seconds=60)
    assert admin_client.get(f"/admin/calls/apitoken/{token.pk}/delete/").status_code == 403
    assert admin_client.get(f"/admin/calls/endusersession/{session.pk}/delete/").status_code == 403


def test_it_creates_an_end_user_link_from_the_admin(admin_client: Client) -> None:
    form = admin_client.get("/admin/calls/endusersession/add/")
    expires = form.context["adminform"].form.initial["expires_at"]
    response = admin_client.post(
        "/admin/calls/endusersession/add/",
        {
            "display_name": "Walk-in",
            "metadata": "{}",
            "expires_at_0": expires.strftime("%Y-%m-%d"),
            "expires_at_1": expires.strftime("%H:%M:%S"),
        },
    )
    assert response.status_code == 200, response.content[:500]
    html = response.content.decode()
    token = shown_token(html, "cbs")
    assert f"/talk/?token={token}" in html
    assert Client().get(f"/talk/?token={token}").status_code == 200


def test_it_shows_a_call_with_legs_and_timeline_read_only(
    admin_client: Client, inbound_call: Call, operator: Principal
) -> None:
    inbound_call.answer(operator)
    inbound_call.hang_up(operator)
    page = admin_client.get(f"/admin/calls/call/{inbound_call.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    for text in ("call.created", "call.answered", "call.ended", "Event timeline", "operator"):
        assert text in html
    assert 'name="_save"' not in html  # view-only: nothing to submit
    events = CallEvent.objects.filter(call=inbound_call).count()
    post = admin_client.post(f"/admin/calls/call/{inbound_call.pk}/change/", {"state": "ringing"})
    assert post.status_code == 403
    assert Call.objects.get(pk=inbound_call.pk).state == "ended"
    assert CallEvent.objects.filter(call=inbound_call).count() == events
    assert admin_client.get(f"/admin/calls/call/{inbound_call.pk}/delete/").status_code == 403
    assert admin_client.get("/admin/calls/call/add/").status_code == 403


def test_it_finds_calls_by_id_and_filters_by_state(
    admin_client: Client, inbound_call: Call
) -> None:
    other = Call.start(
        by=Principal.end_user(EndUserSession.create(ttl_seconds=60)[0]),
        mode="echo",
        media_worker="embedded",
    )
    found = admin_client.get(f"/admin/calls/call/?q={inbound_call.pk}")
    assert list(found.context["cl"].result_list) == [inbound_call]
    by_state = admin_client.get("/admin/calls/call/?state__exact=active")
    assert list(by_state.context["cl"].result_list) == [other]
    assert admin_client.get("/admin/calls/call/?q=not-a-uuid").status_code == 200


def test_it_finds_calls_by_a_clients_callsid_or_numbers(
    admin_client: Client, inbound_call: Call
) -> None:
    by_gateway = [
        Call.start(
            by=Principal.end_user(EndUserSession.create(ttl_seconds=60)[0]),
            mode="echo",
            media_worker="embedded",
            external_id=external_id,
            caller="+14155551234",
            callee=callee,
        )
        for external_id, callee in (
            ("call-unique-id", "+14155555678"),
            ("6f0e8a4e-0000-4000-8000-00000000abcd", "support"),
        )
    ]
    for term, expected in (
        ("call-unique-id", [by_gateway[0]]),
        ("call-unique", []),  # a callSid is matched whole
        ("6f0e8a4e-0000-4000-8000-00000000abcd", [by_gateway[1]]),  # a UUID-shaped callSid
        ("support", [by_gateway[1]]),
        ("+14155551234", list(reversed(by_gateway))),
    ):
        found = admin_client.get("/admin/calls/call/", {"q": term})
        assert list(found.context["cl"].result_list) == expected, term
    page = admin_client.get("/admin/calls/call/").content.decode()
    assert "call-unique-id" in page


def test_it_hangs_up_stuck_calls_from_the_list(admin_client: Client, inbound_call: Call) -> None:
    admin_client.post(
        "/admin/calls/call/",
        {"action": "hang_up", "_selected_action": [str(inbound_call.pk)]},
    )
    stored = Call.objects.get(pk=inbound_call.pk)
    assert (stored.state, stored.ended_by) == ("rejected", "operator root")


def test_it_keeps_non_staff_out(inbound_call: Call) -> None:
    anonymous = Client().get(f"/admin/calls/call/{inbound_call.pk}/change/")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]


def test_it_lists_callback_requests_with_their_history_and_closes_them(
    admin_client: Client,
) -> None:
    from calls import callbacks
    from calls.models import CallbackRequest, Queue

    queue = Queue.objects.create(name="Support", public_id="support")
    session, _ = EndUserSession.create(ttl_seconds=600, display_name="Ada")
    call = Call.start(
        by=Principal.end_user(session), mode="bridge", media_worker="embedded", queue=queue
    )
    request = callbacks.request_callback(Principal.end_user(session), str(call.pk), "after 5pm")
    listed = admin_client.get("/admin/calls/callbackrequest/?state__exact=open")
    assert listed.status_code == 200 and b"after 5pm" in listed.content
    page = admin_client.get(f"/admin/calls/callbackrequest/{request.pk}/change/")
    assert page.status_code == 200
    assert b"callback.requested" in page.content and b"end user Ada" in page.content
    admin_client.post(
        "/admin/calls/callbackrequest/",
        {"action": "mark_done", "_selected_action": [str(request.pk)]},
    )
    stored = CallbackRequest.objects.get(pk=request.pk)
    assert (stored.state, stored.handled_by_label) == ("done", "operator root")
    assert admin_client.get("/admin/calls/callbackrequest/add/").status_code == 403
