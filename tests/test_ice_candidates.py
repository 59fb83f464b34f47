"""Remote ICE candidates: a cap per connection, no multicast/broadcast/unspecified
addresses, optional allowed networks (calls/media/candidates.py, issue 12 item 7).

The live tests offer through /ws/signal to the real media worker; the decoy candidates
point at UDP sockets the test binds on 127.0.0.1, so what the server probes is counted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from aioice import stun
from asgiref.sync import sync_to_async

from calls.media.candidates import (
    DEFAULT_MAX_REMOTE,
    CandidateBudget,
    CandidateRules,
    Verdict,
    filter_offer,
    parse_networks,
)
from calls.models import EndUserSession
from tests.support.media_peers import ClientPeer
from tests.support.signal_client import SignalClient

STUN_BINDING_REQUEST = 0x0001
STUN_MAGIC_COOKIE = 0x2112A442
REFUSED_KINDS = [
    "0.0.0.0",  # noqa: S104  (a candidate address, not a bind)
    "0.1.2.3",
    "::",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "ff02::1",
    "ff0e::1",
    "::ffff:224.0.0.1",
    "::ffff:0.0.0.0",
]


def candidate(host: str, port: int, transport: str = "udp", foundation: str = "1") -> str:
    return f"candidate:{foundation} 1 {transport} 2130706431 {host} {port} typ host"


# --- the rules, on their own ------------------------------------------------------------------
def test_it_uses_unicast_candidates_up_to_the_cap_and_no_more() -> None:
    budget = CandidateBudget(CandidateRules(max_remote=3))
    verdicts = [budget.judge("udp", "127.0.0.1", port).verdict for port in (5000, 5001, 5002)]
    assert verdicts == [Verdict.USE] * 3
    over = budget.judge("UDP", "192.0.2.7", 5003)
    assert over.verdict is Verdict.OVER_CAP and "at most 3" in over.reason
    # A destination already used is a repeat, not a new one (in any spelling).
    assert budget.judge("udp", "127.0.0.1", 5000).verdict is Verdict.IGNORE
    assert DEFAULT_MAX_REMOTE == CandidateRules().max_remote == 20


@pytest.mark.parametrize("host", REFUSED_KINDS)
def test_it_refuses_addresses_that_are_not_unicast(host: str) -> None:
    budget = CandidateBudget(CandidateRules())
    judgement = budget.judge("udp", host, 3478)
    assert judgement.verdict is Verdict.REFUSE and "not unicast" in judgement.reason
    assert not budget.used  # a refusal costs nothing from the cap


def test_it_refuses_host_names_bad_ports_and_unknown_transports_and_ignores_mdns_and_tcp() -> None:
    budget = CandidateBudget(CandidateRules())
    assert budget.judge("udp", "example.com", 3478).verdict is Verdict.REFUSE
    assert budget.judge("udp", "localhost", 3478).verdict is Verdict.REFUSE
    assert budget.judge("udp", "127.0.0.1", 0).verdict is Verdict.REFUSE
    assert budget.judge("udp", "127.0.0.1", 65536).verdict is Verdict.REFUSE
    assert budget.judge("sctp", "127.0.0.1", 5000).reason == "unsupported candidate transport"
    mdns = "0b6f5a2e-3f4c-4d1a-9a55-5c1e2b3d4f60.local"
    assert budget.judge("udp", mdns, 5000).verdict is Verdict.IGNORE
    assert budget.judge("tcp", "127.0.0.1", 9).verdict is Verdict.IGNORE
    assert not budget.used


def test_it_keeps_to_the_allowed_networks_when_some_are_set() -> None:
    rules = CandidateRules(allowed_networks=parse_networks(["10.0.0.0/8", "2001:db8::/32"]))
    budget = CandidateBudget(rules)
    assert budget.judge("udp", "10.1.2.3", 5000).verdict is Verdict.USE
    assert budget.judge("udp", "::ffff:10.1.2.4", 5000).verdict is Verdict.USE
    assert budget.judge("udp", "2001:db8::1", 5000).verdict is Verdict.USE
    outside = budget.judge("udp", "192.168.1.1", 5000)
    assert outside.verdict is Verdict.REFUSE and "allowed networks" in outside.reason
    assert budget.judge("udp", "127.0.0.1", 5000).verdict is Verdict.REFUSE
    assert budget.judge("udp", "10.255.255.255", 5000).verdict is Verdict.USE  # see docs
    with pytest.raises(ValueError, match="not a network"):
        parse_networks(["10.0.0.0/33"])


def test_it_drops_offered_candidates_beyond_the_cap_or_refused_and_keeps_the_rest() -> None:
    lines = [f"a={candidate('127.0.0.1', 6000 + i, foundation=str(i))}" for i in range(5)]
    lines[1:1] = [f"a={candidate('224.0.0.1', 5000)}", f"a={candidate('1.local', 5000)}"]
    sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + "\r\n".join(lines) + "\r\na=sendrecv\r\n"
    filtered = filter_offer(sdp, CandidateBudget(CandidateRules(max_remote=2)))
    kept = re.findall(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+)", filtered.sdp)
    assert kept == [("127.0.0.1", "6000"), ("127.0.0.1", "6001")]
    assert filtered.dropped == {Verdict.REFUSE: 1, Verdict.IGNORE: 1, Verdict.OVER_CAP: 3}
    assert filtered.sdp.startswith("v=0\r\nm=audio") and filtered.sdp.endswith("a=sendrecv\r\n")


def test_it_keeps_a_bundled_offers_copies_of_its_candidates_in_every_m_line() -> None:
    # A supervisor's two audio m-lines repeat the candidates (bundled); aiortc takes the
    # shared transport's from the last m-line, so the copies stay. A repeat within one
    # m-line, or a refused one repeated, is still dropped; the copies cost no budget.
    usable, refused = f"a={candidate('127.0.0.1', 6000)}", f"a={candidate('224.0.0.1', 5000)}"
    section = f"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{usable}\r\n{refused}\r\n"
    sdp = f"v=0\r\n{section}{usable}\r\n{section}"
    filtered = filter_offer(sdp, CandidateBudget(CandidateRules(max_remote=1)))
    kept = f"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{usable}\r\n"
    assert filtered.sdp == f"v=0\r\n{kept}{kept}"
    assert filtered.dropped == {Verdict.REFUSE: 2, Verdict.IGNORE: 1}


def test_it_withholds_the_end_of_candidates_while_none_was_usable() -> None:
    head = "v=0\r\nm=audio 9 X 111\r\n"
    sdp = head + "a=candidate:1 1 udp 1 x.local 5000 typ host\r\na=end-of-candidates\r\n"
    assert filter_offer(sdp, CandidateBudget(CandidateRules())).sdp == head  # mDNS only
    usable = sdp.replace("x.local", "192.0.2.1")
    assert filter_offer(usable, CandidateBudget(CandidateRules())).sdp == usable


def test_it_splits_an_offer_into_lines_exactly_as_aiortc_does() -> None:
    # A bare \r (or \n, \x85…) ends a line for aiortc's parser: a second candidate hidden
    # behind one that is kept must be judged on its own, not smuggled past the cap.
    hidden = f"a={candidate('127.0.0.1', 7000)}\ra={candidate('127.0.0.1', 7001)}\x85"
    sdp = f"v=0\r\nm=audio 9 X 111\r\n{hidden}a={candidate('127.0.0.1', 7002)}\r\n"
    filtered = filter_offer(sdp, CandidateBudget(CandidateRules(max_remote=1)))
    assert filtered.sdp.splitlines() == [
        "v=0",
        "m=audio 9 X 111",
        f"a={candidate('127.0.0.1', 7000)}",
    ]
    assert filtered.dropped == {Verdict.OVER_CAP: 2}


# --- through the real signaling path and media worker --------------------------------------
@pytest.fixture
async def user_token(db: Any) -> str:
    _, token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    return token


@pytest.fixture
def decoys() -> Iterator[list[socket.socket]]:
    """400 UDP sockets on 127.0.0.1 that nobody but the server's ICE agent would send to."""
    sockets = []
    try:
        for _ in range(400):
            decoy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(decoy)
            decoy.bind(("127.0.0.1", 0))
            decoy.setblocking(False)
        yield sockets
    finally:
        for decoy in sockets:
            decoy.close()


