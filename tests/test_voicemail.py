"""Voicemail (issue 14 item 4): a caller whose queue overflows to voicemail hears the
greeting, leaves a message (pressing "Leave a message" is the consent) and operators list
and hear it through the audited path. Real aiortc callers; audio checked by FFT."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from calls import voicemail
from calls.errors import CallbridgeError, ErrorCode
from calls.models import (
    AudioFile,
    Call,
    CallbackRequest,
    EndUserSession,
    Leg,
    Queue,
    Recording,
    RecordingAccess,
    RecordingConsent,
)
from calls.principals import Principal
from calls.recordings import recordings_dir
from calls.routing import deadlines as routing_deadlines
from tests.support.live_call import add_to_library
from tests.support.media_peers import ClientPeer
from tests.support.queues import in_threads, make_operator, make_queue, wait_passes
from tests.support.rest_client import assert_error, bearer_client
from tests.support.signal_client import SignalClient, staff_cookie
from tests.support.wav import dominant, read_wav

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

GREETING_TONE, CALLER_TONE = 700, 440


def voicemail_queue(max_wait_s: int = 1, **fields: Any) -> Queue:
    nobody = make_operator("olga", available=False)
    return make_queue("support", [nobody], overflow="voicemail", max_wait_s=max_wait_s, **fields)


async def caller_in_stage(
    asgi_app: Any, peer: ClientPeer, name: str = "Ada"
) -> tuple[SignalClient, str, str, EndUserSession, dict[str, Any]]:
    """A real caller in the `support` queue, waited out into the voicemail stage:
    (socket, token, call id, session, the `queue.voicemail` event)."""
    session, token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name=name)
    caller = SignalClient(asgi_app)
    await caller.connect()
    answered = await caller.offer(token, await peer.offer(), queue="support")
    await peer.accept(answered["data"]["sdp"])
    await peer.wait_connected()
    offered = await caller.expect("event", "queue.voicemail")
    return caller, token, answered["callSid"], session, offered


def staff_listener() -> Any:
    user = make_operator("vera")
    user.user_permissions.add(Permission.objects.get(codename="listen_recording"))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.media
async def test_it_takes_a_message_after_the_greeting_and_lets_operators_hear_it(
    asgi_app: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path
    await add_to_library(tmp_path, "greeting", GREETING_TONE, 3.0)

    def setup() -> None:
        voicemail_queue(
            voicemail_greeting=AudioFile.objects.get(name="greeting"), voicemail_max_s=30
        )

    await sync_to_async(setup)()
    feed = SignalClient(asgi_app, "/ws/operator", origin="http://localhost")
    cookie = await sync_to_async(staff_cookie)()
    feed.communicator.scope["headers"].append((b"cookie", cookie.encode()))
    await feed.connect()
    await feed.expect("snapshot")
    peer = ClientPeer(CALLER_TONE)
    caller, token, call_id, session, offered = await caller_in_stage(asgi_app, peer)
    try:
        data = offered["data"]
        assert offered["callSid"] == call_id and offered["sessionId"]
        assert (data["queue"], data["queueName"], data["maxS"]) == ("support", "Support", 30)
        assert data["consentText"] == settings.CALLBRIDGE_VOICEMAIL_NOTICE_TEXT
        assert data["policyVersion"] == "1" and data["callback"] is True
        assert data["state"] == "voicemail" and data["choiceDeadline"]
        await peer.hears(GREETING_TONE)
        # REST shows the stage; nobody can answer it any more.
        shown = (await sync_to_async(bearer_client(token).get)(f"/api/calls/{call_id}")).json()
        assert (shown["state"], shown["queuePosition"]) == ("voicemail", None)
        assert shown["ringDeadline"] is not None
        olga = await sync_to_async(lambda: make_operator("otto"))()
        staff = Client()
        await sync_to_async(staff.force_login)(olga)
        refused = await sync_to_async(staff.post)(f"/api/calls/{call_id}/answer")
        assert refused.status_code == 409 and refused.json()["code"] == "CALL_STATE"
        # "Leave a message": the consent and the recording, the greeting stops.
        leg = offered["sessionId"]
        await caller.send({"type": "voicemail.start", "sessionId": leg})
        started = await caller.expect("event", "recording.started")
        assert (started["data"]["kind"], started["data"]["maxS"]) == ("voicemail", 30)
        peer.sink.clear()
        await asyncio.sleep(1.5)  # the caller speaks (its tone) into the message
        # The beep replaced the greeting (3 s), then the server sent nothing more: well
        # under the 1.5 s of greeting there would have been, ending with the beep.
        assert peer.sink.seconds < 1.0, peer.sink.seconds
        last = peer.sink.dominant_frequency(last_seconds=0.2)
        assert abs(last - voicemail.BEEP_HZ) < 25, last
        await caller.send({"type": "voicemail.stop", "callSid": call_id})
        ended = await caller.expect("event", "call.ended")
        assert ended["data"]["reason"] == "voicemail"
        # The file's facts first (the stop's reply), then the end.
        (left,) = [m for m in caller.received if m["data"].get("name") == "voicemail.left"]
        assert left["data"]["durationS"] > 1.0
        # The operators' feed: the stage, then the message with its facts.
        stage = await feed.expect("event", "queue.voicemail_offered")
        assert (stage["callSid"], stage["data"]["call"]["state"]) == (call_id, "voicemail")
        told = await feed.expect("event", "voicemail.left")
        assert told["data"]["recordingId"] == left["data"]["recordingId"]
        assert told["data"]["durationS"] == left["data"]["durationS"]
    finally:
        await peer.close()
        await caller.close()
        await feed.close()

    def check_records() -> tuple[Recording, RecordingConsent]:
        call = Call.objects.get(pk=call_id)
        assert (call.state, call.end_reason) == ("ended", "voicemail")
        names = list(call.events.values_list("name", flat=True))
        assert names.count("queue.voicemail_offered") == 1 and names.count("voicemail.left") == 1
        (recording,) = call.recordings.all()
        (consent,) = RecordingConsent.objects.filter(call=call)
        assert list(recording.consents.all()) == [consent]
        return recording, consent

    recording, consent = await sync_to_async(check_records)()
    assert (recording.kind, recording.state, recording.stop_reason) == (
        "voicemail",
        "finished",
        "stopped",
    )
    assert (consent.method, consent.role, consent.granted) == ("voicemail", "user", True)
    assert consent.session_id == session.pk and consent.policy_version == "1"
    assert consent.text_sha256 == voicemail.notice_sha256()
    left_channel, right_channel, seconds = read_wav(recordings_dir() / recording.file_name)
    assert seconds == pytest.approx(recording.duration_s, abs=0.05)
    spoken = left_channel[-48000:]
    assert abs(dominant(spoken) - CALLER_TONE) < 15
    assert abs(right_channel).max() == 0  # nobody else on the line

    def operators_hear_it() -> None:
        listener = staff_listener()
        listed = listener.get("/api/voicemails")
        assert listed.status_code == 200, listed.content[:300]
        (item,) = listed.json()
        assert item["recordingID"] == str(recording.pk) and item["callID"] == call_id
        assert (item["queue"], item["callerName"], item["listened"]) == ("support", "Ada", False)
        assert item["durationS"] == pytest.approx(recording.duration_s)
        heard = listener.get(item["audioUrl"])
        assert heard.status_code == 200 and heard["Content-Type"] == "audio/wav"
        assert RecordingAccess.objects.filter(recording=recording, username="vera").count() == 1
        assert listener.get("/api/voicemails").json()[0]["listened"] is True
        queue = listener.get("/api/queues/support").json()
        assert (queue["overflow"], queue["voicemailGreeting"], queue["voicemailMaxS"]) == (
            "voicemail",
            "greeting",
            30,
        )
        stats = listener.get("/api/queues/support/stats").json()
        assert (stats["joined"], stats["voicemails"], stats["refused"]) == (1, 1, 0)
        # End users and staff who may not view recordings get no list.
        assert bearer_client(token).get("/api/voicemails").status_code == 403
        plain = Client()
        plain.force_login(make_operator("otis"))
        refused = plain.get("/api/voicemails")
        assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
        # The admin filters recordings by kind.
        admin = Client()
        admin.force_login(get_user_model().objects.create_superuser("root", "", "x"))
        kinds = admin.get("/admin/calls/recording/?kind__exact=voicemail")
        assert kinds.status_code == 200, kinds
        assert str(recording.pk)[:8].encode() in kinds.content
        assert b"?kind__exact=call" in kinds.content  # the filter's other choice

    await sync_to_async(operators_hear_it)()


@pytest.mark.media
async def test_it_keeps_a_message_the_caller_hangs_up_on_and_refuses_bad_starts(
    asgi_app: Any, settings: Any, tmp_path: Path, api_token: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path
    queue = await sync_to_async(voicemail_queue)(max_wait_s=300)
    _, token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Bo")
    caller = SignalClient(asgi_app)
    await caller.connect()
    peer = ClientPeer(CALLER_TONE)
    try:
        answered = await caller.offer(token, await peer.offer(), queue="support")
        call_id, leg = answered["callSid"], answered["sessionId"]
        await peer.accept(answered["data"]["sdp"])
        await peer.wait_connected()
        # Still waiting in line: no message yet.
        await caller.send({"type": "voicemail.start", "sessionId": leg})
        refused = await caller.expect("error")
        assert refused["data"]["code"] == "CALL_STATE"
        call = await sync_to_async(Call.objects.get)(pk=call_id)
        await sync_to_async(wait_passes)(call)
        await caller.expect("event", "queue.voicemail")
        # The page reloads while the caller chooses: it is told the stage again.
        again = SignalClient(asgi_app)
        await again.connect()
        await again.send({"type": "register", "sessionId": "", "authToken": token})
        await again.expect("event", "registered")
        told = await again.expect("event", "queue.voicemail")
        assert (told["callSid"], told["data"]["maxS"]) == (call_id, 120)
        await again.close()
        # Someone else's credential: another end user, an integrator's token.
        _, other_token = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
        stranger = SignalClient(asgi_app)
        await stranger.connect()
        await stranger.send({"type": "register", "sessionId": "", "authToken": other_token})
        await stranger.expect("event", "registered")
        await stranger.send({"type": "voicemail.start", "callSid": call_id})
        assert (await stranger.expect("error"))["data"]["code"] in ("NOT_FOUND", "FORBIDDEN")
        await stranger.close()
        integrator = Principal.for_api_token(api_token[0])
        with pytest.raises(CallbridgeError) as raised:
            await sync_to_async(voicemail.start_message)(integrator, call_id)
        assert raised.value.code == ErrorCode.FORBIDDEN
        assert await sync_to_async(Recording.objects.count)() == 0
        # Pressed twice: one message.
        await caller.send({"type": "voicemail.start", "sessionId": leg})
        await caller.send({"type": "voicemail.start", "sessionId": leg})
        seen: list[tuple[str, str]] = []
        while ("event", "recording.started") not in seen or len(seen) < 3:  # in any order
            message = await caller.receive()
            seen.append((message["type"], message["data"].get("name") or message["data"]["code"]))
        assert sorted(seen) == [
            ("error", "CALL_STATE"),
            ("event", "consent.granted"),
            ("event", "recording.started"),
        ], seen
        await asyncio.sleep(1.5)
        await caller.send({"type": "hangup", "sessionId": leg})
        ended = await caller.expect("event", "call.ended")
        assert ended["data"]["reason"] == "voicemail"
        await caller.expect("event", "voicemail.left")  # once the worker wrote the file
    finally:
        await peer.close()
        await caller.close()

    def records() -> tuple[Call, Recording, int]:
        call = Call.objects.get(pk=call_id)
        (recording,) = Recording.objects.all()
        return call, recording, RecordingConsent.objects.filter(call=call).count()

    call, recording, consents = await sync_to_async(records)()
    assert (call.state, call.end_reason, consents) == ("ended", "voicemail", 1)
    assert (recording.kind, recording.state, recording.stop_reason) == (
        "voicemail",
        "finished",
        "hangup",
    )
    left_channel, _, seconds = read_wav(recordings_dir() / recording.file_name)
    assert seconds > 1.0 and abs(dominant(left_channel[-24000:]) - CALLER_TONE) < 15
    assert queue.pk == call.queue_id


def call_in_stage(name: str = "Cy", connected: bool = True) -> tuple[Call, Principal, str]:
    """A queued call taken into the voicemail stage by its maximum wait (no media peer:
    its caller's leg is marked connected, as the worker would report)."""
    queue = Queue.objects.get(public_id="support")
    session, token = EndUserSession.create(ttl_seconds=600, display_name=name)
    caller = Principal.end_user(session)
    call = Call.start(by=caller, mode="bridge", media_worker="embedded", queue=queue)
    if connected:
        Leg.objects.get(call=call).set_media_state("connected")
    wait_passes(call)
    call.refresh_from_db()
    assert call.state == "voicemail"
    return call, caller, token


async def test_it_starts_one_message_when_the_caller_presses_twice_at_once(
    asgi_app: Any, settings: Any, tmp_path: Path
) -> None:
    """The records' race, in two threads on two connections (the media worker's part
    after it is reached from the event loop's thread only, as the socket does)."""
    settings.MEDIA_ROOT = tmp_path

    def race() -> tuple[Call, list[Any]]:
        voicemail_queue(max_wait_s=300)
        call, caller, _ = call_in_stage()
        results = in_threads(lambda _: voicemail.begin_message(caller, call), [1, 2])
        return call, results

    call, results = await sync_to_async(race)()
    started = [r for r in results if isinstance(r, Recording)]
    refused = [r for r in results if isinstance(r, CallbridgeError)]
    assert len(started) == 1 and len(refused) == 1, results
    assert refused[0].code == ErrorCode.CALL_STATE

    await sync_to_async(voicemail._record)(call, started[0])  # what start_message does next

    def after() -> None:
        assert Recording.objects.filter(call=call).count() == 1
        assert RecordingConsent.objects.filter(call=call).count() == 1
        # The caller's page closes mid-message: the stage ends at once, the message kept.
        Leg.objects.get(call=call).set_media_state("closed")
        routing_deadlines.sweep()
        call.refresh_from_db()
        assert (call.state, call.end_reason) == ("ended", "voicemail")
        recording = Recording.objects.get(call=call)
        assert (recording.state, recording.stop_reason) == ("finished", "hangup")
        names = list(call.events.values_list("name", flat=True))
        assert names.count("voicemail.left") == 1

    await sync_to_async(after)()


def test_it_ends_the_stage_no_operator_when_the_caller_chooses_nothing(db: Any) -> None:
    voicemail_queue(max_wait_s=300)
    call, caller, _ = call_in_stage()
    assert call.ring_deadline is not None
    Call.objects.filter(pk=call.pk).update(ring_deadline=timezone.now() - timedelta(seconds=1))
    routing_deadlines.sweep()
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("missed", "no_operator")
    assert not Recording.objects.filter(call=call).exists()
    assert not RecordingConsent.objects.filter(call=call).exists()
    with pytest.raises(CallbridgeError) as raised:  # too late to leave one
        voicemail.start_message(caller, str(call.pk))
    assert raised.value.code == ErrorCode.CALL_STATE
    # Hanging up in the stage, before a message: no recording, the caller gave up.
    second, second_caller, _ = call_in_stage("Di")
    second.hang_up(second_caller)
    assert (second.state, second.end_reason) == ("cancelled", "cancelled")
    assert not Recording.objects.filter(call=second).exists()


async def test_it_drops_a_message_whose_consent_the_caller_takes_back(
    asgi_app: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path

    def in_stage() -> tuple[Call, Principal, str]:
        voicemail_queue(max_wait_s=300)
        return call_in_stage()

    call, caller, token = await sync_to_async(in_stage)()
    await sync_to_async(voicemail.start_message)(caller, str(call.pk))
    withdrawn = await sync_to_async(bearer_client(token).post)(
        f"/api/calls/{call.pk}/consent",
        {"granted": False, "policy": settings.CALLBRIDGE_CONSENT_POLICY_VERSION},
        format="json",
    )
    assert withdrawn.status_code == 201, withdrawn.content[:300]

    def after() -> None:
        routing_deadlines.sweep()  # the stage ended at the withdrawal
        call.refresh_from_db()
        assert (call.state, call.end_reason) == ("cancelled", "cancelled")
        recording = Recording.objects.get(call=call)
        assert recording.stop_reason == "consent_withdrawn"
        assert not call.events.filter(name="voicemail.left").exists()
        listener = staff_listener()
        assert listener.get("/api/voicemails").json() == []

    await sync_to_async(after)()


def test_it_takes_a_callback_request_in_the_stage_until_a_message_starts(
    settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path
    voicemail_queue(max_wait_s=300)
    call, _, token = call_in_stage()
    assert call.events.get(name="queue.voicemail_offered").data["callback"] is True
    asked = bearer_client(token).post(
        f"/api/calls/{call.pk}/callback", {"note": "after 5pm"}, format="json"
    )
    assert asked.status_code == 201, asked.content
    call.refresh_from_db()
    assert (call.state, call.end_reason) == ("cancelled", "callback_requested")
    assert CallbackRequest.objects.get(call=call).note == "after 5pm"

    # Once a message has started, it is sent or hung up on: no callback instead.
    second, second_caller, second_token = call_in_stage("Di")
    voicemail.begin_message(second_caller, second)
    refused = bearer_client(second_token).post(f"/api/calls/{second.pk}/callback")
    assert_error(refused, 409, "CALL_STATE")
    second.refresh_from_db()
    assert second.state == "voicemail"
    assert not CallbackRequest.objects.filter(call=second).exists()

    # A queue that offers no callbacks says so in the stage, and refuses one.
    Queue.objects.filter(public_id="support").update(offer_callback=False)
    third, _, third_token = call_in_stage("Ed")
    assert third.events.get(name="queue.voicemail_offered").data["callback"] is False
    assert_error(
        bearer_client(third_token).post(f"/api/calls/{third.pk}/callback"), 403, "FORBIDDEN"
    )
    third.refresh_from_db()
    assert third.state == "voicemail"
