"""Against a real daphne: one address cannot hold sockets open without signing in (the
audit's 300 idle sockets), and the cap on sockets per address frees up as they close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest
import websockets

from tests.support.live_server import Server, running_server
from tests.support.real_socket import RealSocket

pytestmark = pytest.mark.daphne

SOCKETS_PER_IP = 4


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("callbridge-caps"),
        CALLBRIDGE_LIMIT_SOCKETS_PER_IP=str(SOCKETS_PER_IP),
        CALLBRIDGE_WS_SIGN_IN_DEADLINE_S="1",
    ) as running:
        yield running


async def closing_error(socket: RealSocket) -> tuple[str, int | None]:
    """The error the server sent before closing the socket, and its close code."""
    messages = await socket.read_until_closed(within=5)
    assert [m["type"] for m in messages] == ["error"], messages
    return messages[0]["data"]["code"], socket.connection.close_code


async def test_it_caps_sockets_per_address_and_closes_those_that_never_sign_in(
    capped_server: Server,
) -> None:
    idle = [await RealSocket.open(capped_server) for _ in range(SOCKETS_PER_IP)]
    over = await RealSocket.open(capped_server)
    code, close_code = await closing_error(over)
    assert (code, close_code) == ("RATE_LIMITED", 4429)
    assert over.received[0]["data"]["details"] == {
        "limit": "socketsPerAddress",
        "max": SOCKETS_PER_IP,
    }
    # Nobody signs in: each socket is told UNAUTHORIZED and closed at its 1 s deadline.
    for socket in idle:
        assert await closing_error(socket) == ("UNAUTHORIZED", 4401)
    # Their places are free again; a socket that signs in in time stays open.
    token = (
        await asyncio.to_thread(capped_server.manage, "createapitoken", "caps", "--quiet")
    ).strip()
    kept = await RealSocket.open(capped_server)
    try:
        await kept.register(token)
        await asyncio.sleep(1.5)  # past the deadline
        await kept.register(token)
    finally:
        await kept.close()


async def test_it_frees_an_addresss_places_when_its_sockets_close(capped_server: Server) -> None:
    sockets = [await RealSocket.open(capped_server) for _ in range(SOCKETS_PER_IP)]
    for socket in sockets:
        await socket.close()
    await asyncio.sleep(0.2)  # daphne handles the closes
    again = [await RealSocket.open(capped_server) for _ in range(SOCKETS_PER_IP)]
    try:
        for socket in again:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await socket.connection.recv()  # no refusal
    finally:
        for socket in again:
            with contextlib.suppress(websockets.ConnectionClosed):
                await socket.close()
