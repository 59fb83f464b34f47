"""Call notes and disposition (issue 16 item 4): who writes them until when, what is
refused, the history kept, the search, the admin, and what end users never see."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from calls.models import (
    ApiToken,
    Call,
    CallEvent,
    CallNotes,
    CallNotesRevision,
    DispositionCode,
    EndUserSession,
)
from tests.support.queues import answer, in_threads, make_operator, make_queue
from tests.support.rest_client import assert_error, bearer_client

pytestmark = pytest.mark.django_db


def staff_client(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def make_supervisor(name: str) -> Any:
    user = make_operator(name, available=False)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="calls", codename="change_callnotes")
    )
    return user


@pytest.fixture
def codes() -> dict[str, DispositionCode]:
    made = {
        "resolved": DispositionCode.objects.create(code="resolved", label="Resolved", ordering=1),
        "callback": DispositionCode.objects.create(code="callback", label="Call back", ordering=2),
        "retired": DispositionCode.objects.create(code="retired", label="Old", active=False),
        "sales-only": DispositionCode.objects.create(code="sales-only", label="Sale made"),
    }
    made["sales-only"].queues.add(make_queue("sales", []))
    return made


class Answered:
    """An end user's call (default queue) that alice answered over REST."""

    def __init__(self, make_session: Callable[..., tuple[EndUserSession, str]]) -> None:
        self.alice = make_operator("alice")
        _, token = make_session("Ada")
        self.end_user = bearer_client(token)
        self.call_id = self.end_user.post("/api/calls").json()["callID"]
        assert answer(self.alice, self.call_id).status_code == 200
        self.as_alice = staff_client(self.alice)

    @property
    def url(self) -> str:
        return f"/api/calls/{self.call_id}/disposition"

    def put(self, client: APIClient, body: Any) -> Any:
        return client.put(self.url, body, format="json")

    def hang_up(self) -> None:
        assert self.as_alice.post(f"/api/calls/{self.call_id}/hangup").status_code == 200

    def ended_ago(self, seconds: int) -> None:
        ended = timezone.now() - timedelta(seconds=seconds)
        Call.objects.filter(pk=self.call_id).update(ended_at=ended)

    def records(self) -> tuple[int, int, Any]:
        notes = CallNotes.objects.filter(call_id=self.call_id).values_list(
            "disposition__code", "notes", "revision"
        )
        return (
            CallNotesRevision.objects.count(),
            CallEvent.objects.filter(call_id=self.call_id).count(),
            list(notes),
        )


@pytest.fixture
def answered(make_session: Callable[..., tuple[EndUserSession, str]]) -> Answered:
    return Answered(make_session)


def test_it_lets_the_operator_write_notes_in_the_call_and_in_wrap_up(
    answered: Answered, codes: dict[str, DispositionCode], settings: Any
) -> None:
    saved = answered.put(answered.as_alice, {"code": "callback", "notes": "Wants a refund"})
    assert saved.status_code == 200, saved.json()
    body = saved.json()
    assert body["disposition"] == {"code": "callback", "label": "Call back", "active": True}
    assert (body["notes"], body["revision"], body["updatedBy"]) == (
        "Wants a refund",
        1,
        "operator alice",
    )
    assert body["editableUntil"] is None  # the call is still open

    answered.hang_up()
    # Wrap-up: a new disposition and longer notes; leaving `code` out keeps it.
    wrap = answered.put(answered.as_alice, {"notes": "Wants a refund.\r\nCall back Monday"})
    assert wrap.json()["disposition"]["code"] == "callback"
    resolved = answered.put(answered.as_alice, {"code": "resolved"}).json()
    assert (resolved["notes"], resolved["revision"]) == ("Wants a refund.\nCall back Monday", 3)
    ended_at = Call.objects.get(pk=answered.call_id).ended_at
    assert resolved["editableUntil"] == (ended_at + timedelta(hours=1)).isoformat().replace(
        "+00:00", "Z"
    )
    assert [(h["revision"], h["disposition"], h["by"]) for h in resolved["history"]] == [
        (1, "callback", "operator alice"),
        (2, "callback", "operator alice"),
        (3, "resolved", "operator alice"),
    ]
    assert resolved["history"][0]["notes"] == "Wants a refund"
    # Saving what is there already writes nothing.
    before = answered.records()
    assert answered.put(answered.as_alice, {"code": "resolved"}).json()["revision"] == 3
    assert answered.records() == before

    # The call's JSON shows both to operators.
    call = answered.as_alice.get(f"/api/calls/{answered.call_id}").json()
    assert (call["disposition"], call["notes"]) == ("resolved", "Wants a refund.\nCall back Monday")
    # The timeline: each change an event, never the text.
    events = CallEvent.objects.filter(call_id=answered.call_id, name__startswith="call.")
    timeline = [
        (e.name, e.data)
        for e in events
        if e.name not in ("call.created", "call.answered", "call.ended")
    ]
    assert timeline == [
        ("call.disposition_set", {"disposition": "callback", "previous": None, "revision": 1}),
        ("call.notes_updated", {"revision": 1, "length": 14}),
        ("call.notes_updated", {"revision": 2, "length": 32}),
        (
            "call.disposition_set",
            {"disposition": "resolved", "previous": "callback", "revision": 3},
        ),
    ]
    assert all(e.actor == "operator alice" for e in events.filter(name="call.notes_updated"))


