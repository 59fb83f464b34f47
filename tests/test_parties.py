"""Parties, not roles (issue 12, item 2): a leg and a consent belong to one party.

An audit found that any operator credential's offer on an active call attached to the
existing operator leg — the media worker replaced the connected operator's peer and the
newcomer heard the call, logged under the first operator's name — and that an API token's
consent counted for a staff operator who never agreed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from calls.background import background_tasks
from calls.errors import CallbridgeError
from calls.models import ApiToken, Call, CallEvent, EndUserSession, Leg, RecordingConsent
from calls.operators import operators_group
from calls.principals import Principal
from calls.workers import link, protocol
from tests.support.live_call import OPERATOR_TONE, USER_TONE, LiveCall
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.rest_client import assert_error, bearer_client
from tests.support.signal_client import SignalClient

pytestmark = [pytest.mark.django_db(transaction=True)]


def consent_body(via: str = "api") -> dict[str, Any]:
    return {"granted": True, "policy": "1", "via": via}


# --- media: offers, candidates, closing ---------------------------------------------------
async def test_it_keeps_another_operator_out_of_an_active_call(
    live_call: LiveCall, asgi_app: Any
) -> None:
    """A second API token offers on the call, trickles and closes the connected operator's
    leg: FORBIDDEN each time; the connected parties keep hearing each other."""
    _, intruder_token = await sync_to_async(ApiToken.create)("another-backend")
    intruder, intruder_peer = SignalClient(asgi_app), ClientPeer(660)
    await intruder.connect()
    operator_leg = await Leg.objects.aget(call_id=live_call.call_id, role="operator")
    events_before = await CallEvent.objects.filter(call_id=live_call.call_id).acount()
    try:
        offer = {
            "type": "offer",
            "sessionId": "",
            "authToken": intruder_token,
            "data": {"type": "offer", "sdp": await intruder_peer.offer()},
            "callSid": live_call.call_id,
        }
        await intruder.send(offer)
        refused = await intruder.expect("error")
        assert refused["data"]["code"] == "FORBIDDEN"
        await intruder.send({"type": "register", "sessionId": "", "authToken": intruder_token})
        await intruder.expect("event", "registered")
        candidate = {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}
        for message in (
            {"type": "ice-candidate", "sessionId": str(operator_leg.pk), "data": candidate},
            {"type": "close", "sessionId": str(operator_leg.pk)},
        ):
            await intruder.send(message)
            assert (await intruder.expect("error"))["data"]["code"] == "FORBIDDEN"
        closed = await live_call.post(
            f"/api/calls/{live_call.call_id}/webrtc/close", intruder_token
        )
        assert_error(closed, 403, "FORBIDDEN")
        # The parties' media is untouched: each still hears the other, nobody else.
        live_call.operator_peer.sink.clear()
        live_call.user_peer.sink.clear()
        await hear_each_other(
            (live_call.operator_peer, USER_TONE), (live_call.user_peer, OPERATOR_TONE)
        )
        legs = [leg async for leg in Leg.objects.filter(call_id=live_call.call_id)]
        assert sorted((leg.role, leg.api_token_id is not None) for leg in legs) == [
            ("operator", True),
            ("user", False),
        ]
        assert (await Leg.objects.aget(pk=operator_leg.pk)).party == operator_leg.party
        events_after = await CallEvent.objects.filter(call_id=live_call.call_id).acount()
        assert events_after == events_before  # refused requests change nothing
    finally:
        await intruder_peer.close()
        await intruder.close()


async def test_it_lets_the_same_party_reconnect_its_own_leg(live_call: LiveCall) -> None:
    first = await Leg.objects.aget(call_id=live_call.call_id, role="operator")
    again = ClientPeer(OPERATOR_TONE)
    try:
        answer = await live_call.operator.offer(
            live_call.operator_token, await again.offer(), callSid=live_call.call_id
        )
        assert answer["sessionId"] == str(first.pk)  # its own leg, not a new one
        await again.accept(answer["data"]["sdp"])
        await again.wait_connected()
        await again.hears(USER_TONE)
    finally:
        await again.close()


async def test_it_never_lets_a_second_offer_replace_a_partys_media_in_the_worker(
    live_call: LiveCall,
) -> None:
    """The media worker's own guard, behind signaling's: an offer for a role that another
    leg holds is refused there too."""
    worker = background_tasks.get("media-worker")
    stranger = ClientPeer(660)
    try:
        message = protocol.Offer(
            kind=protocol.OfferKind.ATTACH,
            call=live_call.call_id,
            leg="00000000-0000-0000-0000-000000000001",
            role="operator",
            mode="bridge",
            sdp=await stranger.offer(),
        )
        with pytest.raises(CallbridgeError) as refused:
            async with asyncio.timeout(10):
                await link.request(worker.name, message)
        assert refused.value.code == "CALL_STATE"
        live_call.user_peer.sink.clear()
        await live_call.user_peer.hears(OPERATOR_TONE)
    finally:
        await stranger.close()


# --- consent by identity ------------------------------------------------------------------
@pytest.fixture
def staff_answered(
    db: Any, make_session: Callable[..., tuple[EndUserSession, str]]
) -> tuple[Call, APIClient, str]:
    """An end user's call answered by a staff operator (with a display name)."""
    alice = get_user_model().objects.create_user(
        "alice", password="x" * 12, is_staff=True, first_name="Alice", last_name="Liddell"
    )
    alice.groups.add(operators_group())
    session, user_token = make_session("Ada")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    call.answer(Principal.staff(alice))
    staff = APIClient()
    staff.force_login(alice)
    return call, staff, user_token


