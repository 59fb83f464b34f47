"""Racing record, consent withdrawal and hang-up on real servers (issue 12, item 1).

An audit left recordings running without the consents the policy needs in 2 to 7 of 20
tries: the consent check read a snapshot before the call's lock, and the media worker
answered a stop that overtook its start with "not running" and then started anyway. Here
the races run hundreds of times — against the embedded server (SQLite, one daphne) and
across two daphnes and two media workers on PostgreSQL — with real peers sending audio.
After every race: no recording is running, no recorder is capturing, and a file that a
withdrawal stopped holds no audio from after the withdrawal's instant (+ one 20 ms frame).
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.live_server import Server
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.real_socket import RealSocket
from tests.support.wav import read_wav

FRAME_S = 0.02


@dataclass
class Bridged:
    call_id: str
    user_token: str
    operator_token: str


class Party:
    """Real sockets and peers, all closed at the end."""

    def __init__(self, stack: AsyncExitStack) -> None:
        self.stack = stack

    async def socket(self, server: Server) -> RealSocket:
        socket_ = await RealSocket.open(server)
        self.stack.push_async_callback(socket_.close)
        return socket_

    def peer(self, tone: float) -> ClientPeer:
        peer = ClientPeer(tone)
        self.stack.push_async_callback(peer.close)
        return peer


async def rest(server: Server, method: str, path: str, token: str, body: Any = None) -> Any:
    status, answer, _ = await asyncio.to_thread(server.request, method, path, token, body)
    assert 200 <= status < 300, (status, answer)
    return answer


async def bridged_call(
    party: Party, user_via: Server, operator_via: Server, operator_token: str
) -> Bridged:
    """An end user calls through one daphne, the operator answers through another (or the
    same); both hear each other before anything is recorded."""
    session = await rest(user_via, "POST", "/api/sessions", operator_token, {"displayName": "Ada"})
    user_token = session["sessionToken"]
    user, operator = await party.socket(user_via), await party.socket(operator_via)
    user_peer, operator_peer = party.peer(440), party.peer(880)
    user_answer = await user.offer(user_token, await user_peer.offer())
    call_id = user_answer["callSid"]
    operator_answer = await operator.offer(
        operator_token, await operator_peer.offer(), callSid=call_id
    )
    await user_peer.accept(user_answer["data"]["sdp"])
    await operator_peer.accept(operator_answer["data"]["sdp"])
    await user_peer.wait_connected()
    await operator_peer.wait_connected()
    await hear_each_other((operator_peer, 440), (user_peer, 880))
    await consent(operator_via, call_id, operator_token, granted=True)
    return Bridged(call_id, user_token, operator_token)


async def consent(server: Server, call_id: str, token: str, *, granted: bool) -> dict:
    body = {"granted": granted, "policy": "1"}
    return await rest(server, "POST", f"/api/calls/{call_id}/consent", token, body)


Request = tuple[Server, str, str, Any]  # server, path, token, JSON body (all POSTs)
WITHDRAWAL = {"granted": False, "policy": "1"}


async def at_the_same_instant(*requests: Request) -> list[tuple[int, Any]]:
    """Each request from its own thread, released together."""
    start = threading.Barrier(len(requests))

    def send(server: Server, path: str, token: str, body: Any) -> tuple[int, Any]:
        start.wait(timeout=10)
        status, answer, _ = server.request("POST", path, token, body)
        return status, answer

    async with asyncio.timeout(60):
        return await asyncio.gather(*(asyncio.to_thread(send, *request) for request in requests))


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_after_race(
    call: dict[str, Any], withdrawn_at: datetime | None, recordings_dir: Path
) -> None:
    """Nothing records; a file a withdrawal stopped ends by the withdrawal's instant."""
    recording = call["recording"]
    assert recording is None or recording["state"] != "recording", call
    capturing = list(recordings_dir.glob("*.capture"))
    assert not capturing, f"a recorder is still capturing: {capturing}"
    if recording is None or recording["stopReason"] != "consent_withdrawn":
        return
    assert withdrawn_at is not None
    path = recordings_dir / recording["fileName"]
    if recording["sizeBytes"] is None:  # stopped before it started: nothing was written
        assert not path.exists() or read_wav(path)[2] == 0
        return
    _, _, duration_s = read_wav(path)
    assert duration_s == pytest.approx(recording["durationS"], abs=1e-6)
    if duration_s == 0:
        return  # the recorder started after the withdrawal: not one sample kept
    audio_ends = instant(recording["audioStartedAt"]).timestamp() + duration_s
    assert audio_ends <= withdrawn_at.timestamp() + FRAME_S, f"{recording} {withdrawn_at}"