def test_it_closes_the_window_for_the_operator_but_not_for_a_supervisor(
    answered: Answered, codes: dict[str, DispositionCode], settings: Any
) -> None:
    settings.CALLBRIDGE_NOTES_EDITABLE_S = 60
    answered.hang_up()
    answered.ended_ago(61)
    before = answered.records()
    late = answered.put(answered.as_alice, {"code": "resolved", "notes": "late"})
    assert "supervisor" in assert_error(late, 403, "FORBIDDEN")["message"]
    assert answered.records() == before

    # Someone else's call: FORBIDDEN for another operator and an integrator's token alike.
    carol = staff_client(make_operator("carol"))
    assert_error(answered.put(carol, {"notes": "mine now"}), 403, "FORBIDDEN")
    _, secret = ApiToken.create("crm")
    assert_error(answered.put(bearer_client(secret), {"notes": "crm"}), 403, "FORBIDDEN")
    assert answered.records() == before

    boss = staff_client(make_supervisor("boss"))
    fixed = answered.put(boss, {"code": "resolved", "notes": "Checked by the supervisor"})
    assert fixed.status_code == 200, fixed.json()
    assert [h["by"] for h in fixed.json()["history"]] == ["operator boss"]
    # Another operator may read them (the team's calls), not change them.
    assert carol.get(answered.url).json()["notes"] == "Checked by the supervisor"


def test_it_keeps_the_window_open_for_the_queue_wrap_up_when_longer(
    make_session: Callable[..., tuple[EndUserSession, str]], settings: Any
) -> None:
    settings.CALLBRIDGE_NOTES_EDITABLE_S = 0
    alice = make_operator("alice")
    make_queue("billing", [alice], wrap_up_s=600, open_answer=True)
    _, token = make_session("Ada")
    created = bearer_client(token).post("/api/calls", {"queue": "billing"}, format="json")
    call_id = created.json()["callID"]
    assert answer(alice, call_id).status_code == 200
    as_alice = staff_client(alice)
    assert as_alice.post(f"/api/calls/{call_id}/hangup").status_code == 200
    url = f"/api/calls/{call_id}/disposition"
    assert as_alice.put(url, {"notes": "in wrap-up"}, format="json").status_code == 200
    Call.objects.filter(pk=call_id).update(ended_at=timezone.now() - timedelta(seconds=601))
    assert_error(as_alice.put(url, {"notes": "too late"}, format="json"), 403, "FORBIDDEN")


