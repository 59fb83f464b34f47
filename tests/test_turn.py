"""TURN for real: a coturn with `use-auth-secret` accepts the credentials callbridge hands
out in /api/webrtc/config, and a client allowed to use relay candidates only
(`iceTransportPolicy: relay`) talks through it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy

from tests.support.live_server import Server, running_server
from tests.support.media_peers import ClientPeer
from tests.support.real_services import Turn, running_coturn
from tests.support.real_socket import RealSocket

pytestmark = pytest.mark.daphne


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    with running_coturn(tmp_path_factory.mktemp("coturn")) as running:
        yield running


@pytest.fixture(scope="module")
def turn_server(turn: Turn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("callbridge-turn")
    with running_server(
        data, CALLBRIDGE_TURN_URLS=turn.url, CALLBRIDGE_TURN_SECRET=turn.secret
    ) as server:
        yield server


def relay_only(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[RTCIceServer(**server) for server in ice_servers],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )


async def ice_config(server: Server, token: str) -> dict[str, Any]:
    status, config, _ = await asyncio.to_thread(server.request, "GET", "/api/webrtc/config", token)
    assert status == 200, config
    return config


async def test_it_carries_audio_through_coturn_for_a_relay_only_client(
    turn: Turn, turn_server: Server
) -> None:
    token = (await asyncio.to_thread(turn_server.manage, "createapitoken", "t", "--quiet")).strip()
    config = await ice_config(turn_server, token)
    assert config["turn"]["enabled"] is True
    [ice_server] = config["iceServers"]
    assert ice_server["urls"] == [turn.url]
    peer = ClientPeer(1000, relay_only(config["iceServers"]))
    try:
        sdp = await peer.offer()
        candidates = re.findall(r"a=candidate:\S+ \d \S+ \d+ (\S+) (\d+) typ (\w+)", sdp)
        assert candidates, sdp
        assert {kind for _, _, kind in candidates} == {"relay"}  # nothing but coturn's
        url = turn_server.url.replace("http://", "ws://") + "/ws/signal"
        async with websockets.connect(url, open_timeout=10) as connection:
            socket_ = RealSocket(connection)
            answer = await socket_.offer(token, sdp, mode="echo")
            await peer.accept(answer["data"]["sdp"])
            await peer.wait_connected()
            assert abs(await peer.hears(1000) - 1000) < 25  # out and back through the relay
            await socket_.send({"type": "hangup", "callSid": answer["callSid"]})
            await socket_.expect("event", "call.ended")
    finally:
        await peer.close()
    # coturn's own account: it accepted the credentials and relayed the audio both ways
    # (it logs a peer's usage when the client lets the allocation go).
    user = re.escape(ice_server["username"])
    log = await logged(
        turn, rf"peer usage: realm=<[^>]*>, username=<{user}>, rp=(\d+), rb=\d+, sp=(\d+)"
    )
    assert re.search(rf"user <{user}>: incoming packet ALLOCATE processed, success", log), log
    usage = re.findall(rf"username=<{user}>, rp=(\d+), rb=\d+, sp=(\d+)", log)
    assert all(int(rp) > 50 and int(sp) > 50 for rp, sp in usage), usage


async def logged(turn: Turn, pattern: str, within: float = 10.0) -> str:
    """coturn's log once it has a line matching `pattern`."""
    async with asyncio.timeout(within):
        while True:  # a file written by another process: polled
            if re.search(pattern, log := turn.log.read_text()):
                return log
            await asyncio.sleep(0.2)


async def test_it_gets_no_relay_with_credentials_coturn_did_not_issue(
    turn: Turn, turn_server: Server
) -> None:
    token = (await asyncio.to_thread(turn_server.manage, "createapitoken", "u", "--quiet")).strip()
    [ice_server] = (await ice_config(turn_server, token))["iceServers"]
    forged = {**ice_server, "credential": "bm90IHRoZSByaWdodCBvbmU="}
    peer = ClientPeer(1000, relay_only([forged]))
    try:
        async with asyncio.timeout(20):
            try:
                sdp = await peer.offer()
            except Exception as error:  # aioice gives up on the refused allocation
                sdp = str(error)
        assert "typ relay" not in sdp
    finally:
        await peer.close()
    user = re.escape(ice_server["username"])
    await logged(turn, rf"user <{user}>: incoming packet message processed, error 401")