def probed(decoys: list[socket.socket], seen: set[int]) -> set[int]:
    """The decoys (by port) that have received a STUN binding request so far."""
    for decoy in decoys:
        while True:
            try:
                data = decoy.recv(2048)
            except BlockingIOError:
                break
            message_type, _, cookie = (
                struct.unpack_from("!HHI", data) if len(data) >= 8 else (0, 0, 0)
            )
            if message_type == STUN_BINDING_REQUEST and cookie == STUN_MAGIC_COOKIE:
                seen.add(decoy.getsockname()[1])
    return seen


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_it_probes_at_most_the_cap_of_400_offered_candidates_and_still_connects(
    asgi_app: Any, user_token: str, decoys: list[socket.socket], settings: Any
) -> None:
    cap = settings.CALLBRIDGE_ICE_MAX_REMOTE_CANDIDATES
    client = SignalClient(asgi_app)
    await client.connect()
    peer = ClientPeer(1000)
    try:
        sdp = await peer.offer()
        real = re.search(r"a=candidate:[^\r\n]+\r\n", sdp)
        assert real is not None
        flood = "".join(
            f"a={candidate('127.0.0.1', d.getsockname()[1], foundation=f'd{i}')}\r\n"
            for i, d in enumerate(decoys)
        )
        answer = await client.offer(
            user_token, sdp[: real.end()] + flood + sdp[real.end() :], mode="echo"
        )
        # The attacker's way: never answer, let the server probe until its ICE deadline.
        # Unfiltered, it starts a check every 20 ms: some hundred decoys in 3 s.
        await asyncio.sleep(3)
        seen = probed(decoys, set())
        await peer.accept(answer["data"]["sdp"])
        await peer.wait_connected(within=10)
        await client.expect("event", "media.connected")
        assert abs(await peer.hears(1000) - 1000) < 25  # the real candidate carried the call
        seen = probed(decoys, seen)
        assert 0 < len(seen) <= cap - 1  # the real candidate is one of the cap
    finally:
        await peer.close()
        await client.close()


