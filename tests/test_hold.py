"""Hold and resume without media: who may (the call's operator party only), when (an
active bridge call, not twice), exactly once under concurrency, the same over REST and
/ws/operator, what the sockets are told, which audio a held caller hears, and the worker's
ordering of Hold messages. The media themselves: tests/test_hold_media.py."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from calls import hold
from calls.errors import CallbridgeError, CallStateError
from calls.models import ApiToken, AudioFile, Call, CallEvent, EndUserSession, Queue, Recording
from calls.principals import Principal
from calls.workers import link, protocol
from tests.support.queues import in_threads
from tests.support.rest_client import assert_error, bearer_client
from tests.support.signal_client import SignalClient, operator_feed

pytestmark = [pytest.mark.django_db(transaction=True)]


def answered_call() -> tuple[Call, str, str]:
    """An end user's call answered by an API token: (call, user token, operator token)."""
    session, user_token = EndUserSession.create(ttl_seconds=600, display_name="Ada")
    token, operator_token = ApiToken.create("desk")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    call.answer(Principal.for_api_token(token))
    return call, user_token, operator_token


def held_events(call: Call) -> list[str]:
    names = ("call.held", "call.resumed")
    return list(call.events.filter(name__in=names).values_list("name", flat=True))


def staff_client(username: str) -> Client:
    from calls.operators import operators_group

    user, _ = get_user_model().objects.get_or_create(username=username, is_staff=True)
    user.groups.add(operators_group())
    client = Client()
    client.force_login(user)
    return client


def test_it_lets_only_the_calls_operator_hold_and_resume() -> None:
    call, user_token, operator_token = answered_call()
    _, stranger_token = ApiToken.create("another desk")
    path = f"/api/calls/{call.pk}"
    outsiders = [bearer_client(user_token), bearer_client(stranger_token), staff_client("bob")]
    for client in outsiders:
        for verb in ("hold", "resume"):
            assert_error(client.post(f"{path}/{verb}"), 403, "FORBIDDEN")
    call.refresh_from_db()
    assert call.held_at is None and held_events(call) == []

    operator = bearer_client(operator_token)
    assert_error(operator.post(f"{path}/resume"), 409, "CALL_STATE")  # not held
    held = operator.post(f"{path}/hold")
    assert held.status_code == 200, held.json()
    assert held.json()["heldAt"] is not None and held.json()["state"] == "active"
    assert_error(operator.post(f"{path}/hold"), 409, "CALL_STATE")  # held already
    for client in outsiders:
        assert_error(client.post(f"{path}/resume"), 403, "FORBIDDEN")
    resumed = operator.post(f"{path}/resume")
    assert resumed.status_code == 200 and resumed.json()["heldAt"] is None
    assert held_events(call) == ["call.held", "call.resumed"]
    event = call.events.get(name="call.resumed")
    assert event.actor.startswith("api token desk") and event.data["heldS"] >= 0

    # An ended call is neither held nor resumed; holding ended with the call.
    assert operator.post(f"{path}/hold").status_code == 200
    assert bearer_client(user_token).post(f"{path}/hangup").status_code == 200
    call.refresh_from_db()
    assert (call.state, call.held_at, call.held_by) == ("ended", None, "")
    for verb in ("hold", "resume"):
        assert_error(operator.post(f"{path}/{verb}"), 409, "CALL_STATE")
    assert held_events(call) == ["call.held", "call.resumed", "call.held"]
    nobody = "/api/calls/00000000-0000-0000-0000-000000000000/hold"
    assert_error(operator.post(nobody), 404, "NOT_FOUND")


def test_it_holds_only_an_active_bridge_call() -> None:
    alice = get_user_model().objects.create(username="alice", is_staff=True)
    staff = Principal.staff(alice)
    session, _ = EndUserSession.create(ttl_seconds=600, display_name="Ada")
    ringing = Call.start(by=staff, mode="bridge", session=session, media_worker="embedded")
    echo = Call.start(by=staff, mode="echo", media_worker="embedded")
    for call in (ringing, echo):
        with pytest.raises(CallStateError):
            call.hold(staff)
        call.refresh_from_db()
        assert call.held_at is None and held_events(call) == []


def test_it_holds_once_when_two_holds_come_at_the_same_instant() -> None:
    call, _, _ = answered_call()
    operator = Principal.for_api_token(ApiToken.objects.get(name="desk"))
    results = in_threads(lambda _: hold.hold(operator, Call.objects.get(pk=call.pk)), [1, 2])
    refused = [r for r in results if isinstance(r, CallbridgeError)]
    assert [r.code for r in refused] == ["CALL_STATE"], results
    assert held_events(call) == ["call.held"]
    results = in_threads(lambda _: hold.resume(operator, Call.objects.get(pk=call.pk)), [1, 2])
    assert [type(r) for r in results].count(CallStateError) == 1, results
    assert held_events(call) == ["call.held", "call.resumed"]


