"""Scale-out with real processes: Redis, PostgreSQL, two daphne and two media workers.

Calls spread over both workers with audio both ways whichever daphne each party uses;
signaling for a call goes through the daphne its parties did not use; a killed worker's
calls end with `media_failure` and new calls avoid it; SIGTERM drains a worker; two
operators answering one call on PostgreSQL: exactly one wins; twenty callers in a
round-robin queue answered by four operators through the other daphne: each once, nobody
double-booked, five each; then one caller at a time reaches each operator in turn.
Webhooks: both daphnes' senders share the PostgreSQL outbox: each event sent once, in
order per call. Audit: calls placed through both daphnes at once leave one hash chain,
without a fork or a gap, that `verify_audit` finds intact (and names an altered row of).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pytest
import requests
import websockets
from standardwebhooks.webhooks import Webhook

from tests.support import consent_races
from tests.support.cluster import (
    METRICS_TOKEN,
    WORKER_TIMEOUT_S,
    Cluster,
    MediaWorkerProcess,
    running_cluster,
)
from tests.support.live_server import Server
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.real_socket import RealSocket
from tests.support.wav import dominant, read_wav
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.daphne

RACES = 80  # record/withdraw races across the two daphnes (+ 120 embedded: 200 in all)
HANG_UP_RACES = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
def workers(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[list[MediaWorkerProcess]]:
    """Two fresh media worker processes (named after the test) for this test."""
    prefix = request.node.name.removeprefix("test_it_")[:40]
    with cluster.media_workers((f"{prefix}-1", 2), (f"{prefix}-2", 2)) as started:
        yield started


@pytest.fixture
async def sockets() -> AsyncIterator[Any]:
    """Opens real WebSockets to a daphne; all closed at the end of the test."""
    async with AsyncExitStack() as stack:

        async def open_socket(server: Server) -> RealSocket:
            url = server.url.replace("http://", "ws://") + "/ws/signal"
            connection = websockets.connect(url, open_timeout=10)
            return RealSocket(await stack.enter_async_context(connection))

        yield open_socket


@pytest.fixture
async def peers() -> AsyncIterator[Any]:
    made: list[ClientPeer] = []

    def make(frequency: float) -> ClientPeer:
        made.append(ClientPeer(frequency))
        return made[-1]

    yield make
    for peer in made:
        await peer.close()


def offer(token: str, sdp: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "offer",
        "sessionId": "",
        "authToken": token,
        "data": {"type": "offer", "sdp": sdp},
        **fields,
    }


async def rest(server: Server, method: str, path: str, token: str, body: Any = None) -> Any:
    status, answer, _ = await asyncio.to_thread(server.request, method, path, token, body)
    assert 200 <= status < 300, (status, answer)
    return answer


async def new_session(cluster: Cluster, token: str, name: str) -> str:
    session = await rest(cluster.daphnes[0], "POST", "/api/sessions", token, {"displayName": name})
    return session["sessionToken"]


async def bridged_call(
    cluster: Cluster, sockets: Any, peers: Any, user_via: Server, operator_via: Server, token: str
) -> dict[str, Any]:
    """An end user calls through `user_via` (trickling its candidates through the other
    daphne), the operator answers through `operator_via`; both hear each other."""
    user_token = await new_session(cluster, token, "Ada")
    other = next(d for d in cluster.daphnes if d is not user_via)
    user, user_trickle, operator = (
        await sockets(user_via),
        await sockets(other),
        await sockets(operator_via),
    )
    user_peer, operator_peer = peers(440), peers(880)
    await user.send(offer(user_token, await user_peer.offer(trickle=True)))
    user_answer = await user.expect("answer")
    call_id, user_leg = user_answer["callSid"], user_answer["sessionId"]
    await user_trickle.send({"type": "register", "sessionId": "", "authToken": user_token})
    await user_trickle.expect("event", "registered")
    for candidate in [*user_peer.candidates(), {"candidate": "", "sdpMid": "0"}]:
        await user_trickle.send({"type": "ice-candidate", "sessionId": user_leg, "data": candidate})
    await operator.send(offer(token, await operator_peer.offer(), callSid=call_id))
    operator_answer = await operator.expect("answer")
    await user_peer.accept(user_answer["data"]["sdp"])
    await operator_peer.accept(operator_answer["data"]["sdp"])
    await user_peer.wait_connected()
    await operator_peer.wait_connected()
    await hear_each_other((operator_peer, 440), (user_peer, 880))
    return {
        "id": call_id,
        "user": user,
        "user_trickle": user_trickle,
        "operator": operator,
        "user_leg": user_leg,
        "user_token": user_token,
    }


async def echo_call(sockets: Any, peers: Any, via: Server, token: str, tone: float) -> tuple:
    socket_, peer = await sockets(via), peers(tone)
    await socket_.send(offer(token, await peer.offer(), mode="echo"))
    answer = await socket_.expect("answer")
    await peer.accept(answer["data"]["sdp"])
    await peer.wait_connected()
    await peer.hears(tone)
    return answer["callSid"], socket_, peer


async def test_it_spreads_calls_over_both_workers_with_audio_through_either_daphne(
    cluster: Cluster, workers: list[MediaWorkerProcess], sockets: Any, peers: Any
) -> None:
    a, b = cluster.daphnes
    token = await asyncio.to_thread(cluster.token, "spread")
    setups_before = (await metrics_of(b))["callbridge_call_setup_seconds_count"]
    first = await bridged_call(cluster, sockets, peers, user_via=a, operator_via=b, token=token)
    second = await bridged_call(cluster, sockets, peers, user_via=b, operator_via=a, token=token)
    placed = {await asyncio.to_thread(cluster.worker_of, call["id"]) for call in (first, second)}
    assert placed == {worker.name for worker in workers}

    # Either daphne's /metrics sums the host's processes (multiprocess mode): the set-ups
    # the two media worker processes observed, their loop lag, their load from the database.
    scraped = await metrics_of(a)
    assert scraped["callbridge_call_setup_seconds_count"] == setups_before + 4
    for worker in workers:
        assert scraped[f'callbridge_media_worker_calls{{worker="{worker.name}"}}'] == 1
        assert scraped[f'callbridge_media_worker_legs{{worker="{worker.name}"}}'] == 2
        assert scraped[f'callbridge_media_worker_capacity_calls{{worker="{worker.name}"}}'] == 50
        assert scraped[f'callbridge_media_worker_up{{state="running",worker="{worker.name}"}}'] == 1
    assert scraped['callbridge_event_loop_lag_seconds_count{process="mediaworker"}'] > 0

    # Recording started through one daphne, stopped through the other: the owning worker
    # writes the file (shared storage), each party on its own channel.
    call_id = first["id"]
    for who in (first["user_token"], token):
        consent = {"granted": True, "policy": "1"}
        await rest(b, "POST", f"/api/calls/{call_id}/consent", who, consent)
    recording = await rest(a, "POST", f"/api/calls/{call_id}/record", token)
    await asyncio.sleep(2.5)
    await rest(b, "POST", f"/api/calls/{call_id}/record/stop", token)
    summary = await rest(a, "GET", f"/api/calls/{call_id}", token)
    assert summary["recording"]["state"] == "finished", summary
    recordings = cluster.data_dir / "media" / "recordings"
    left, right, seconds = read_wav(recordings / recording["fileName"])
    assert seconds > 2.0
    assert abs(dominant(left[-48000:]) - 440) < 10
    assert abs(dominant(right[-48000:]) - 880) < 10

    # Hang-ups through the daphne the hanging-up party did not call through.
    await first["user_trickle"].send({"type": "hangup", "sessionId": first["user_leg"]})
    await rest(b, "POST", f"/api/calls/{second['id']}/hangup", token)
    for call in (first, second):
        for socket_ in (call["user"], call["operator"]):
            ended = await socket_.expect("event", "call.ended")
            assert ended["data"]["reason"] == "hangup"
        legs = (await rest(a, "GET", f"/api/calls/{call['id']}", token))["legs"]
        await _eventually_closed(a, call["id"], token, legs)


async def metrics_of(server: Server) -> dict[str, float]:
    """`/metrics` of one daphne as {sample with its labels: value}."""
    status, text, _ = await asyncio.to_thread(server.request, "GET", "/metrics", METRICS_TOKEN)
    assert status == 200, text
    return {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def _eventually_closed(server: Server, call_id: str, token: str, legs: list) -> None:
    """The owning worker closes the legs when the call ends (reported asynchronously)."""
    async with asyncio.timeout(10):
        while {leg["mediaState"] for leg in legs} != {"closed"}:
            await asyncio.sleep(0.2)
            legs = (await rest(server, "GET", f"/api/calls/{call_id}", token))["legs"]


async def test_it_ends_a_killed_workers_calls_and_places_new_calls_elsewhere(
    cluster: Cluster, workers: list[MediaWorkerProcess], sockets: Any, peers: Any
) -> None:
    a, b = cluster.daphnes
    token = await asyncio.to_thread(cluster.token, "kill")
    doomed, doomed_socket, _ = await echo_call(sockets, peers, a, token, 500)
    survivor, _, survivor_peer = await echo_call(sockets, peers, b, token, 700)
    owner = await asyncio.to_thread(cluster.worker_of, doomed)
    assert {owner, await asyncio.to_thread(cluster.worker_of, survivor)} == {
        w.name for w in workers
    }
    victim = next(w for w in workers if w.name == owner)

    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    ended = await doomed_socket.expect("event", "call.ended", within=WORKER_TIMEOUT_S + 7)
    noticed_after = time.monotonic() - killed_at
    assert ended["data"]["reason"] == "media_failure"
    assert noticed_after < WORKER_TIMEOUT_S + 3, noticed_after
    record = await rest(b, "GET", f"/api/calls/{doomed}", token)
    assert (record["state"], record["endReason"]) == ("ended", "media_failure")

    # The other worker's call goes on; new calls go to the worker that is alive.
    await survivor_peer.hears(700)
    assert (await rest(a, "GET", f"/api/calls/{survivor}", token))["state"] == "active"
    fresh, _, _ = await echo_call(sockets, peers, a, token, 900)
    assert await asyncio.to_thread(cluster.worker_of, fresh) != owner
    print(f"killed worker's call ended after {noticed_after:.1f} s")


async def test_it_drains_a_worker_on_sigterm(cluster: Cluster, sockets: Any, peers: Any) -> None:
    a, b = cluster.daphnes
    token = await asyncio.to_thread(cluster.token, "drain")
    with cluster.media_workers(("drain-patient", 60), ("drain-quick", 3)) as (patient, quick):
        kept, kept_socket, kept_peer = await echo_call(sockets, peers, a, token, 500)
        cut, cut_socket, _ = await echo_call(sockets, peers, b, token, 700)
        owners = [await asyncio.to_thread(cluster.worker_of, call) for call in (kept, cut)]
        assert owners == [patient.name, quick.name]  # both empty: the first by name

        # Draining: no new calls; its own call goes on until hung up, then it exits.
        patient.signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        for _ in range(2):
            fresh, fresh_socket, _ = await echo_call(sockets, peers, b, token, 900)
            assert await asyncio.to_thread(cluster.worker_of, fresh) == quick.name
            await fresh_socket.send({"type": "hangup", "callSid": fresh})
            await fresh_socket.expect("event", "call.ended")
        await kept_peer.hears(500)
        await kept_socket.send({"type": "hangup", "callSid": kept})
        assert (await kept_socket.expect("event", "call.ended"))["data"]["reason"] == "hangup"
        assert await patient.exit_code(within=20) == 0

        # A call still going at the drain timeout is ended cleanly.
        quick.signal(signal.SIGTERM)
        ended = await cut_socket.expect("event", "call.ended", within=10)
        assert ended["data"]["reason"] == "server_restart"
        assert await quick.exit_code(within=20) == 0
    for worker in (patient, quick):
        assert "Traceback" not in worker.log.read_text()
    record = await rest(a, "GET", f"/api/calls/{cut}", token)
    assert (record["state"], record["endReason"]) == ("ended", "server_restart")
    assert {leg["mediaState"] for leg in record["legs"]} == {"closed"}

    # No worker left: a new call is refused with the contract's error.
    socket_, peer = await sockets(a), peers(300)
    await socket_.send(offer(token, await peer.offer(), mode="echo"))
    error = await socket_.expect("error")
    assert error["data"]["code"] == "MEDIA_BRIDGE_FAILURE"


async def race_to_answer(call_id: str, contenders: list[tuple[Server, str]]) -> list[tuple]:
    """Every contender POSTs answer at the same instant (each through its daphne)."""
    start = threading.Barrier(len(contenders))

    def answer(server: Server, token: str) -> tuple[int, Any]:
        start.wait(timeout=10)
        status, body, _ = server.request("POST", f"/api/calls/{call_id}/answer", token)
        return status, body

    return list(
        await asyncio.gather(*(asyncio.to_thread(answer, *contender) for contender in contenders))
    )


async def test_it_lets_exactly_one_of_two_operators_answer_on_postgresql(
    cluster: Cluster, workers: list[MediaWorkerProcess]
) -> None:
    a, b = cluster.daphnes
    tokens = [await asyncio.to_thread(cluster.token, f"race-{n}") for n in (1, 2)]
    rounds = 8
    for _ in range(rounds):
        user_token = await new_session(cluster, tokens[0], "Racer")
        call = await rest(a, "POST", "/api/calls", user_token, {})
        assert call["state"] == "ringing"
        outcomes = await race_to_answer(call["callID"], [(a, tokens[0]), (b, tokens[1])])
        statuses = sorted(status for status, _ in outcomes)
        assert statuses == [200, 409], outcomes
        loser = next(body for status, body in outcomes if status == 409)
        assert loser["code"] == "CALL_STATE"
        operator_legs, answered = await asyncio.to_thread(
            lambda call_id=call["callID"]: (
                cluster.query(
                    "SELECT count(*) FROM calls_leg WHERE call_id = %s AND role = 'operator'",
                    call_id,
                )[0][0],
                cluster.query(
                    "SELECT count(*) FROM calls_callevent WHERE call_id = %s"
                    " AND name = 'call.answered'",
                    call_id,
                )[0][0],
            )
        )
        assert (operator_legs, answered) == (1, 1)
        await rest(a, "POST", f"/api/calls/{call['callID']}/hangup", user_token)


async def test_it_lets_exactly_one_of_two_racing_operator_offers_join(
    cluster: Cluster, workers: list[MediaWorkerProcess], sockets: Any, peers: Any
) -> None:
    """The same race over WebSockets with media, two operator credentials through two
    daphnes. Both planned before either was recorded: both reach the call's worker, which
    answers the first and refuses the other (CALL_STATE: that place is held); one recorded
    before the other was planned: the later is refused before any media (FORBIDDEN: no
    place in this call). Either way exactly one joins: one operator leg, never an answer
    without media, never another party's leg taken over."""
    a, b = cluster.daphnes
    tokens = [await asyncio.to_thread(cluster.token, f"offer-race-{n}") for n in (1, 2)]
    true_races = 0
    for _ in range(4):
        user_token = await new_session(cluster, tokens[0], "Racer")
        user, user_peer = await sockets(a), peers(440)
        await user.send(offer(user_token, await user_peer.offer()))
        user_answer = await user.expect("answer")
        call_id = user_answer["callSid"]
        contenders = [(await sockets(a), peers(880)), (await sockets(b), peers(880))]
        messages = [
            offer(token, await peer.offer(), callSid=call_id)
            for token, (_, peer) in zip(tokens, contenders, strict=True)
        ]
        await asyncio.gather(
            *(
                socket_.send(message)
                for (socket_, _), message in zip(contenders, messages, strict=True)
            )
        )
        replies = [await _reply(socket_) for socket_, _ in contenders]
        answers = [reply for reply in replies if reply["type"] == "answer"]
        assert len(answers) == 1, replies
        [loser] = [reply for reply in replies if reply["type"] == "error"]
        assert loser["data"]["code"] in {"CALL_STATE", "FORBIDDEN"}, loser
        true_races += loser["data"]["code"] == "CALL_STATE"  # both reached the worker
        operator_legs = await asyncio.to_thread(
            cluster.query,
            "SELECT count(*) FROM calls_leg WHERE call_id = %s AND role = 'operator'",
            call_id,
        )
        assert operator_legs == [(1,)]
        await user_peer.accept(user_answer["data"]["sdp"])
        for (_, peer), reply in zip(contenders, replies, strict=True):
            if reply["type"] == "answer":
                await peer.accept(reply["data"]["sdp"])
        await user_peer.wait_connected()
        await user_peer.hears(880)  # the operator whose media the worker kept
        await user.send({"type": "hangup", "callSid": call_id})
        await user.expect("event", "call.ended")
    print(f"{true_races} of 4 offer pairs raced (planned before either was recorded)")