def sdp_value(sdp: str, attribute: str) -> str:
    found = re.search(rf"^a={attribute}:(\S+)", sdp, re.M)
    assert found is not None, attribute
    return found.group(1)


def binding_request(username: str, password: str) -> bytes:
    """A client's authenticated connectivity check, as a browser would send one."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = username
    request.attributes["PRIORITY"] = 1853824767
    request.attributes["ICE-CONTROLLING"] = 1
    request.add_message_integrity(password.encode())
    request.add_fingerprint()
    return bytes(request)


def received_types(decoys: list[socket.socket], seen: dict[int, set[int]]) -> dict[int, set[int]]:
    """STUN message types each decoy (by port) has received so far."""
    for decoy in decoys:
        while True:
            try:
                data = decoy.recv(2048)
            except BlockingIOError:
                break
            if len(data) >= 20:
                seen.setdefault(decoy.getsockname()[1], set()).add(int.from_bytes(data[:2]))
    return seen


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_it_sends_triggered_checks_to_at_most_the_cap_of_new_addresses(
    asgi_app: Any, user_token: str, decoys: list[socket.socket], settings: Any
) -> None:
    # A client (it knows its leg's ICE password) sends checks from 400 addresses no
    # candidate named — or spoofs them. Each is answered, one packet for one; only the
    # cap's worth are learnt as peer-reflexive and probed with triggered checks.
    cap = settings.CALLBRIDGE_ICE_MAX_REMOTE_CANDIDATES
    client = SignalClient(asgi_app)
    await client.connect()
    peer = ClientPeer(1000)
    try:
        offer = await peer.offer()
        answer = await client.offer(user_token, offer, mode="echo")
        server_sdp = answer["data"]["sdp"]
        server = re.search(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host", server_sdp)
        assert server is not None
        check = binding_request(
            f"{sdp_value(server_sdp, 'ice-ufrag')}:{sdp_value(offer, 'ice-ufrag')}",
            sdp_value(server_sdp, "ice-pwd"),
        )
        for decoy in decoys:
            decoy.sendto(check, (server.group(1), int(server.group(2))))
        await asyncio.sleep(2)
        await peer.accept(server_sdp)
        await peer.wait_connected(within=10)
        assert abs(await peer.hears(1000) - 1000) < 25
        seen = received_types(decoys, {})
        answered = [port for port, kinds in seen.items() if 0x0101 in kinds]
        probed = [port for port, kinds in seen.items() if STUN_BINDING_REQUEST in kinds]
        assert len(answered) == len(decoys)
        assert 0 < len(probed) <= cap - 1  # the client's real candidate is one of the cap
    finally:
        await peer.close()
        await client.close()


MDNS_NAME = "0b6f5a2e-3f4c-4d1a-9a55-5c1e2b3d4f60.local"


def hidden_behind_mdns(sdp_or_line: str) -> str:
    return re.sub(r"( udp \d+ )127\.0\.0\.1 ", rf"\g<1>{MDNS_NAME} ", sdp_or_line)


@pytest.mark.parametrize("trickle", [False, True])
@pytest.mark.django_db(transaction=True)
async def test_it_connects_a_client_hiding_its_address_behind_an_mdns_name(
    asgi_app: Any, user_token: str, trickle: bool
) -> None:
    # mDNS candidates are not resolved (no multicast query on the server's LAN for any
    # client), and the client's end-of-candidates is withheld while none was usable: the
    # client is found as peer-reflexive when its own checks arrive.
    client = SignalClient(asgi_app)
    await client.connect()
    peer = ClientPeer(1000)
    try:
        sdp = hidden_behind_mdns(await peer.offer(trickle=trickle))
        assert trickle or (MDNS_NAME in sdp and "a=end-of-candidates" in sdp)
        answer = await client.offer(user_token, sdp, mode="echo")
        if trickle:
            for data in [*peer.candidates(), {"candidate": ""}]:
                data["candidate"] = hidden_behind_mdns(data["candidate"])
                message = {"type": "ice-candidate", "sessionId": answer["sessionId"], "data": data}
                await client.send(message)
        await peer.accept(answer["data"]["sdp"])
        await peer.wait_connected(within=10)
        assert abs(await peer.hears(1000) - 1000) < 25
        assert not [m for m in client.received if m["type"] == "error"]
    finally:
        await peer.close()
        await client.close()


@pytest.fixture
def three_candidates_on_loopback(settings: Any) -> None:
    settings.CALLBRIDGE_ICE_MAX_REMOTE_CANDIDATES = 3
    settings.CALLBRIDGE_ICE_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]


@pytest.mark.django_db(transaction=True)
async def test_it_refuses_trickled_candidates_beyond_the_cap_or_of_a_refused_kind(
    three_candidates_on_loopback: None,
    asgi_app: Any,
    user_token: str,
    decoys: list[socket.socket],
) -> None:
    ports = [d.getsockname()[1] for d in decoys[:3]]
    client = SignalClient(asgi_app)
    await client.connect()
    peer = ClientPeer(1000)
    try:
        answer = await client.offer(user_token, await peer.offer(trickle=True), mode="echo")
        leg = answer["sessionId"]
        [real] = peer.candidates()
        sent: list[tuple[str, str | None]] = [  # (candidate, the error expected, if any)
            (real["candidate"], None),
            (candidate("127.0.0.1", ports[0]), None),
            (candidate("127.0.0.1", ports[1]), None),  # the cap (3) is reached
            (candidate("127.0.0.1", ports[0]), None),  # a repeat: ignored
            (candidate("0b6f5a2e-3f4c-4d1a-9a55-5c1e2b3d4f60.local", 9), None),  # mDNS: ignored
            (candidate("127.0.0.1", 9, transport="tcp"), None),  # TCP: ignored
            (
                candidate("127.0.0.1", ports[2]),
                "too many ICE candidates (at most 3 per connection)",
            ),
            *((candidate(host, 3478), "not unicast") for host in REFUSED_KINDS),
            (candidate("10.1.2.3", 3478), "outside the allowed networks"),
            (candidate("example.com", 3478), "must be an IP address"),
            (candidate("127.0.0.1", 9, transport="sctp"), "unsupported candidate transport"),
        ]
        for line, _ in sent:
            data = {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}
            await client.send({"type": "ice-candidate", "sessionId": leg, "data": data})
        expected = [error for _, error in sent if error is not None]
        errors: list[dict[str, Any]] = []
        while len(errors) < len(expected):  # the worker handles one call's messages in order
            try:
                message = await client.receive(within=8)
            except TimeoutError:
                raise AssertionError(f"{len(expected)} errors expected, got {errors}") from None
            if message["type"] == "error":
                errors.append(message)
        for error, wanted in zip(errors, expected, strict=True):
            assert (error["sessionId"], error["data"]["code"]) == (leg, "INVALID_ARGUMENT")
            assert wanted in error["data"]["message"], (wanted, error)

        await client.send({"type": "ice-candidate", "sessionId": leg, "data": {"candidate": ""}})
        await peer.accept(answer["data"]["sdp"])
        await peer.wait_connected(within=10)
        assert abs(await peer.hears(1000) - 1000) < 25  # the refusals changed nothing
        assert probed(decoys[2:], set()) == set()  # the one beyond the cap was never probed
    finally:
        await peer.close()
        await client.close()


def test_it_reads_the_allowed_networks_setting_strictly() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from callbridge.env import env_network_list

    environ = {"NETS": "10.0.0.0/8, 2001:db8::/32,192.0.2.1"}
    assert env_network_list("NETS", environ=environ) == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"]
    assert [str(n) for n in parse_networks(env_network_list("NETS", environ=environ))][-1] == (
        str(ipaddress.ip_network("192.0.2.1/32"))
    )
    with pytest.raises(ImproperlyConfigured, match="NETS"):
        env_network_list("NETS", environ={"NETS": "10.0.0.0/8,intranet"})