def test_it_picks_the_hold_audio_queue_first_then_waiting_audio_then_the_setting(
    settings: Any,
) -> None:
    files = {
        name: AudioFile.objects.create(name=name, file=f"audio/{name}.wav", duration_s=1.0)
        for name in ("jingle", "waiting", "house")
    }
    call, _, _ = answered_call()
    queue = Queue.objects.default()
    settings.CALLBRIDGE_HOLD_AUDIO = ""
    assert hold.hold_audio(Call.objects.get(pk=call.pk)) is None  # silence
    settings.CALLBRIDGE_HOLD_AUDIO = "house"
    assert hold.hold_audio(Call.objects.get(pk=call.pk)) == files["house"]
    queue.waiting_audio = files["waiting"]
    queue.save()
    assert hold.hold_audio(Call.objects.get(pk=call.pk)) == files["waiting"]
    queue.hold_audio = files["jingle"]
    queue.save()
    assert hold.hold_audio(Call.objects.get(pk=call.pk)) == files["jingle"]
    settings.CALLBRIDGE_HOLD_AUDIO = "no such file"
    call.queue = None  # an outbound call has no queue: only the setting counts
    assert hold.hold_audio(call) is None


async def test_it_holds_over_the_operator_socket_and_tells_every_feed_and_the_caller(
    asgi_app: Any,
) -> None:
    alice_feed = await operator_feed(asgi_app, "alice")
    bob_feed = await operator_feed(asgi_app, "bob")  # another operator, a supervisor's view
    for feed in (alice_feed, bob_feed):
        await feed.receive()  # the snapshot
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
    call_id = str(call.pk)

    await alice_feed.send({"type": "hold", "callID": call_id})
    for feed in (alice_feed, bob_feed):
        event = await feed.expect("event", "call.held")
        assert event["callSid"] == call_id and event["data"]["held"] is True
        assert event["data"]["call"]["heldAt"] is not None
        assert event["data"]["call"]["heldBy"] == "operator alice"
    # The caller's page learns it on (re)registering: it is on hold.
    await caller.send({"type": "register", "sessionId": "", "authToken": user_token})
    registered = await caller.expect("event", "registered")
    assert [c["held"] for c in registered["data"]["calls"]] == [True]

    refusals = [
        (bob_feed, {"type": "resume", "callID": call_id}, "FORBIDDEN", call_id),
        (alice_feed, {"type": "hold", "callID": call_id}, "CALL_STATE", call_id),
        (alice_feed, {"type": "hold", "callID": "not-a-call"}, "NOT_FOUND", ""),
        (alice_feed, {"type": "hold"}, "INVALID_ARGUMENT", ""),
        (alice_feed, {"type": "teleport", "callID": call_id}, "INVALID_MESSAGE", ""),
    ]
    for feed, message, code, named in refusals:
        await feed.send(message)
        error = await feed.expect("error")
        assert error["data"]["code"] == code, error
        assert error.get("callSid", "") == named
    assert await sync_to_async(held_events)(call) == ["call.held"]

    await alice_feed.send({"type": "resume", "callID": call_id})
    told = await caller.expect("event", "call.resumed")
    assert told["data"]["held"] is False and "heldBy" not in told["data"]
    for feed in (alice_feed, bob_feed):
        event = await feed.expect("event", "call.resumed")
        assert event["data"]["call"]["heldAt"] is None
    for client in (alice_feed, bob_feed, caller):
        await client.close()


async def test_it_lets_the_latest_hold_decision_win_at_the_worker(
    asgi_app: Any, tmp_path: Path
) -> None:
    """Hold messages overtaking each other: the worker keeps the one with the highest
    seq (the deciding event's id), answers the others with what still stands. A hold
    file that cannot be played does not stop the hold (silence instead)."""
    call_id = "11111111-2222-3333-4444-555555555555"
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really")

    async def ask(held: bool, seq: int) -> bool:
        path = str(tmp_path / "broken.wav") if held else None
        hold = protocol.Hold(call=call_id, held=held, seq=seq, path=path)
        reply = await link.request("embedded", hold)
        return reply.held

    assert await ask(True, 5) is True
    assert await ask(False, 4) is True  # an older decision changes nothing
    assert await ask(False, 6) is False
    assert await ask(True, 6) is False  # the same seq again: a repeat, not news
    await link.send("embedded", protocol.EndCall(call=call_id))
    with pytest.raises(CallbridgeError) as refused:
        await link.request("embedded", protocol.Hold(call=call_id, held=True, seq=7))
    assert refused.value.code == "CALL_STATE"


def test_it_marks_the_holds_a_recording_spans_in_its_admin_page(superuser: Any) -> None:
    call, _, _ = answered_call()
    began = timezone.now()

    def at(seconds: float, name: str) -> None:
        when = began + timedelta(seconds=seconds)
        CallEvent.objects.create(
            call=call, name=name, actor="api token desk", actor_role="operator", created_at=when
        )

    at(-5, "call.held")  # in force when the recording started: from 0
    at(1, "call.resumed")
    at(3, "call.held")
    at(7.25, "call.resumed")
    at(15, "call.held")  # never resumed before the recording stopped
    at(30, "call.resumed")
    recording = Recording.objects.create(
        call=call,
        file_name="held.wav",
        state="finished",
        started_at=began,
        audio_started_at=began,
        ended_at=began + timedelta(seconds=20),
        started_by="api token desk",
    )
    assert [(p.from_s, p.to_s) for p in hold.hold_periods(recording)] == [
        (0.0, 1.0),
        (3.0, 7.2),
        (15.0, None),
    ]
    admin = Client()
    admin.force_login(superuser)
    page = admin.get(f"/admin/calls/recording/{recording.pk}/change/").content.decode()
    assert "3.0 to 7.2 (api token desk)" in page and "15.0 to the end" in page
