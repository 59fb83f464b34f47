"""A bridged call between two real aiortc peers (end user 440 Hz, operator 880 Hz)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from calls.models import ApiToken, AudioFile, EndUserSession
from tests.support.browser import write_tone_wav
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.signal_client import SignalClient
from tests.support.tone_files import write_tone_file

USER_TONE, OPERATOR_TONE = 440, 880
HOLD_TONE = 660
SILENT = 100.0  # RMS of a channel or an ear that hears nothing (a tone here is ~6900)


@dataclass
class LiveCall:
    call_id: str
    user: SignalClient
    operator: SignalClient
    user_token: str
    operator_token: str
    http: AsyncClient
    user_peer: ClientPeer
    operator_peer: ClientPeer

    async def post(self, path: str, token: str, body: Any = None) -> Any:
        return await self.http.post(
            path,
            body or {},
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )

    async def consent_all(self) -> None:
        """Both parties agree to be recorded."""
        for token in (self.user_token, self.operator_token):
            response = await self.consent(token)
            assert response.status_code == 201, response.json()

    async def consent(self, token: str, granted: bool = True) -> Any:
        return await self.post(
            f"/api/calls/{self.call_id}/consent", token, {"granted": granted, "policy": "1"}
        )


async def start_live_call(asgi_app: Any, operator_tone: float = OPERATOR_TONE) -> LiveCall:
    """An answered call whose parties hear each other (close it with `end_live_call`); the
    user sends USER_TONE, the operator `operator_tone`."""
    _, user_token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    _, operator_token = await sync_to_async(ApiToken.create)("recorder")
    user, operator = SignalClient(asgi_app), SignalClient(asgi_app)
    await user.connect()
    await operator.connect()
    user_peer, operator_peer = ClientPeer(USER_TONE), ClientPeer(operator_tone)
    user_answer = await user.offer(user_token, await user_peer.offer())
    operator_answer = await operator.offer(
        operator_token, await operator_peer.offer(), callSid=user_answer["callSid"]
    )
    await user_peer.accept(user_answer["data"]["sdp"])
    await operator_peer.accept(operator_answer["data"]["sdp"])
    await user_peer.wait_connected()
    await operator_peer.wait_connected()
    # Audio flows both ways before we record.
    await hear_each_other((operator_peer, USER_TONE), (user_peer, operator_tone))
    return LiveCall(
        user_answer["callSid"],
        user,
        operator,
        user_token,
        operator_token,
        AsyncClient(),
        user_peer,
        operator_peer,
    )


async def end_live_call(call: LiveCall) -> None:
    """Close the client side (peers, sockets); idempotent."""
    await call.user_peer.close()
    await call.operator_peer.close()
    await call.user.close()
    await call.operator.close()


@pytest.fixture(params=["forward", "decode"])
def media_path(request: pytest.FixtureRequest, settings: Any) -> str:
    """Both media paths (set before the services start)."""
    settings.CALLBRIDGE_MEDIA_PATH = request.param
    return str(request.param)


async def hears_nothing(peer: ClientPeer, seconds: float = 1.0) -> None:
    """Nothing audible reaches `peer` for `seconds` (silence, or no packets at all)."""
    peer.sink.clear()
    await asyncio.sleep(seconds)
    if peer.sink.seconds > 0:
        assert peer.sink.rms(last_seconds=seconds) < SILENT


@pytest.fixture
async def live_call(asgi_app: Any, settings: Any, tmp_path: Path) -> AsyncIterator[LiveCall]:
    settings.MEDIA_ROOT = tmp_path
    call = await start_live_call(asgi_app)
    yield call
    await end_live_call(call)


async def add_to_library(
    tmp_path: Path, name: str, frequency: float, seconds: float, suffix: str = ".wav"
) -> None:
    """A tone file in the audio library (MEDIA_ROOT = tmp_path), of the format `suffix`
    names (tests/support/tone_files.py)."""

    def add() -> None:
        (tmp_path / "audio").mkdir(exist_ok=True)
        stored = f"audio/{name}{suffix}"
        if suffix == ".wav":
            write_tone_wav(tmp_path / stored, frequency, seconds)
        else:
            write_tone_file(tmp_path / stored, frequency, seconds)
        AudioFile.objects.create(name=name, file=stored, duration_s=seconds)

    await sync_to_async(add)()
