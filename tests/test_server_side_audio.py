"""Server-side-only audio (WaGo: "if the user doesn't need to speak live, use /call/play"):
an integrator's backend answers with its API token, never sends an offer, and only plays
files and records. The call needs the end user's media alone; staff operators, and an
API token once it has sent an offer, still keep the media grace."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from calls.models import ApiToken, Call, EndUserSession, Leg, Recording
from calls.principals import Principal
from tests.support.live_call import USER_TONE, add_to_library
from tests.support.media_peers import ClientPeer
from tests.support.signal_client import SignalClient
from tests.support.wav import dominant, read_wav

pytestmark = [pytest.mark.django_db]

FILE_TONE = 600


@pytest.mark.media
@pytest.mark.django_db(transaction=True)
async def test_it_keeps_a_call_up_that_the_backend_only_plays_to_and_records(
    asgi_app: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path
    settings.CALLBRIDGE_MEDIA_GRACE_S = 1
    _, user_token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    _, backend = await sync_to_async(ApiToken.create)("wago-backend")
    http = AsyncClient()

    async def wago(path: str, body: dict[str, Any]) -> Any:
        return await http.post(
            path, body, content_type="application/json", headers={"token": backend}
        )

    async def rest(path: str, body: dict[str, Any] | None = None) -> Any:
        return await http.post(
            path,
            body or {},
            content_type="application/json",
            headers={"Authorization": f"Bearer {backend}"},
        )

    await add_to_library(tmp_path, "greeting", FILE_TONE, 20.0, ".mp3")
    user, peer = SignalClient(asgi_app), ClientPeer(USER_TONE)
    await user.connect()
    try:
        offered = await user.offer(user_token, await peer.offer())
        await peer.accept(offered["data"]["sdp"])
        await peer.wait_connected()
        call_id = offered["callSid"]
        answered = await rest(f"/api/calls/{call_id}/answer")  # no offer will follow
        assert answered.status_code == 200, answered.json()
        await user.expect("event", "call.answered")
        for token in (user_token, backend):
            consent = await http.post(
                f"/api/calls/{call_id}/consent",
                {"granted": True, "policy": "1"},
                content_type="application/json",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert consent.status_code == 201, consent.json()

        played = await wago("/call/play", {"callID": call_id, "file": "greeting"})
        assert played.status_code == 200, played.json()
        await peer.hears(FILE_TONE)  # nobody else speaks: the file is all the user hears
        recorded = await wago(
            "/call/record", {"CallID": call_id, "Path": f"files/calls/{call_id}.wav"}
        )
        assert recorded.status_code == 201, recorded.json()
        # Three grace periods with no operator media at all: the call is still up.
        await asyncio.sleep(3 * settings.CALLBRIDGE_MEDIA_GRACE_S)
        call = await Call.objects.aget(pk=call_id)
        assert (call.state, call.media_deadline) == ("active", None)
        await peer.hears(FILE_TONE)  # and the file still plays to the user
        stopped = await rest(f"/api/calls/{call_id}/record/stop")
        assert stopped.status_code == 200, stopped.json()
        recording = await Recording.objects.aget(pk=recorded.json()["recordingID"])
        left, right, seconds = await asyncio.to_thread(
            read_wav, tmp_path / "recordings" / f"{call_id}.wav"
        )
        assert recording.file_name == f"{call_id}.wav" and seconds > 2.5
        assert abs(dominant(left[-48000:]) - USER_TONE) < 10  # the user, as received
        assert abs(right).max() == 0  # no operator ever spoke

        # The user's media is still required: gone, the grace runs and ends the call.
        await user.send({"type": "close", "sessionId": offered["sessionId"]})
        ended = await user.expect("event", "call.ended", within=10)
        assert ended["data"]["reason"] == "media_timeout"
    finally:
        await peer.close()
        await user.close()


def _answered_inbound(by: Principal, *, user_connected: bool = True) -> Call:
    session, _ = EndUserSession.create(ttl_seconds=600, display_name="Ada")
    call = Call.start(
        by=Principal.end_user(session),
        mode="bridge",
        media_worker="embedded",
        media_state="connecting",
    )
    user_leg = Leg.objects.get(call=call, role="user")
    if user_connected:
        user_leg.set_media_state("connected")
    call.answer(by)  # over REST: no offer, the leg is `new`
    call.refresh_from_db()
    return call


@pytest.mark.parametrize("user_connected", [True, False])
def test_it_needs_only_the_end_users_media_when_a_token_answers_without_an_offer(
    user_connected: bool,
) -> None:
    token, _ = ApiToken.create("wago-backend")
    call = _answered_inbound(Principal.for_api_token(token), user_connected=user_connected)
    assert (call.media_deadline is None) is user_connected
    user_leg = Leg.objects.get(call=call, role="user")
    user_leg.set_media_state("connected" if not user_connected else "disconnected")
    call.refresh_from_db()
    assert (call.media_deadline is None) is not user_connected


def test_it_makes_a_token_live_once_it_sends_an_offer() -> None:
    token, _ = ApiToken.create("wago-backend")
    call = _answered_inbound(Principal.for_api_token(token))
    operator_leg = Leg.objects.get(call=call, role="operator")
    operator_leg.set_media_state("connecting")
    call.refresh_from_db()
    assert call.media_deadline is not None  # its media is expected now
    operator_leg.set_media_state("connected")
    operator_leg.set_media_state("closed")  # the bridge closed: the grace runs again
    call.refresh_from_db()
    assert call.media_deadline is not None


def test_it_keeps_the_grace_for_a_staff_operator_who_answers_without_media(
    staff_user: Any,
) -> None:
    call = _answered_inbound(Principal.staff(staff_user))
    assert call.media_deadline is not None


def test_it_needs_only_the_end_users_media_in_a_call_a_token_placed() -> None:
    """WaGo's /call/make: the backend rings the end user's page and never offers."""
    token, _ = ApiToken.create("wago-backend")
    session, _ = EndUserSession.create(ttl_seconds=600, display_name="Ada")
    call = Call.start(
        by=Principal.for_api_token(token), mode="bridge", session=session, media_worker="embedded"
    )
    call.answer(Principal.end_user(session), media_state="connecting")
    call.refresh_from_db()
    assert call.media_deadline is not None  # the user's media is on its way
    Leg.objects.get(call=call, role="user").set_media_state("connected")
    call.refresh_from_db()
    assert call.media_deadline is None
