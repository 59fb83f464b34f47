"""Network faults under a live bridged call on a real server: the signaling socket cut,
a leg's UDP dropped (nftables, inside the test run's own loopback-only namespace)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.support.live_server import Server, running_server
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.real_socket import RealSocket

pytestmark = pytest.mark.daphne

USER_TONE, OPERATOR_TONE = 440, 880
GRACE_S = 5  # CALLBRIDGE_MEDIA_GRACE_S of this module's server


@pytest.fixture(scope="module")
def faulty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("faults"),
        CALLBRIDGE_MEDIA_GRACE_S=str(GRACE_S),
        CALLBRIDGE_RING_TIMEOUT_S="300",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def operator_token(faulty_server: Server) -> str:
    return faulty_server.manage("createapitoken", "op", "--quiet").strip()


@dataclass
class Bridged:
    call_id: str
    user: RealSocket
    operator: RealSocket
    user_peer: ClientPeer
    operator_peer: ClientPeer
    user_token: str
    operator_token: str
    user_leg: str


@pytest.fixture
async def bridged(faulty_server: Server, operator_token: str) -> AsyncIterator[Bridged]:
    """An end user (440 Hz) and an operator (880 Hz) talking through the real server."""
    server, token = faulty_server, operator_token
    _, session, _ = await asyncio.to_thread(
        server.request, "POST", "/api/sessions", token, {"displayName": "Ada"}
    )
    user, operator = await RealSocket.open(server), await RealSocket.open(server)
    peers = [ClientPeer(USER_TONE), ClientPeer(OPERATOR_TONE)]
    try:
        user_answer = await user.offer(session["sessionToken"], await peers[0].offer())
        call_id = user_answer["callSid"]
        operator_answer = await operator.offer(token, await peers[1].offer(), callSid=call_id)
        await peers[0].accept(user_answer["data"]["sdp"])
        await peers[1].accept(operator_answer["data"]["sdp"])
        await peers[0].wait_connected()
        await peers[1].wait_connected()
        await hear_each_other((peers[1], USER_TONE), (peers[0], OPERATOR_TONE))
        yield Bridged(
            call_id,
            user,
            operator,
            peers[0],
            peers[1],
            session["sessionToken"],
            token,
            user_answer["sessionId"],
        )
    finally:
        for peer in peers:
            await peer.close()
        for client in (user, operator):
            with contextlib.suppress(Exception):  # a socket the test cut
                await client.close()


async def stored_call(server: Server, call: Bridged) -> dict:
    status, body, _ = await asyncio.to_thread(
        server.request, "GET", f"/api/calls/{call.call_id}", call.operator_token
    )
    assert status == 200, body
    return body


# --- the signaling socket ------------------------------------------------------------------
async def test_it_keeps_media_flowing_when_the_socket_drops_and_resumes_the_leg(
    faulty_server: Server, bridged: Bridged
) -> None:
    bridged.user.drop()  # the TCP connection is cut: no close frame, no hangup
    await asyncio.sleep(1.0)  # the server has seen the socket go
    # Media does not depend on the socket: both still hear each other, fresh audio.
    await hear_each_other((bridged.operator_peer, USER_TONE), (bridged.user_peer, OPERATOR_TONE))
    call = await stored_call(faulty_server, bridged)
    assert call["state"] == "active"
    assert {leg["role"]: leg["mediaState"] for leg in call["legs"]} == {
        "user": "connected",
        "operator": "connected",
    }

    # The page reconnects: `register` names its open call and its leg, the same sessionId.
    again = await RealSocket.open(faulty_server)
    try:
        registered = await again.register(bridged.user_token)
        assert registered["data"]["calls"] == [
            {
                "callSid": bridged.call_id,
                "state": "active",
                "mode": "bridge",
                "direction": "inbound",
                "sessionId": bridged.user_leg,
                "mediaState": "connected",
                "held": False,
                "supervisorMode": None,
            }
        ]
        # The resumed socket speaks for that leg, and the call's events reach it.
        await again.send({"type": "hangup", "sessionId": bridged.user_leg})
        for client in (again, bridged.operator):
            ended = await client.expect("event", "call.ended")
            assert (ended["callSid"], ended["data"]["reason"]) == (bridged.call_id, "hangup")
        assert ended["sessionId"] != bridged.user_leg  # the operator's own leg
    finally:
        await again.close()
    call = await stored_call(faulty_server, bridged)
    assert (call["state"], call["endReason"], call["endedBy"]["role"]) == (
        "ended",
        "hangup",
        "user",
    )


# --- a leg's network ----------------------------------------------------------------------
def _only_loopback() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]  # this netns, not /sys


@pytest.fixture
def nft() -> None:
    """nftables in this run's own namespace (never the machine's own firewall)."""
    usable = shutil.which("nft") and os.geteuid() == 0 and _only_loopback()
    if not usable:
        reason = "needs root, nft (Debian nftables) and a loopback-only netns (tools/run-tests)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def udp_port(peer: ClientPeer) -> int:
    [port] = re.findall(
        r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", peer.pc.localDescription.sdp
    )
    return int(port)


@contextmanager
def udp_dropped(port: int) -> Iterator[None]:
    """Every UDP packet to or from `port` vanishes (both directions: on lo each packet
    passes output, then input)."""
    rules = f"""
    table inet callbridge_test {{
        chain input {{ type filter hook input priority 0; udp dport {port} drop; }}
        chain output {{ type filter hook output priority 0; udp sport {port} drop; }}
    }}
    """
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, timeout=5)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", "callbridge_test"], check=True, timeout=5)


async def lose_user_media(bridged: Bridged) -> float:
    """Both sockets are told the user's leg lost its media; when (loop time)."""
    for client in (bridged.operator, bridged.user):
        lost = await client.expect("event", "media.disconnected", within=8)
        assert (lost["data"]["legID"], lost["data"]["media"]) == (
            bridged.user_leg,
            "disconnected",
        )
    return asyncio.get_running_loop().time()


