"""Supervisor modes without media: who may (supervisors, not the call's own operator),
when (an active bridge call; one supervisor at a time, exactly once under concurrency),
bad input, REST and /ws/operator alike, what the end user is told per setting, the
timeline and the admin, the consent a barging supervisor owes, and the worker's ordering
of Supervise messages. The media: tests/test_supervision_media.py."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from calls import consent, supervision
from calls.background import background_tasks
from calls.errors import CallbridgeError
from calls.models import ApiToken, Call, EndUserSession, Leg, Recording
from calls.principals import Principal
from calls.workers import link, protocol
from tests.support.queues import in_threads
from tests.support.rest_client import assert_error, bearer_client
from tests.support.signal_client import SignalClient, operator_feed

pytestmark = [pytest.mark.django_db(transaction=True)]

# Calls these tests make without a running media worker name none: what the supervision
# would tell a worker is not left queued for the next test's worker.
NO_WORKER = ""


def answered_call() -> tuple[Call, str, str]:
    """An end user's call answered by an API token: (call, user token, operator token)."""
    session, user_token = EndUserSession.create(ttl_seconds=600, display_name="Ada")
    token, operator_token = ApiToken.create("desk")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker=NO_WORKER)
    call.answer(Principal.for_api_token(token))
    return call, user_token, operator_token


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post(client: Client | APIClient, path: str, body: dict[str, Any] | None = None) -> Any:
    """A JSON POST, from a staff browser session or an API client alike."""
    if isinstance(client, APIClient):
        return client.post(path, body or {}, format="json")
    return client.post(path, body or {}, content_type="application/json")


def supervisor_events(call: Call) -> list[tuple[str, str]]:
    events = call.events.filter(name__startswith="supervisor.").order_by("created_at", "id")
    return [(e.name, e.data["mode"]) for e in events]


def a_supervisor(username: str) -> Any:
    from calls.operators import operators_group

    user = get_user_model().objects.create_user(username=username, is_staff=True)
    user.groups.add(operators_group(), supervision.supervisors_group())
    return user


def test_it_lets_only_supervisors_supervise_and_refuses_bad_input(
    staff_user: Any, supervisor_user: Any
) -> None:
    call, user_token, operator_token = answered_call()
    path = f"/api/calls/{call.pk}/supervise"
    # Operators without the permission, the parties themselves, an API token: FORBIDDEN.
    for client in (logged_in(staff_user), bearer_client(user_token), bearer_client(operator_token)):
        assert_error(post(client, path, {"mode": "monitor"}), 403, "FORBIDDEN")
    sam = logged_in(supervisor_user)
    for body in ({}, {"mode": "listen"}, {"mode": 3}):
        assert_error(post(sam, path, body), 400, "INVALID_ARGUMENT")
    assert_error(sam.post(f"{path}/stop"), 409, "CALL_STATE")  # not supervising
    assert supervisor_events(call) == [] and not Leg.objects.filter(role="supervisor").exists()

    joined = post(sam, path, {"mode": "monitor"})
    assert joined.status_code == 200, joined.json()
    (leg,) = [leg for leg in joined.json()["legs"] if leg["role"] == "supervisor"]
    assert (leg["supervisorMode"], leg["party"], leg["leftAt"]) == ("monitor", "operator sam", None)
    assert_error(post(sam, path, {"mode": "monitor"}), 409, "CALL_STATE")
    # Only the supervisor leaves; nobody else steps into its place meanwhile.
    assert_error(logged_in(staff_user).post(f"{path}/stop"), 403, "FORBIDDEN")
    other = logged_in(a_supervisor("tess"))
    assert_error(post(other, path, {"mode": "barge"}), 409, "CALL_STATE")
    for mode in ("whisper", "barge", "monitor"):
        assert post(sam, path, {"mode": mode}).status_code == 200
    left = sam.post(f"{path}/stop")
    assert left.status_code == 200, left.json()
    (leg,) = [leg for leg in left.json()["legs"] if leg["role"] == "supervisor"]
    assert leg["supervisorMode"] == "" and leg["leftAt"] is not None
    # Another supervisor may come after: a leg of their own.
    assert post(other, path, {"mode": "whisper"}).status_code == 200
    assert supervisor_events(call) == [
        ("supervisor.joined", "monitor"),
        ("supervisor.mode_changed", "whisper"),
        ("supervisor.mode_changed", "barge"),
        ("supervisor.mode_changed", "monitor"),
        ("supervisor.left", "monitor"),
        ("supervisor.joined", "whisper"),
    ]
    actors = set(call.events.filter(name__startswith="supervisor.").values_list("actor", flat=True))
    assert actors == {"operator sam", "operator tess"}

    # The call's end is the supervisor's: nothing is supervised after, nothing starts.
    assert bearer_client(user_token).post(f"/api/calls/{call.pk}/hangup").status_code == 200
    assert not Leg.objects.filter(role="supervisor", left_at=None).exists()
    assert_error(post(sam, path, {"mode": "monitor"}), 409, "CALL_STATE")
    nobody = "/api/calls/00000000-0000-0000-0000-000000000000/supervise"
    assert_error(post(sam, nobody, {"mode": "monitor"}), 404, "NOT_FOUND")


