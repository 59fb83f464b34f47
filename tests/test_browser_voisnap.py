"""Voisnap's complete browser example (seed 002), as written but for its two URLs, its token
and its agent id, with the official `@microsoft/signalr` client from tests/js (npm ci by
`make test`), served from another origin, in real chromium: an operator (an aiortc peer
on /ws/signal) answers, each side hears the other, and `Hang Up` ends the call with the
reason `user_ended`. The tokens never reach the server's log."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from callbridge.local_server import free_port
from tests.support.browser import launch, require_browser_environment, write_tone_wav
from tests.support.live_server import Server, running_server
from tests.support.media_peers import ClientPeer
from tests.support.real_socket import RealSocket
from tests.support.static_site import static_site

ROOT = Path(__file__).resolve().parent.parent
SIGNALR = ROOT / "tests/js/node_modules/@microsoft/signalr/dist/browser/signalr.min.js"
CDN_SCRIPT = "https://cdn.jsdelivr.net/npm/@microsoft/signalr@latest/dist/browser/signalr.min.js"

pytestmark = [pytest.mark.daphne]

USER_TONE, OPERATOR_TONE = 440, 880

# Test instrumentation, not a change to the example: its remote <audio> is never put in
# the document, so the test listens to the peer connection's receiver instead.
KEEP_PEERS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__peers = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    window.__peers.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
"""
PEAKS_OF_REMOTE_AUDIO = """
async ({samples}) => {
  const track = window.__peers[0].getReceivers()[0].track;
  const stream = new MediaStream([track]);
  const sink = new Audio();  // chromium plays a remote stream into WebAudio only if attached
  sink.muted = true;
  sink.srcObject = stream;
  const context = new AudioContext();
  await context.resume();
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  context.createMediaStreamSource(stream).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const peaks = [];
  for (let i = 0; i < samples; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    analyser.getFloatFrequencyData(bins);
    let best = 1;
    for (let k = 2; k < bins.length; k++) if (bins[k] > bins[best]) best = k;
    peaks.push({hz: best * context.sampleRate / analyser.fftSize, db: bins[best]});
  }
  return peaks;
}
"""


@pytest.fixture(scope="module")
def page_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def voisnap_server(tmp_path_factory: pytest.TempPathFactory, page_port: int) -> Iterator[Server]:
    """A server that lets the integrator's page (another origin) in, with time to answer."""
    with running_server(
        tmp_path_factory.mktemp("callbridge-data"),
        CALLBRIDGE_CORS_ORIGINS=f"http://127.0.0.1:{page_port}",
        CALLBRIDGE_RING_TIMEOUT_S="30",
    ) as running:
        yield running


def example_page(server_url: str, token: str, agent: str) -> str:
    """Seed 002's example with exactly its two URLs, token, agent id and script changed."""
    page = (ROOT / "tests/fixtures/voisnap_webrtc_example.html").read_text()
    changes = [
        (CDN_SCRIPT, "/signalr.min.js"),
        ("'agt_01HXK8Z3MNPQRS'", f"'{agent}'"),
        ("'eyJhbGci...'", f"'{token}'"),
        ("https://api.voisnap.ai/api/v1/webrtc/sessions", f"{server_url}/api/v1/webrtc/sessions"),
        # The official client negotiates over HTTP(S) and upgrades itself (docs/migrating.md).
        ("wss://api.voisnap.ai/hubs/webrtc?", f"{server_url}/hubs/webrtc?"),
    ]
    for old, new in changes:
        assert page.count(old) == 1, old
        page = page.replace(old, new)
    return page


def require_signalr_client() -> None:
    if SIGNALR.exists():
        return
    message = f"{SIGNALR} is missing: npm ci --prefix tests/js (make test does it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.browser
async def test_it_runs_voisnaps_browser_example_from_another_origin(
    voisnap_server: Server, page_port: int, tmp_path: Path
) -> None:
    require_browser_environment()
    require_signalr_client()
    from playwright.async_api import async_playwright

    server = voisnap_server
    key = (
        await asyncio.to_thread(server.manage, "createapitoken", "voisnap-page", "--quiet")
    ).strip()
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(SIGNALR, site / "signalr.min.js")
    (site / "index.html").write_text(example_page(server.url, key, "default"))
    microphone = write_tone_wav(tmp_path / "tone.wav", USER_TONE)

    operator = await RealSocket.open(server)
    await operator.send({"type": "register", "sessionId": "", "authToken": key})
    await operator.expect("event", "registered")
    operator_peer = ClientPeer(OPERATOR_TONE)
    with static_site(site, page_port) as origin:
        async with async_playwright() as playwright:
            browser = await launch(playwright, microphone)
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                await page.add_init_script(KEEP_PEERS)
                await page.goto(f"{origin}/index.html")
                async with page.expect_response("**/api/v1/webrtc/sessions") as created:
                    await page.click("#callBtn")
                session = await (await created.value).json()

                incoming = await operator.expect("event", "call.incoming", within=20)
                call_id = incoming["callSid"]
                answer = await operator.offer(key, await operator_peer.offer(), callSid=call_id)
                await operator_peer.accept(answer["data"]["sdp"])
                await operator_peer.wait_connected(within=20)
                # SessionStarted: the example enables Hang Up.
                await page.wait_for_selector("#hangupBtn:not([disabled])", timeout=20_000)
                await page.wait_for_function(
                    "window.__peers.length && window.__peers[0].connectionState === 'connected'",
                    timeout=20_000,
                )
                peaks = await page.evaluate(PEAKS_OF_REMOTE_AUDIO, {"samples": 30})
                heard_by_operator = await operator_peer.hears(USER_TONE, within=15)

                await page.click("#hangupBtn")
                ended = await operator.expect("event", "call.ended", within=10)
                await page.wait_for_selector("#callBtn:not([disabled])", timeout=10_000)
                assert errors == []
            finally:
                await browser.close()
                await operator_peer.close()
                await operator.connection.close()

    heard = [peak for peak in peaks[10:] if peak["db"] > -90]
    assert heard, peaks
    assert len([p for p in heard if abs(p["hz"] - OPERATOR_TONE) < 30]) >= len(heard) * 0.8, peaks
    assert abs(heard_by_operator - USER_TONE) < 25

    assert ended["callSid"] == call_id and ended["data"]["clientReason"] == "user_ended"
    status, call, _ = await asyncio.to_thread(server.request, "GET", f"/api/calls/{call_id}", key)
    assert status == 200
    assert (call["state"], call["endReason"], call["clientReason"]) == (
        "ended",
        "hangup",
        "user_ended",
    )
    assert call["queue"] == "default"

    log = server.log.read_text(errors="replace")
    assert "/hubs/webrtc/negotiate" in log  # the access log saw the hub …
    assert session["sessionToken"] not in log and key not in log  # … and no token


