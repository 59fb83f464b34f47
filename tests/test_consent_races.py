"""Record, withdraw and hang up at the same instant (issue 12, item 1), on the embedded
server (SQLite, one daphne, its own media worker) with real peers sending audio; the same
races across two daphnes and two media workers on PostgreSQL are in test_scale_out.py.

An audit left recordings running without the consents the policy needs in 2 to 7 of 20
tries. After every race here: no recording is running, no recorder is capturing, and a
file that a withdrawal stopped holds no audio from after the withdrawal's instant (+ one
20 ms frame).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.consent_races import (
    Party,
    bridged_call,
    race_many,
    race_record_withdraw_and_hang_up,
)
from tests.support.live_server import Server, running_server

pytestmark = pytest.mark.daphne

RACES = 120  # + 80 across two daphnes in test_scale_out.py: 200 in all
HANG_UP_RACES = 4  # each needs a fresh call


# --- the embedded server ------------------------------------------------------------------
@dataclass
class Embedded:
    server: Server
    token: str  # the operator's API token

    @property
    def recordings_dir(self) -> Path:
        return Path(self.server.env["CALLBRIDGE_DATA_DIR"]) / "media" / "recordings"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    data = tmp_path_factory.mktemp("races")
    with running_server(data, CALLBRIDGE_RING_TIMEOUT_S="30") as server:
        yield Embedded(server, server.manage("createapitoken", "recorder", "--quiet").strip())


@pytest.fixture
async def party() -> AsyncIterator[Party]:
    async with AsyncExitStack() as stack:
        yield Party(stack)


@pytest.mark.timeout(400)
async def test_it_never_records_past_a_withdrawal_racing_the_record_request(
    embedded: Embedded, party: Party
) -> None:
    server = embedded.server
    call = await bridged_call(party, server, server, embedded.token)
    races = await race_many(call, (server, server), embedded.recordings_dir, RACES)
    assert races.both_orders_happened(), races


@pytest.mark.timeout(200)
async def test_it_never_leaves_a_recording_running_when_the_call_hangs_up_meanwhile(
    embedded: Embedded, party: Party
) -> None:
    server = embedded.server
    for _ in range(HANG_UP_RACES):
        await race_record_withdraw_and_hang_up(
            party, server, server, embedded.token, embedded.recordings_dir
        )