async def race_record_and_withdraw(
    call: Bridged, record_via: Server, withdraw_via: Server, recordings_dir: Path
) -> str:
    await consent(withdraw_via, call.call_id, call.user_token, granted=True)
    (record_status, recorded), (withdraw_status, withdrawal) = await at_the_same_instant(
        (record_via, f"/api/calls/{call.call_id}/record", call.operator_token, None),
        (withdraw_via, f"/api/calls/{call.call_id}/consent", call.user_token, WITHDRAWAL),
    )
    assert withdraw_status == 201, withdrawal
    # Started (then stopped by the withdrawal), refused for the missing consent, or
    # refused because the withdrawal's stop reached the media worker first.
    assert (record_status, recorded.get("code")) in {
        (201, None),
        (409, "CONSENT_REQUIRED"),
        (409, "CALL_STATE"),
    }, recorded
    state = await rest(record_via, "GET", f"/api/calls/{call.call_id}", call.operator_token)
    check_after_race(state, instant(withdrawal["createdAt"]), recordings_dir)
    return "recorded" if record_status == 201 else recorded["code"]


async def settled(server: Server, path: str, token: str, within: float = 15.0) -> dict:
    """The call once its recording is no longer running. A hang-up's stop reaches the
    media worker after the hang-up answered (it follows the call.ended event), and the
    worker reports the finished file when it is written."""
    async with asyncio.timeout(within):
        while True:
            state = await rest(server, "GET", path, token)
            if state["recording"] is None or state["recording"]["state"] != "recording":
                return state
            await asyncio.sleep(0.05)


async def race_record_withdraw_and_hang_up(
    party: Party, user_via: Server, operator_via: Server, token: str, recordings_dir: Path
) -> None:
    call = await bridged_call(party, user_via, operator_via, token)
    await consent(user_via, call.call_id, call.user_token, granted=True)
    path = f"/api/calls/{call.call_id}"
    results = await at_the_same_instant(
        (operator_via, f"{path}/record", token, None),
        (user_via, f"{path}/consent", call.user_token, WITHDRAWAL),
        (operator_via, f"{path}/hangup", token, None),
    )
    assert results[2][0] == 200, results
    withdrawal = results[1][1] if results[1][0] == 201 else None  # the call may end first
    state = await settled(operator_via, path, token)
    assert state["state"] == "ended"
    check_after_race(
        state, instant(withdrawal["createdAt"]) if withdrawal else None, recordings_dir
    )


@dataclass
class RaceOutcomes:
    outcomes: list[str]

    def both_orders_happened(self) -> bool:
        """A recording started and stopped, and one was refused: or it was not a race."""
        return "recorded" in self.outcomes and "CONSENT_REQUIRED" in self.outcomes


async def race_many(
    call: Bridged, servers: tuple[Server, Server], recordings_dir: Path, times: int
) -> RaceOutcomes:
    """`times` races; record and withdraw through alternating daphnes when there are two."""
    a, b = servers
    outcomes = [
        await race_record_and_withdraw(call, *((a, b) if i % 2 else (b, a)), recordings_dir)
        for i in range(times)
    ]
    return RaceOutcomes(outcomes)