def _negotiate(server: Server, query: str, origin: str) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        f"{server.url}/hubs/webrtc/negotiate?negotiateVersion=1&{query}",
        method="POST",
        headers={"Origin": origin, "X-Requested-With": "XMLHttpRequest"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


async def _hub_round_trip(server: Server, query: str, origin: str) -> list[dict[str, Any]]:
    """Handshake, one invocation; every record the server sent until it closed or answered."""
    url = server.url.replace("http://", "ws://") + f"/hubs/webrtc?{query}"
    records: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        async with websockets.connect(url, origin=origin, close_timeout=2) as hub:
            await hub.send('{"protocol":"json","version":1}\x1e')
            await hub.send(
                '{"type":1,"invocationId":"1","target":"EndSessionAsync","arguments":["x"]}\x1e'
            )
            try:
                while not any(r.get("type") in (3, 7) for r in records):
                    frame = await hub.recv()
                    records += [json.loads(part) for part in str(frame).split("\x1e")[:-1]]
            except websockets.ConnectionClosed:
                pass
    return records


async def test_it_keeps_the_hubs_tokens_out_of_the_log(
    voisnap_server: Server, page_port: int
) -> None:
    server, origin = voisnap_server, f"http://127.0.0.1:{page_port}"
    key = (
        await asyncio.to_thread(server.manage, "createapitoken", "voisnap-log", "--quiet")
    ).strip()
    status, session, _ = await asyncio.to_thread(
        server.request, "POST", "/api/v1/webrtc/sessions", key, {"agentId": "echo"}
    )
    assert status == 201, session
    token, forged = session["sessionToken"], "cbs_" + "x" * 40
    query = f"sessionToken={token}&access_token={key}"

    status, headers, negotiated = await asyncio.to_thread(_negotiate, server, query, origin)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == origin
    query += f"&id={negotiated['connectionToken']}"
    records = await _hub_round_trip(server, query, origin)
    assert records[:2] == [{}, {"type": 3, "invocationId": "1"}], records

    status, _, refused = await asyncio.to_thread(
        _negotiate, server, f"sessionToken={forged}", origin
    )
    assert (status, refused["code"]) == (401, "UNAUTHORIZED")
    records = await _hub_round_trip(server, f"sessionToken={forged}", origin)
    assert records[0] == {} and "UNAUTHORIZED" in records[-1]["error"], records

    log = server.log.read_text(errors="replace")
    assert "/hubs/webrtc/negotiate" in log and "/hubs/webrtc" in log
    for secret in (token, key, forged, negotiated["connectionToken"]):
        assert secret not in log


async def test_it_answers_the_official_client_as_a_signalr_server_would(
    voisnap_server: Server,
) -> None:
    """The wire format pinned by the real JS client (Node build, no browser)."""
    require_signalr_client()
    server = voisnap_server
    key = (
        await asyncio.to_thread(server.manage, "createapitoken", "voisnap-node", "--quiet")
    ).strip()
    _, session, _ = await asyncio.to_thread(
        server.request, "POST", "/api/v1/webrtc/sessions", key, {"agentId": "echo"}
    )
    node = await asyncio.create_subprocess_exec(
        "node",
        str(ROOT / "tests/js/hub_wire_check.cjs"),
        server.url,
        session["sessionToken"],
        stdout=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        output, _ = await node.communicate()
    results = json.loads(output)
    assert results["start"] == {"ok": True, "value": None}, results
    assert "Unknown hub method 'NoSuchMethod'" in results["unknown"]["error"]
    assert "INVALID_ARGUMENT: data.sdp is not an SDP offer" in results["badOffer"]["error"]
    assert results["sent"]["ok"] and results["badSend"]["ok"]  # no completion to wait for
    assert [e["code"] for e in results["errors"]] == ["INVALID_ARGUMENT"]  # … so said here
    assert results["end"] == {"ok": True, "value": None}
    assert results["stop"]["ok"]
    assert not results["refused"]["ok"] and "401" in results["refused"]["error"]