def test_it_supervises_only_an_active_bridge_call(supervisor_user: Any) -> None:
    session, _ = EndUserSession.create(ttl_seconds=600, display_name="Ada")
    ringing = Call.start(by=Principal.end_user(session), mode="bridge", media_worker=NO_WORKER)
    token, _ = ApiToken.create("desk")
    echo = Call.start(by=Principal.for_api_token(token), mode="echo", media_worker=NO_WORKER)
    sam = Principal.staff(supervisor_user)
    for call in (ringing, echo):
        with pytest.raises(CallbridgeError) as refused:
            supervision.supervise(sam, call, "monitor")
        assert refused.value.code == "CALL_STATE"
        assert supervisor_events(call) == []


def test_it_refuses_the_calls_own_operator_as_its_supervisor(supervisor_user: Any) -> None:
    session, _ = EndUserSession.create(ttl_seconds=600, display_name="Ada")
    sam = Principal.staff(supervisor_user)
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker=NO_WORKER)
    call.answer(sam)
    with pytest.raises(CallbridgeError) as refused:
        supervision.supervise(sam, call, "barge")
    assert refused.value.code == "FORBIDDEN"


def test_it_lets_one_of_two_supervisors_in_when_both_come_at_the_same_instant() -> None:
    call, _, _ = answered_call()
    people = [Principal.staff(a_supervisor(name)) for name in ("sam", "tess")]
    results = in_threads(
        lambda who: supervision.supervise(who, Call.objects.get(pk=call.pk), "monitor"), people
    )
    refused = [r for r in results if isinstance(r, CallbridgeError)]
    assert [r.code for r in refused] == ["CALL_STATE"], results
    assert supervisor_events(call) == [("supervisor.joined", "monitor")]
    assert Leg.objects.filter(call=call, role="supervisor").count() == 1


def test_it_makes_a_barging_supervisor_a_party_whose_consent_recording_needs(
    supervisor_user: Any,
) -> None:
    call, user_token, operator_token = answered_call()
    sam = logged_in(supervisor_user)
    path = f"/api/calls/{call.pk}"
    body = {"granted": True, "policy": "1", "via": "dashboard"}
    # Not on the call: no consent to give.
    assert_error(post(sam, f"{path}/consent", body), 403, "FORBIDDEN")
    for token in (user_token, operator_token):
        granted = post(bearer_client(token), f"{path}/consent", {"granted": True, "policy": "1"})
        assert granted.status_code == 201, granted.json()
    assert post(sam, f"{path}/supervise", {"mode": "whisper"}).status_code == 200
    call = Call.objects.get(pk=call.pk)
    assert consent.consent_status(call).missing == []  # the user never hears a whisper
    assert post(sam, f"{path}/supervise", {"mode": "barge"}).status_code == 200
    call = Call.objects.get(pk=call.pk)
    assert consent.consent_status(call).missing == ["supervisor"]
    refused = assert_error(
        bearer_client(operator_token).post(f"{path}/record"), 409, "CONSENT_REQUIRED"
    )
    assert refused["details"]["missing"] == ["supervisor"]

    # Back to monitoring, a recording runs (here without a media worker: its record);
    # barging into it needs the consent first.
    assert post(sam, f"{path}/supervise", {"mode": "monitor"}).status_code == 200
    Recording.objects.create(
        call=call, file_name="running.wav", state="recording", started_at=timezone.now()
    )
    refused = assert_error(
        post(sam, f"{path}/supervise", {"mode": "barge"}), 409, "CONSENT_REQUIRED"
    )
    assert refused["details"]["missing"] == ["supervisor"]
    given = post(sam, f"{path}/consent", body)
    assert given.status_code == 201, given.json()
    assert call.consents.get(user=supervisor_user).role == "supervisor"
    assert post(sam, f"{path}/supervise", {"mode": "barge"}).status_code == 200
    assert Recording.objects.filter(call=call, state="recording").count() == 1