async def _reply(socket_: RealSocket, within: float = 10.0) -> dict[str, Any]:
    """The first answer or error on the socket."""
    async with asyncio.timeout(within):
        while True:
            message = json.loads(await socket_.connection.recv())
            if message["type"] in ("answer", "error"):
                return message


@pytest.mark.timeout(400)
async def test_it_never_records_past_a_withdrawal_across_two_daphnes(
    cluster: Cluster, workers: list[MediaWorkerProcess]
) -> None:
    """Record through one daphne, withdraw the consent through the other, at the same
    instant, RACES times; then record, withdraw and hang up at once on fresh calls.
    The checks after each race are tests/consent_races.py's."""
    token = cluster.token("race-recorder")
    recordings_dir = cluster.data_dir / "media" / "recordings"
    async with AsyncExitStack() as stack:
        party = consent_races.Party(stack)
        call = await consent_races.bridged_call(party, *cluster.daphnes, token)
        races = await consent_races.race_many(call, tuple(cluster.daphnes), recordings_dir, RACES)
        assert races.both_orders_happened(), races
        for _ in range(HANG_UP_RACES):
            await consent_races.race_record_withdraw_and_hang_up(
                party, *cluster.daphnes, token, recordings_dir
            )
    running = cluster.query("SELECT count(*) FROM calls_recording WHERE state = 'recording'")
    assert running == [(0,)]