def test_it_refuses_bad_codes_and_notes_and_changes_nothing(
    answered: Answered, codes: dict[str, DispositionCode], settings: Any
) -> None:
    settings.CALLBRIDGE_NOTES_MAX_CHARS = 100
    assert (
        answered.put(answered.as_alice, {"code": "callback", "notes": "first"}).status_code == 200
    )
    before = answered.records()
    refusals = [
        ({"code": "nonsense"}, 400, "INVALID_ARGUMENT", "no disposition code"),
        ({"code": "retired"}, 400, "INVALID_ARGUMENT", "no longer in use"),
        ({"code": "sales-only"}, 400, "INVALID_ARGUMENT", "not for this call's queue"),
        ({"notes": "x" * 101}, 400, "INVALID_ARGUMENT", "at most 100 characters"),
        ({"notes": "bell\x07"}, 400, "INVALID_ARGUMENT", "plain text"),
        ({"notes": "nul\x00"}, 400, "INVALID_ARGUMENT", "notes"),
        ({"code": 5}, 400, "INVALID_ARGUMENT", "code"),
        ({}, 400, "INVALID_MESSAGE", "Send code, notes or both"),
        (["code"], 400, "INVALID_MESSAGE", "JSON object"),
        ({"code": "resolved", "notes": "y" * 101}, 400, "INVALID_ARGUMENT", "at most"),
        # Edited revision 0 while it moved on to 1: no lost update.
        ({"notes": "stale", "revision": 0}, 409, "CALL_STATE", "changed meanwhile"),
        ({"notes": "stale", "revision": -1}, 400, "INVALID_ARGUMENT", "revision"),
    ]
    for body, status, code, message in refusals:
        error = assert_error(answered.put(answered.as_alice, body), status, code)
        assert message in error["message"], (body, error)
        assert answered.records() == before, body
    # A retired code stays on the calls that have it: saving notes beside it still works.
    DispositionCode.objects.filter(code="callback").update(active=False)
    kept = answered.put(
        answered.as_alice, {"code": "callback", "notes": "second", "revision": 1}
    ).json()
    assert (kept["disposition"], kept["revision"]) == (
        {"code": "callback", "label": "Call back", "active": False},
        2,
    )
    # The queue-limited code is fine on that queue's calls: GET /api/dispositions says where.
    listed = answered.as_alice.get("/api/dispositions").json()
    assert [(c["code"], c["queues"]) for c in listed] == [
        ("sales-only", ["sales"]),
        ("resolved", []),
    ]


def test_it_never_shows_notes_to_end_users(
    answered: Answered, codes: dict[str, DispositionCode]
) -> None:
    answered.put(answered.as_alice, {"code": "resolved", "notes": "Rude caller"})
    user = answered.end_user
    own = user.get(f"/api/calls/{answered.call_id}").json()
    assert "disposition" not in own and "notes" not in own
    assert all("notes" not in c and "disposition" not in c for c in user.get("/api/calls").json())
    assert "Rude" not in user.get("/api/calls").content.decode()
    before = answered.records()
    assert_error(answered.put(user, {"notes": "I was not rude"}), 403, "FORBIDDEN")
    assert_error(user.get(answered.url), 403, "FORBIDDEN")
    assert_error(user.get("/api/dispositions"), 403, "FORBIDDEN")
    # Not even by searching its own calls.
    assert_error(user.get("/api/calls?q=rude"), 403, "FORBIDDEN")
    assert_error(user.get("/api/calls?disposition=resolved"), 403, "FORBIDDEN")
    assert answered.records() == before