def test_it_counts_a_consent_only_for_the_party_who_gave_it(
    staff_answered: tuple[Call, APIClient, str], operator_client: APIClient
) -> None:
    call, staff, user_token = staff_answered
    bearer_client(user_token).post(f"/api/calls/{call.pk}/consent", consent_body(), format="json")
    refused = operator_client.post(f"/api/calls/{call.pk}/consent", consent_body(), format="json")
    assert_error(refused, 403, "FORBIDDEN")  # an API token that is not in this call
    assert RecordingConsent.objects.filter(api_token__isnull=False).count() == 0
    status = operator_client.get(f"/api/calls/{call.pk}").json()["consent"]
    assert status["missing"] == ["operator"]
    recording = operator_client.post(f"/api/calls/{call.pk}/record")
    assert_error(recording, 409, "CONSENT_REQUIRED")
    given = staff.post(f"/api/calls/{call.pk}/consent", consent_body("dashboard"), format="json")
    assert given.status_code == 201, given.json()
    assert given.json()["consent"]["missing"] == []


def test_it_counts_a_consent_given_while_ringing_only_for_whoever_then_answers(
    make_session: Callable[..., tuple[EndUserSession, str]], operator_client: APIClient
) -> None:
    session, user_token = make_session("Ada")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    early = operator_client.post(f"/api/calls/{call.pk}/consent", consent_body(), format="json")
    assert early.status_code == 201  # it may answer, so it may agree in advance
    other, _ = ApiToken.create("other-desk")
    call.answer(Principal.for_api_token(other))
    bearer_client(user_token).post(f"/api/calls/{call.pk}/consent", consent_body(), format="json")
    status = operator_client.get(f"/api/calls/{call.pk}").json()["consent"]
    assert status["missing"] == ["operator"]  # the answering party never agreed


def test_it_refuses_requests_on_an_ended_call_without_a_trace(
    staff_answered: tuple[Call, APIClient, str], operator_client: APIClient
) -> None:
    call, _, _ = staff_answered
    call.hang_up(Principal.end_user(call.session))
    events = list(CallEvent.objects.filter(call=call).values_list("name", flat=True))
    for path in ("record", "play/stop"):
        assert_error(operator_client.post(f"/api/calls/{call.pk}/{path}"), 409, "CALL_STATE")
    assert list(CallEvent.objects.filter(call=call).values_list("name", flat=True)) == events


# --- what end users see --------------------------------------------------------------------
def test_it_shows_end_users_display_names_not_staff_usernames(
    staff_answered: tuple[Call, APIClient, str],
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    call, staff, user_token = staff_answered
    staff.post(f"/api/calls/{call.pk}/hangup")
    seen_by_user = bearer_client(user_token).get(f"/api/calls/{call.pk}").json()
    assert sorted(leg["party"] for leg in seen_by_user["legs"]) == ["Ada", "Alice Liddell"]
    assert seen_by_user["endedBy"] == {"role": "operator", "name": "Alice Liddell"}
    assert "alice" not in str(seen_by_user)  # the staff login name
    seen_by_staff = staff.get(f"/api/calls/{call.pk}").json()
    assert seen_by_staff["endedBy"]["name"] == "operator alice"  # the audit keeps who


def test_it_never_shows_end_users_an_api_tokens_name(
    make_session: Callable[..., tuple[EndUserSession, str]],
    api_token: tuple[ApiToken, str],
) -> None:
    session, user_token = make_session("Ada")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="embedded")
    call.answer(Principal.for_api_token(api_token[0]))
    seen = bearer_client(user_token).get(f"/api/calls/{call.pk}").json()
    assert sorted(leg["party"] for leg in seen["legs"]) == ["Ada", "Operator"]
    assert api_token[0].name not in str(seen) and api_token[0].prefix not in str(seen)


# --- the media worker keeps what is over over ----------------------------------------------
async def test_it_refuses_a_recording_start_that_its_stop_overtook(
    live_call: LiveCall, settings: Any, tmp_path: Any
) -> None:
    """A withdrawal's stop can reach the worker before the start it answers: the stop is
    answered (nothing recorded) and the late start refused, nothing captured."""
    worker = background_tasks.get("media-worker").name
    recording = "5e1f0000-0000-0000-0000-000000000001"
    stop = protocol.RecordStop(
        call=live_call.call_id, recording=recording, reason="consent_withdrawn", by="end user Ada"
    )
    start = protocol.RecordStart(
        call=live_call.call_id,
        mode="bridge",
        recording=recording,
        path=str(tmp_path / "recordings" / "late.wav"),
    )
    async with asyncio.timeout(20):
        assert (await link.request(worker, stop)).result is None  # nothing recorded
        with pytest.raises(CallbridgeError) as refused:
            await link.request(worker, start)
    assert refused.value.code == "CALL_STATE"
    assert not (tmp_path / "recordings").exists() or not list((tmp_path / "recordings").iterdir())


async def test_it_refuses_to_record_or_connect_a_call_its_worker_already_ended(
    live_call: LiveCall, tmp_path: Any
) -> None:
    worker = background_tasks.get("media-worker").name
    await link.send(worker, link.end_call_message(live_call.call_id))
    start = protocol.RecordStart(
        call=live_call.call_id,
        mode="bridge",
        recording="5e1f0000-0000-0000-0000-000000000002",
        path=str(tmp_path / "recordings" / "after-the-end.wav"),
    )
    with pytest.raises(CallbridgeError) as refused:
        async with asyncio.timeout(20):
            await link.request(worker, start)
    assert refused.value.code == "CALL_STATE"
    assert not (tmp_path / "recordings" / "after-the-end.wav.capture").exists()