def test_it_runs_on_postgresql(cluster: Cluster) -> None:
    vendor = cluster.daphnes[0].manage(
        "shell", "-c", "from django.db import connection; print(connection.vendor)"
    )
    assert vendor.strip().splitlines()[-1] == "postgresql"


@dataclass
class AdminBrowser:
    """The demo operator logged in through a daphne's admin form. Cookies are kept by
    hand: they are `Secure` (production settings), which requests keeps off plain http."""

    cookies: dict[str, str]

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    @classmethod
    def log_in(cls, server: Server) -> AdminBrowser:
        printed = server.manage("demo_operator")
        password = re.search(r"password\s+(\S+)", printed)
        assert password, printed
        return cls.log_in_as(server, "operator", password.group(1))

    @classmethod
    def log_in_as(cls, server: Server, username: str, password: str) -> AdminBrowser:
        form = requests.get(f"{server.url}/admin/login/", timeout=10)
        hidden = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert hidden
        browser = cls({"csrftoken": form.cookies["csrftoken"]})
        fields = {"username": username, "password": password}
        login = browser.post(server, "/admin/login/?next=/admin/", csrf=hidden.group(1), **fields)
        assert login.status_code == 302, login.text[:500]
        browser.cookies["sessionid"] = login.cookies["sessionid"]
        if "csrftoken" in login.cookies:  # rotated at login
            browser.cookies["csrftoken"] = login.cookies["csrftoken"]
        return browser

    def api(self, server: Server, method: str, path: str, body: Any = None) -> requests.Response:
        """A REST call as this staff user (session cookie, CSRF header)."""
        return requests.request(
            method,
            f"{server.url}{path}",
            json=body,
            headers={"Cookie": self.cookie_header, "X-CSRFToken": self.cookies["csrftoken"]},
            timeout=10,
        )

    def post(self, server: Server, path: str, csrf: str = "", **form: str) -> requests.Response:
        data = {"csrfmiddlewaretoken": csrf or self.cookies["csrftoken"], **form}
        return requests.post(
            f"{server.url}{path}",
            data=data,
            headers={"Cookie": self.cookie_header},
            allow_redirects=False,
            timeout=10,
        )