def test_it_finds_calls_by_words_of_their_notes_and_by_disposition(
    make_session: Callable[..., tuple[EndUserSession, str]], codes: dict[str, DispositionCode]
) -> None:
    alice = make_operator("alice")
    as_alice = staff_client(alice)
    notes = {"resolved": "Refund issued for order 42", "callback": "Wants a REFUND, call back"}
    made = {}
    for code, text in notes.items():
        _, token = make_session(code)
        call_id = bearer_client(token).post("/api/calls").json()["callID"]
        assert answer(alice, call_id).status_code == 200
        assert as_alice.post(f"/api/calls/{call_id}/hangup").status_code == 200
        url = f"/api/calls/{call_id}/disposition"
        assert as_alice.put(url, {"code": code, "notes": text}, format="json").status_code == 200
        made[code] = call_id
    _, token = make_session("silent")
    bearer_client(token).post("/api/calls")  # no notes at all

    def found(query: str) -> set[str]:
        response = as_alice.get(f"/api/calls?{query}")
        assert response.status_code == 200, response.json()
        return {call["callID"] for call in response.json()}

    assert found("q=refund") == set(made.values())  # any case
    assert found("q=refund+order") == {made["resolved"]}  # every word
    assert found("q=nothing") == set()
    assert found("disposition=callback") == {made["callback"]}
    assert found("disposition=resolved,callback&state=ended") == set(made.values())
    assert found("disposition=retired") == set()  # a retired code is still a filter
    assert_error(as_alice.get("/api/calls?disposition=nonsense"), 400, "INVALID_ARGUMENT")
    assert_error(as_alice.get("/api/calls?q=" + "a" * 201), 400, "INVALID_ARGUMENT")


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_it_records_both_of_two_saves_at_the_same_instant(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    DispositionCode.objects.create(code="resolved", label="Resolved")
    DispositionCode.objects.create(code="callback", label="Call back")
    answered = Answered(make_session)
    bodies = [{"code": "resolved", "notes": "first"}, {"code": "callback", "notes": "second"}]
    statuses = in_threads(
        lambda body: answered.put(staff_client(answered.alice), body).status_code, bodies
    )
    assert statuses == [200, 200]
    history = list(
        CallNotesRevision.objects.filter(call_id=answered.call_id).values_list(
            "revision", "disposition__code", "notes"
        )
    )
    assert [row[0] for row in history] == [1, 2]
    assert {row[1:] for row in history} == {("resolved", "first"), ("callback", "second")}
    current = CallNotes.objects.get(call_id=answered.call_id)
    # The final state is the later revision, whole: never one save's code with the other's notes.
    assert (current.revision, current.disposition.code, current.notes) == (2, *history[1][1:])
    events = CallEvent.objects.filter(call_id=answered.call_id, name="call.disposition_set")
    assert sorted(e.data["revision"] for e in events) == [1, 2]


# --- admin -------------------------------------------------------------------------------------
@pytest.fixture
def admin_client(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def test_it_shows_notes_and_disposition_in_the_admin(
    answered: Answered, codes: dict[str, DispositionCode], admin_client: Client
) -> None:
    answered.put(answered.as_alice, {"code": "callback", "notes": "Wants a <b>refund</b>"})
    answered.put(answered.as_alice, {"code": "resolved"})
    page = admin_client.get(f"/admin/calls/call/{answered.call_id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Resolved (resolved)" in html and "Call back (callback)" in html  # now, and before
    assert "Wants a &lt;b&gt;refund&lt;/b&gt;" in html and "<b>refund</b>" not in html
    assert "notes and disposition history" in html.lower()

    short = answered.call_id[:8]
    for query in ("disposition=resolved", "q=refund", "disposition=resolved&q=refund"):
        listed = admin_client.get(f"/admin/calls/call/?{query}")
        assert listed.status_code == 200 and short in listed.content.decode(), query
    for query in ("disposition=callback", "disposition=-", "q=nothing"):
        listed = admin_client.get(f"/admin/calls/call/?{query}")
        assert listed.status_code == 200 and short not in listed.content.decode(), query

    codes_page = admin_client.get("/admin/calls/dispositioncode/")
    assert codes_page.status_code == 200 and "Sale made" in codes_page.content.decode()
    assert admin_client.get("/admin/calls/dispositioncode/add/").status_code == 200
    added = admin_client.post(
        "/admin/calls/dispositioncode/add/",
        {"code": "wrong-number", "label": "Wrong number", "active": "on", "ordering": "5"},
    )
    assert added.status_code == 302, added.content[:500]
    # A code some call has had is retired, never deleted (the history keeps it).
    used = codes["callback"]
    assert admin_client.get(f"/admin/calls/dispositioncode/{used.pk}/delete/").status_code == 403
    unused = DispositionCode.objects.get(code="wrong-number")
    assert admin_client.get(f"/admin/calls/dispositioncode/{unused.pk}/delete/").status_code == 200


def test_it_keeps_the_history_append_only(
    answered: Answered, codes: dict[str, DispositionCode]
) -> None:
    answered.put(answered.as_alice, {"notes": "kept"})
    revision = CallNotesRevision.objects.get(call_id=answered.call_id)
    with pytest.raises(PermissionError):
        CallNotesRevision.objects.filter(pk=revision.pk).update(notes="rewritten")
    with pytest.raises(PermissionError):
        revision.delete()


def test_it_refuses_a_cookie_save_without_the_csrf_token(
    answered: Answered, codes: dict[str, DispositionCode]
) -> None:
    """A hostile page can make alice's browser send her session cookie, not the token."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(answered.alice)
    before = answered.records()
    body = '{"code": "resolved", "notes": "forged"}'
    forged = browser.put(answered.url, body, content_type="application/json")
    assert_error(forged, 403, "FORBIDDEN")
    assert answered.records() == before
