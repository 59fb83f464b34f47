"""Preflight reports: filed by the end user's own page, validated and capped, judged in plain
language, read by operators on the caller's call (REST) and by support in admin."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from calls.models import Call, EndUserSession, PreflightReport
from calls.preflight import MAX_REPORT_BYTES, PREFLIGHT_MAX_PER_SESSION, assess, validate
from calls.principals import Principal
from tests.support.rest_client import assert_error, bearer_client

GOOD = {
    "trigger": "before_call",
    "microphone": {"ok": True, "level": 0.42},
    "echo": {
        "ok": True,
        "rttMs": 12.5,
        "jitterMs": 1.2,
        "lossPercent": 0,
        "packetsReceived": 150,
        "packetsLost": 0,
    },
    "turn": {"configured": True, "reachable": True},
}


def with_(path: str, value: Any) -> dict[str, Any]:
    report = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node: Any = report
    for name in parents:
        node = node[name]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return report


def test_it_judges_reports_in_plain_language_worst_first() -> None:
    assert assess(validate(GOOD)) == (
        "good",
        ["Everything works: your microphone and the connection."],
    )
    poor = validate(
        with_("echo", {"ok": True, "rttMs": 420, "jitterMs": 45, "lossPercent": 5.25})
        | {"turn": {"configured": True, "reachable": False}}
    )
    verdict, findings = assess(poor)
    assert verdict == "warning"
    assert findings == [
        "The connection is slow (round trip 420 ms): you may talk over each other.",
        "The connection is unsteady (jitter 45 ms): sound may break up.",
        "Some sound was lost on the way (5.2% of packets): sound may break up.",
        "The relay server could not be reached: calls from some networks may fail.",
    ]
    broken = validate(
        with_("microphone", {"ok": False, "problem": "Microphone access is blocked."})
        | {"echo": {"ok": False, "problem": "no media"}}
    )
    assert assess(broken) == (
        "problem",
        [
            "The microphone does not work: Microphone access is blocked.",
            "Sound could not travel to the service and back: a call would not connect (no media).",
        ],
    )
    quiet = assess(validate(with_("microphone.level", 0.001)))
    assert quiet[0] == "warning" and "very quiet" in quiet[1][0]
    # No TURN configured: nothing to say about it.
    assert assess(validate(with_("turn", {"configured": False, "reachable": None})))[0] == "good"


@pytest.fixture
def ringing(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> tuple[Call, EndUserSession, APIClient]:
    session, token = make_session("Ada")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    return call, session, bearer_client(token)


@pytest.mark.django_db
def test_it_keeps_the_callers_report_for_operators_on_their_call(
    ringing: tuple[Call, EndUserSession, APIClient],
    operator_client: APIClient,
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    call, session, user = ringing
    assert_error(operator_client.get(f"/api/calls/{call.pk}/preflight"), 404, "NOT_FOUND")
    filed = user.post(
        "/api/sessions/me/preflight", GOOD, format="json", HTTP_USER_AGENT="TestBrowser/2"
    )
    assert filed.status_code == 201, filed.json()
    body = filed.json()
    assert (body["sessionId"], body["verdict"]) == (str(session.pk), "good")
    assert body["report"] == GOOD
    stored = PreflightReport.objects.get()
    assert (stored.session_id, stored.user_agent) == (session.pk, "TestBrowser/2")

    later = user.post("/api/sessions/me/preflight", with_("echo.rttMs", 900), format="json")
    seen = operator_client.get(f"/api/calls/{call.pk}/preflight")
    assert seen.status_code == 200
    assert seen.json()["preflightID"] == later.json()["preflightID"]  # the latest
    assert seen.json()["verdict"] == "warning"

    # Only the end user files (their own session); only operators read.
    assert_error(user.get(f"/api/calls/{call.pk}/preflight"), 403, "FORBIDDEN")
    assert_error(
        operator_client.post("/api/sessions/me/preflight", GOOD, format="json"), 403, "FORBIDDEN"
    )
    assert_error(
        APIClient().post("/api/sessions/me/preflight", GOOD, format="json"), 401, "UNAUTHORIZED"
    )
    other, other_token = make_session("Bo")
    bearer_client(other_token).post("/api/sessions/me/preflight", GOOD, format="json")
    assert PreflightReport.objects.filter(session=other).count() == 1
    assert operator_client.get(f"/api/calls/{call.pk}/preflight").json()["sessionId"] == str(
        session.pk
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ([], "INVALID_MESSAGE"),
        (with_("microphone", ...), "INVALID_ARGUMENT"),
        (with_("microphone.ok", ...), "INVALID_ARGUMENT"),
        (with_("microphone.level", 2), "INVALID_ARGUMENT"),
        (with_("microphone.level", True), "INVALID_ARGUMENT"),
        (with_("microphone.level", "loud"), "INVALID_ARGUMENT"),
        (with_("microphone.deviceLabel", "Jabra"), "INVALID_ARGUMENT"),
        (with_("echo.rttMs", -1), "INVALID_ARGUMENT"),
        (with_("echo.lossPercent", 101), "INVALID_ARGUMENT"),
        (with_("echo.packetsLost", 1.5), "INVALID_ARGUMENT"),
        (with_("echo.packetsLost", 10**400), "INVALID_ARGUMENT"),
        (with_("echo.problem", "x" * 201), "INVALID_ARGUMENT"),
        (with_("turn.reachable", "yes"), "INVALID_ARGUMENT"),
        (with_("trigger", "whenever"), "INVALID_ARGUMENT"),
        (with_("screen", {}), "INVALID_ARGUMENT"),
        (with_("echo.padding", "x" * MAX_REPORT_BYTES), "INVALID_ARGUMENT"),
    ],
)
def test_it_refuses_malformed_or_oversized_reports_and_keeps_nothing(
    ringing: tuple[Call, EndUserSession, APIClient], body: Any, code: str
) -> None:
    _, _, user = ringing
    response = user.post(
        "/api/sessions/me/preflight",
        json.dumps(body),
        content_type="application/json",
    )
    assert_error(response, 400, code)
    assert PreflightReport.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_it_caps_reports_per_session_under_concurrency(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    session, token = make_session("Ada")
    for _ in range(PREFLIGHT_MAX_PER_SESSION - 3):
        bearer_client(token).post("/api/sessions/me/preflight", GOOD, format="json")
    statuses: list[int] = []
    start = threading.Barrier(8)

    def post() -> None:
        try:
            start.wait(timeout=10)
            response = bearer_client(token).post("/api/sessions/me/preflight", GOOD, format="json")
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [201] * 3 + [429] * 5
    assert PreflightReport.objects.filter(session=session).count() == PREFLIGHT_MAX_PER_SESSION


@pytest.mark.django_db
def test_it_shows_reports_read_only_to_support_in_admin(
    ringing: tuple[Call, EndUserSession, APIClient], superuser: Any
) -> None:
    _, _, user = ringing
    filed = user.post(
        "/api/sessions/me/preflight", with_("echo.lossPercent", 7.5), format="json"
    ).json()
    admin = Client()
    admin.force_login(superuser)
    listing = admin.get("/admin/calls/preflightreport/?q=Ada").content.decode()
    assert "Ada" in listing and "Some sound was lost on the way (7.5% of packets)" in listing
    detail = admin.get(f"/admin/calls/preflightreport/{filed['preflightID']}/change/")
    assert detail.status_code == 200 and "lossPercent" in detail.content.decode()
    assert admin.get("/admin/calls/preflightreport/add/").status_code == 403