async def closed_unauthorized(socket_: RealSocket, within: float = 2.0) -> None:
    """`error UNAUTHORIZED`, then a close with 4401 (the contract: within 1 s; generous bound)."""
    messages = await socket_.read_until_closed(within)
    errors = [m for m in messages if m["type"] == "error"]
    assert [e["data"]["code"] for e in errors] == ["UNAUTHORIZED"], messages
    assert socket_.connection.close_code == 4401


async def test_it_closes_sockets_on_one_daphne_when_a_credential_dies_through_the_other(
    cluster: Cluster,
) -> None:
    a, b = cluster.daphnes
    browser = await asyncio.to_thread(AdminBrowser.log_in, a)
    token = await asyncio.to_thread(cluster.token, "revoked-elsewhere")
    (token_id,) = (
        await asyncio.to_thread(
            cluster.query, "SELECT id FROM calls_apitoken WHERE name = %s", "revoked-elsewhere"
        )
    )[0]
    signal_socket = await RealSocket.open(b)
    feed_url = b.url.replace("http://", "ws://") + "/ws/operator"
    async with websockets.connect(
        feed_url,
        origin=b.url,
        additional_headers={"Cookie": browser.cookie_header},
        open_timeout=10,
    ) as connection:
        feed = RealSocket(connection)
        await feed.expect("snapshot")
        await signal_socket.register(token)

        # The admin's bulk revoke, through daphne A: the token's socket on B closes.
        revoked = await asyncio.to_thread(
            browser.post,
            a,
            "/admin/calls/apitoken/",
            action="revoke",
            _selected_action=str(token_id),
        )
        assert revoked.status_code == 302, revoked.text[:500]
        await closed_unauthorized(signal_socket)

        # Logging out through daphne A closes that browser's feed on B.
        logged_out = await asyncio.to_thread(browser.post, a, "/admin/logout/")
        assert logged_out.status_code == 200, logged_out.text[:500]
        await closed_unauthorized(feed)