async def test_it_restores_audio_when_the_network_comes_back_within_the_grace_period(
    nft: None, faulty_server: Server, bridged: Bridged
) -> None:
    with udp_dropped(udp_port(bridged.user_peer)):
        lost_at = await lose_user_media(bridged)
        bridged.operator_peer.sink.clear()
        await asyncio.sleep(0.5)
        sink = bridged.operator_peer.sink
        assert sink.seconds < 0.1 or sink.rms() < 300  # the operator hears nothing now
    # Same peer connection, same ports: the packets flow again.
    back = await bridged.operator.expect("event", "media.connected", within=GRACE_S)
    assert back["data"]["legID"] == bridged.user_leg
    await hear_each_other((bridged.operator_peer, USER_TONE), (bridged.user_peer, OPERATOR_TONE))
    # Past the media deadline the loss had set: the call goes on.
    await asyncio.sleep(max(0.0, lost_at + GRACE_S + 1 - asyncio.get_running_loop().time()))
    assert (await stored_call(faulty_server, bridged))["state"] == "active"


async def test_it_reconnects_a_leg_whose_network_vanished_with_a_new_offer(
    nft: None, faulty_server: Server, bridged: Bridged
) -> None:
    with udp_dropped(udp_port(bridged.user_peer)):
        await lose_user_media(bridged)
        # The page moves to another network: a new peer connection for the same leg.
        moved = ClientPeer(660)
        try:
            answer = await bridged.user.offer(
                bridged.user_token, await moved.offer(), callSid=bridged.call_id
            )
            assert answer["sessionId"] == bridged.user_leg
            await moved.accept(answer["data"]["sdp"])
            await moved.wait_connected()
            await hear_each_other((bridged.operator_peer, 660), (moved, OPERATOR_TONE))
        finally:
            await moved.close()
    call = await stored_call(faulty_server, bridged)
    assert call["state"] == "active"


async def test_it_ends_the_call_when_the_network_stays_gone(
    nft: None, faulty_server: Server, bridged: Bridged
) -> None:
    with udp_dropped(udp_port(bridged.user_peer)):
        await lose_user_media(bridged)
        for client in (bridged.operator, bridged.user):
            ended = await client.expect("event", "call.ended", within=GRACE_S + 3)
            assert ended["data"]["reason"] == "media_timeout"
    call = await stored_call(faulty_server, bridged)
    assert (call["state"], call["endReason"], call["endedBy"]["role"]) == (
        "ended",
        "media_timeout",
        "system",
    )
    assert all(leg["mediaState"] == "closed" for leg in call["legs"]) or await _legs_close(
        faulty_server, bridged
    )


async def _legs_close(server: Server, call: Bridged, within: float = 5.0) -> bool:
    """The worker closes the legs right after the call ends; wait for its report."""
    async with asyncio.timeout(within):
        while True:
            legs = (await stored_call(server, call))["legs"]
            if all(leg["mediaState"] == "closed" for leg in legs):
                return True
            await asyncio.sleep(0.2)