@pytest.mark.parametrize("tell", [True, False])
async def test_it_supervises_over_the_operator_socket_and_tells_the_user_per_setting(
    asgi_app: Any, settings: Any, tell: bool
) -> None:
    settings.CALLBRIDGE_TELL_USER_SUPERVISOR = tell
    sam_feed = await operator_feed(asgi_app, "sam")
    alice_feed = await operator_feed(asgi_app, "alice")
    for feed in (sam_feed, alice_feed):
        await feed.receive()  # the snapshot
    sam = await get_user_model().objects.aget(username="sam")
    await sync_to_async(sam.groups.add)(await sync_to_async(supervision.supervisors_group)())
    session, user_token = await sync_to_async(EndUserSession.create)(
        ttl_seconds=600, display_name="Ada"
    )
    alice = await get_user_model().objects.aget(username="alice")
    call = await sync_to_async(Call.start)(
        by=Principal.staff(alice), mode="bridge", session=session, media_worker="embedded"
    )
    await sync_to_async(call.answer)(Principal.end_user(session))
    caller = SignalClient(asgi_app)
    await caller.connect()
    await caller.send({"type": "register", "sessionId": "", "authToken": user_token})
    await caller.expect("event", "registered")
    call_id = str(call.pk)

    for verb, name, mode in (
        ("monitor", "supervisor.joined", "monitor"),
        ("barge", "supervisor.mode_changed", "barge"),
        ("stopSupervising", "supervisor.left", "barge"),
    ):
        await sam_feed.send({"type": verb, "callID": call_id})
        for feed in (sam_feed, alice_feed):
            event = await feed.expect("event", name)
            assert event["callSid"] == call_id and event["data"]["supervisorMode"] == mode
            expected = None if name == "supervisor.left" else mode
            assert event["data"]["call"]["supervisorMode"] == expected
            assert event["data"]["call"]["supervisedBy"] == (expected and "operator sam")
        if tell:
            told = await caller.expect("event", name)
            assert told["data"]["supervisorMode"] == mode and "supervisedBy" not in told["data"]
    if not tell:
        await caller.nothing_more(within=0.5)
    # A page that registers again learns the supervision now (only if told).
    await sam_feed.send({"type": "whisper", "callID": call_id})
    await sam_feed.expect("event", "supervisor.joined")
    await caller.send({"type": "register", "sessionId": "", "authToken": user_token})
    registered = await caller.expect("event", "registered")
    expected_mode = "whisper" if tell else None
    assert [c["supervisorMode"] for c in registered["data"]["calls"]] == [expected_mode]
    await sam_feed.send({"type": "stopSupervising", "callID": call_id})
    await sam_feed.expect("event", "supervisor.left")

    refusals = [
        (alice_feed, {"type": "monitor", "callID": call_id}, "FORBIDDEN", call_id),  # its operator
        (sam_feed, {"type": "stopSupervising", "callID": call_id}, "CALL_STATE", call_id),
        (sam_feed, {"type": "whisper", "callID": "not-a-call"}, "NOT_FOUND", ""),
    ]
    for feed, message, code, named in refusals:
        await feed.send(message)
        error = await feed.expect("error")
        assert error["data"]["code"] == code, error
        assert error.get("callSid", "") == named
    for client in (sam_feed, alice_feed, caller):
        await client.close()


def test_it_hides_supervisors_from_the_end_user_when_not_told(
    settings: Any, supervisor_user: Any
) -> None:
    call, user_token, _ = answered_call()
    supervision.supervise(Principal.staff(supervisor_user), call, "monitor")
    for tell, roles in ((True, ["user", "operator", "supervisor"]), (False, ["user", "operator"])):
        settings.CALLBRIDGE_TELL_USER_SUPERVISOR = tell
        seen = bearer_client(user_token).get(f"/api/calls/{call.pk}").json()
        assert [leg["role"] for leg in seen["legs"]] == roles
        assert "operator sam" not in str(seen)


def test_it_shows_every_supervisor_step_in_the_admin_timeline(
    superuser: Any, supervisor_user: Any
) -> None:
    call, _, _ = answered_call()
    sam = Principal.staff(supervisor_user)
    supervision.supervise(sam, call, "monitor")
    supervision.supervise(sam, call, "barge")
    supervision.stop(sam, call)
    page = logged_in(superuser).get(f"/admin/calls/call/{call.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    for name in ("supervisor.joined", "supervisor.mode_changed", "supervisor.left"):
        assert name in text
    assert "Left at" in text and "Supervisor mode" in text  # the legs show who was on when


async def test_it_lets_the_latest_supervise_decision_win_at_the_worker(asgi_app: Any) -> None:
    call_id = "11111111-2222-3333-4444-666666666666"

    async def ask(mode: str | None, seq: int) -> str | None:
        reply = await link.request("embedded", protocol.Supervise(call=call_id, mode=mode, seq=seq))
        return reply.mode

    assert await ask("monitor", 5) == "monitor"
    assert await ask("barge", 4) == "monitor"  # an older decision changes nothing
    assert await ask("whisper", 6) == "whisper"
    # A call without media here keeps no media state, only its mode for a leg that
    # connects later; the end forgets it.
    worker = background_tasks.get("media-worker")
    assert call_id not in worker.calls and worker.supervisions[call_id] == "whisper"
    assert await ask(None, 7) is None
    assert call_id not in worker.supervisions
    assert await ask("barge", 8) == "barge"
    await link.send("embedded", protocol.EndCall(call=call_id))
    with pytest.raises(CallbridgeError) as refused:  # answered after the end, in call order
        await link.request("embedded", protocol.Supervise(call=call_id, mode="barge", seq=9))
    assert refused.value.code == "CALL_STATE"
    assert call_id not in worker.supervisions and call_id not in worker.calls