QUEUE_SETUP = """
from django.contrib.auth import get_user_model
from calls.models import Queue
from calls.operators import operators_group
users = []
for n in range(4):
    user = get_user_model().objects.create_user(
        username=f"desk{n}", password="desk-password-%d" % n, is_staff=True
    )
    user.groups.add(operators_group())
    users.append(user)
queue = Queue.objects.create(
    name="Desk", public_id="desk", strategy="round_robin", ring_timeout_s=120, max_wait_s=600
)
queue.members.set(users)
"""


def test_it_routes_twenty_callers_to_four_operators_round_robin_across_two_daphnes(
    cluster: Cluster, workers: list[MediaWorkerProcess]
) -> None:
    """20 callers call a round-robin queue through either daphne at once while its 4
    operators answer their offers through the other daphne; each round every operator
    answers one call, then they hang up together. PostgreSQL keeps it exactly-once."""
    daphnes = cluster.daphnes
    cluster.daphnes[0].manage("shell", "-c", QUEUE_SETUP)  # queues are admin-managed
    operators = {
        f"desk{n}": AdminBrowser.log_in_as(daphnes[n % 2], f"desk{n}", f"desk-password-{n}")
        for n in range(4)
    }
    for n, browser in enumerate(operators.values()):
        status = browser.api(
            daphnes[(n + 1) % 2], "PUT", "/api/operators/me/status", {"availability": "available"}
        )
        assert status.status_code == 200 and status.json()["availability"] == "available"
    token = cluster.token("desk-callers")
    sessions = []
    for n in range(20):
        status, body, _ = daphnes[0].request(
            "POST", "/api/sessions", token, {"displayName": f"caller{n}"}
        )
        assert status == 201, body
        sessions.append(body["sessionToken"])

    placed_via: dict[str, int] = {}  # call id → the daphne its caller used
    failures: list[Any] = []
    start = threading.Barrier(len(sessions) + len(operators))
    rounds = threading.Barrier(len(operators))

    def recorded(work: Any) -> Any:
        def run(*args: Any) -> None:
            try:
                work(*args)
            except Exception as error:  # the assertion after the join shows it
                failures.append(error)
                rounds.abort()  # the other operators stop waiting for this one

        return run

    @recorded
    def caller(n: int) -> None:
        start.wait(timeout=20)
        status, body, _ = daphnes[n % 2].request(
            "POST", "/api/calls", sessions[n], {"queue": "desk"}
        )
        if status != 201 or body.get("state") != "ringing":
            failures.append(("call", status, body))
            return
        placed_via[body["callID"]] = n % 2

    def my_offer(username: str) -> str:
        """The call this operator is rung for now (waits for the routing engine)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = cluster.query(
                "SELECT o.call_id FROM calls_queueoffer o JOIN auth_user u"
                " ON u.id = o.operator_id WHERE u.username = %s AND o.outcome = 'pending'",
                username,
            )
            if rows and str(rows[0][0]) in placed_via:
                return str(rows[0][0])
            time.sleep(0.02)
        raise AssertionError(f"{username} was not offered a call")

    @recorded
    def operator(username: str) -> None:
        browser = operators[username]
        start.wait(timeout=20)
        for _ in range(len(sessions) // len(operators)):
            call_id = my_offer(username)
            other = daphnes[1 - placed_via[call_id]]
            rounds.wait(timeout=30)  # every operator answers at the same instant
            answered = browser.api(other, "POST", f"/api/calls/{call_id}/answer")
            if answered.status_code != 200:
                failures.append((username, "answer", answered.status_code, answered.text))
            rounds.wait(timeout=30)  # then they hang up together
            ended = browser.api(other, "POST", f"/api/calls/{call_id}/hangup")
            if ended.status_code != 200:
                failures.append((username, "hangup", ended.status_code, ended.text))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(len(sessions))]
    threads += [threading.Thread(target=operator, args=(name,)) for name in operators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures

    calls = cluster.query(
        "SELECT c.id, c.state, c.answered_at IS NOT NULL, u.username FROM calls_call c"
        " JOIN calls_queue q ON q.id = c.queue_id LEFT JOIN auth_user u"
        " ON u.id = c.operator_user_id WHERE q.public_id = 'desk'"
    )
    assert len(calls) == 20 and {(state, answered) for _, state, answered, _ in calls} == {
        ("ended", True)
    }, calls
    # No caller answered twice.
    answers = cluster.query(
        "SELECT e.call_id, count(*) FROM calls_callevent e JOIN calls_call c ON c.id = e.call_id"
        " JOIN calls_queue q ON q.id = c.queue_id WHERE q.public_id = 'desk'"
        " AND e.name = 'call.answered' GROUP BY e.call_id"
    )
    assert sorted(count for _, count in answers) == [1] * 20, answers
    # No operator double-booked: their offers never overlap, nor their calls.
    for sql in (
        "SELECT u.username, o.offered_at, o.ended_at FROM calls_queueoffer o"
        " JOIN auth_user u ON u.id = o.operator_id WHERE u.username LIKE 'desk%%'"
        " ORDER BY u.username, o.offered_at, o.id",
        "SELECT u.username, c.answered_at, c.ended_at FROM calls_call c"
        " JOIN auth_user u ON u.id = c.operator_user_id WHERE u.username LIKE 'desk%%'"
        " ORDER BY u.username, c.answered_at",
    ):
        spans = cluster.query(sql)
        for (who, _, ended), (next_who, started, _) in pairwise(spans):
            assert who != next_who or (ended is not None and ended <= started), (who, spans)
    # Round robin: each operator answered five calls.
    per_operator = Counter(username for _, _, _, username in calls)
    assert max(per_operator.values()) - min(per_operator.values()) <= 1, per_operator
    assert set(per_operator) == set(operators)

    # Then one caller at a time: round robin offers the least recently offered operator,
    # so four calls in a row reach four different operators, whichever daphne they use.
    in_turn = []
    for n in range(4):
        status, body, _ = daphnes[n % 2].request(
            "POST", "/api/calls", sessions[n], {"queue": "desk"}
        )
        assert status == 201, body
        placed_via[body["callID"]] = n % 2
        deadline = time.monotonic() + 20
        while not (
            rung := cluster.query(
                "SELECT u.username FROM calls_queueoffer o JOIN auth_user u"
                " ON u.id = o.operator_id WHERE o.call_id = %s AND o.outcome = 'pending'",
                body["callID"],
            )
        ):
            assert time.monotonic() < deadline, "nobody was offered the call"
            time.sleep(0.02)
        ((username,),) = rung
        other = daphnes[1 - n % 2]
        for action in ("answer", "hangup"):
            done = operators[username].api(other, "POST", f"/api/calls/{body['callID']}/{action}")
            assert done.status_code == 200, done.text
        in_turn.append(username)
    assert sorted(in_turn) == sorted(operators), in_turn


WEBHOOK_ENDPOINT = """
from calls.models import WebhookEndpoint
from calls.webhooks import signing
secret = signing.new_secret()
WebhookEndpoint.objects.create(url={url!r}, secret=secret, event_filter="call.*, queue.*")
print(secret)
"""


async def test_it_sends_each_webhook_once_in_order_from_two_daphnes_sharing_the_outbox(
    cluster: Cluster, workers: list[MediaWorkerProcess]
) -> None:
    receiver = WebhookReceiver(slow_s=0)
    await receiver.start("up")
    first = cluster.daphnes[0]
    printed = await asyncio.to_thread(
        first.manage, "shell", "-c", WEBHOOK_ENDPOINT.format(url=receiver.url)
    )
    secret = printed.strip().splitlines()[-1]
    token = await asyncio.to_thread(cluster.token, "webhooks")
    calls: list[str] = []
    try:
        for index in range(8):  # callers on both daphnes; each call rings out (missed)
            via = cluster.daphnes[index % 2]
            _, session, _ = await asyncio.to_thread(
                via.request, "POST", "/api/sessions", token, {"displayName": f"C{index}"}
            )
            status, call, _ = await asyncio.to_thread(
                via.request, "POST", "/api/calls", session["sessionToken"], {}
            )
            assert status == 201, call
            calls.append(call["callID"])

        def settled() -> bool:
            [(ringing, pending)] = cluster.query(
                "SELECT (SELECT COUNT(*) FROM calls_call WHERE id = ANY(%s::uuid[])"
                " AND state = 'ringing'), (SELECT COUNT(*) FROM calls_webhookdelivery"
                " WHERE call_id = ANY(%s::uuid[]) AND state = 'pending')",
                calls,
                calls,
            )
            return ringing == 0 and pending == 0

        async with asyncio.timeout(60):
            while not await asyncio.to_thread(settled):  # noqa: ASYNC110 (other processes)
                await asyncio.sleep(0.2)
    finally:
        await asyncio.to_thread(
            first.manage,
            "shell",
            "-c",
            "from calls.models import WebhookEndpoint as E; E.objects.all().delete()",
        )
        await receiver.stop()
    events = cluster.query(
        "SELECT call_id::text, id, name FROM calls_callevent WHERE call_id = ANY(%s::uuid[])"
        " AND (name LIKE 'call.%%' OR name LIKE 'queue.%%') ORDER BY id",
        calls,
    )
    verifier = Webhook(secret)
    bodies = [verifier.verify(r.body, r.headers) for r in receiver.received]
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids))  # two senders, never the same delivery twice
    mine = [b["data"] for b in bodies if b["data"]["callID"] in calls]
    assert sorted(d["eventID"] for d in mine) == [e[1] for e in events]
    for call_id in calls:
        in_arrival = [d["eventID"] for d in mine if d["callID"] == call_id]
        assert in_arrival == sorted(in_arrival) and len(in_arrival) >= 3, call_id


@pytest.mark.timeout(300)  # four manage.py processes on a loaded machine
def test_it_keeps_one_audit_chain_when_both_daphnes_record_at_once(
    cluster: Cluster, workers: list[MediaWorkerProcess]
) -> None:
    """Sixteen callers place and hang up calls through both daphnes at the same instant:
    every event is sealed once, in one chain with no fork and no gap, and verify_audit
    finds it intact (with what the module's other tests recorded); a row altered in
    PostgreSQL is named, with exit code 1."""
    daphnes = cluster.daphnes
    token = cluster.token("audit-callers")
    sessions = []
    for n in range(16):
        status, body, _ = daphnes[0].request(
            "POST", "/api/sessions", token, {"displayName": f"audited{n}"}
        )
        assert status == 201, body
        sessions.append(body["sessionToken"])
    start = threading.Barrier(len(sessions))

    def place_and_hang_up(n: int) -> tuple[int, int]:
        via = daphnes[n % 2]
        start.wait(timeout=20)
        placed, call, _ = via.request("POST", "/api/calls", sessions[n], {})
        ended, _, _ = via.request("POST", f"/api/calls/{call['callID']}/hangup", sessions[n])
        return placed, ended

    with ThreadPoolExecutor(len(sessions)) as pool:
        outcomes = list(pool.map(place_and_hang_up, range(len(sessions))))
    # 409: the routing engine ended it first (nobody is available to answer).
    assert all(placed == 201 and ended in (200, 409) for placed, ended in outcomes), outcomes
    # Each daphne's background sealer seals its commits a batch at a time, within a second.
    deadline = time.monotonic() + 20
    while True:
        [(rows, positions, last, unsealed)] = cluster.query(
            "SELECT count(*), count(DISTINCT chain_seq), max(chain_seq),"
            " count(*) - count(chain_seq) FROM calls_callevent"
        )
        if unsealed == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (positions, last, unsealed) == (rows, rows, 0)
    out = daphnes[1].manage("verify_audit")
    assert f"calls.callevent: intact, {rows} rows" in out
    assert out.strip().endswith("Every audit chain is intact.")

    middle = rows // 2
    [(row_id, actor)] = cluster.query(
        "SELECT id, actor FROM calls_callevent WHERE chain_seq = %s", middle
    )
    alter = "UPDATE calls_callevent SET actor = %s WHERE id = %s RETURNING id"
    cluster.query(alter, "mallory", row_id)
    try:
        with pytest.raises(subprocess.CalledProcessError) as failed:
            daphnes[0].manage("verify_audit")
    finally:
        cluster.query(alter, actor, row_id)  # the module's cluster is shared
    assert failed.value.returncode == 1
    assert f"calls.callevent: row id {row_id} (position {middle}): altered" in failed.value.stderr
