"""An integrator's page on another origin embeds the call button (frontend/embed.js)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from callbridge.local_server import free_port
from tests.support.browser import launch
from tests.support.live_server import Server, running_server
from tests.support.packet_loss import loss_available, udp_loss
from tests.support.pages import (
    DESKTOP,
    OPERATOR_TONE,
    USER_TONE,
    each_mostly_hears,
    end_user_link,
    my_status_is,
    open_page,
    operator_dashboard,
    screenshot,
    status_is,
)
from tests.support.static_site import static_site

pytestmark = [pytest.mark.browser, pytest.mark.daphne]

LOSS_PERCENT = 10


@pytest.fixture(scope="module")
def host_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory: pytest.TempPathFactory, host_port: int) -> Iterator[Server]:
    """A server that lets only the host page's origin frame it; pages check first."""
    with running_server(
        tmp_path_factory.mktemp("callbridge-embed"),
        CALLBRIDGE_EMBED_ORIGINS=f"http://127.0.0.1:{host_port}",
        CALLBRIDGE_PREFLIGHT="before_call",
    ) as running:
        yield running


def host_page(server: Server, token: str) -> str:
    """An integrator's page: its backend made the session and hands the token to the script."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<style>body {{ font-family: system-ui; margin: 2rem; }} .hero {{ max-width: 36rem; }}</style>
</head><body>
<main class="hero"><h1>Example Shop</h1>
<p>Questions about your order? Press <strong>Call us</strong> and talk to our team
in your browser.</p></main>
<script src="{server.url}/static/embed.js"></script>
<script>
  window.events = [];
  Callbridge.mount({{
    getToken: async () => {json.dumps(token)},
    onEvent: (event) => window.events.push(event),
    accent: "#0b6e4f",
  }});
</script>
</body></html>"""


BRAND = (
    "from calls.models import Branding; Branding.objects.update_or_create(pk=1, defaults=dict("
    "display_name='Example Shop', accent_color='#0b6e4f', "
    "welcome_text='Our team answers from 9 to 5.', "
    "waiting_text='Thanks for waiting: the next free person will answer.'))"
)


async def events_of(page: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate("window.events")
    return result


async def preflight_of(server: Server, token: str, call_id: str) -> dict[str, Any]:
    status, report, _ = await asyncio.to_thread(
        server.request, "GET", f"/api/calls/{call_id}/preflight", token
    )
    assert status == 200, report
    return report


async def test_it_calls_from_a_host_page_after_a_preflight_and_tells_it_only_where_allowed(
    embed_server: Server, playwright: Any, tmp_path: Path, host_port: int
) -> None:
    server = embed_server
    lossy = loss_available()  # else the loss part is left out (said in the docs)
    url, api_token = await end_user_link(server)
    token = parse_qs(urlsplit(url).query)["token"][0]
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(host_page(server, token))

    await asyncio.to_thread(server.manage, "shell", "-c", BRAND)  # as an admin would
    operator_browser, dashboard = await operator_dashboard(server, playwright, tmp_path)
    with static_site(site, host_port) as origin:
        user_browser, page, errors = await open_page(
            playwright, tmp_path, USER_TONE, f"{origin}/index.html", DESKTOP
        )
        try:
            await page.get_by_role("button", name="Call us").click()
            frame_element = await page.wait_for_selector("iframe.cb-embed-panel")
            assert await frame_element.get_attribute("allow") == "microphone; autoplay"
            frame = await frame_element.content_frame()
            # The frame exists before its first navigation commits (its URL still "").
            await frame.wait_for_url(re.compile(r".*/talk/embed/.*"))
            assert frame.url == f"{server.url}/talk/embed/"  # no token in its URL
            await frame.wait_for_function(
                "document.getElementById('greeting').textContent === 'Hello, Ada.'"
            )
            # Before the first call the page checks (an echo call through the server) and
            # says how it went in plain language.
            result = frame.locator("#preflight")
            await result.wait_for()
            await status_is(frame, "Ready.")
            assert await result.get_attribute("data-verdict") == "good"
            assert "Your microphone and connection work." in await result.inner_text()
            # The branding: its name, texts and accent (a CSS variable the buttons use).
            assert await frame.locator("h1").inner_text() == "Example Shop"
            assert await frame.locator("#welcome").inner_text() == "Our team answers from 9 to 5."
            assert (
                await frame.evaluate(
                    "getComputedStyle(document.getElementById('call')).backgroundColor"
                )
                == "rgb(11, 110, 79)"
            )
            await screenshot(page, "embed-host-page")

            await frame.get_by_role("button", name="Call", exact=True).click()
            ringing = dashboard.locator("#ringing li", has_text="Ada is calling")
            await ringing.wait_for()
            waiting = frame.locator("#waiting")
            assert (
                await waiting.inner_text()
                == "Thanks for waiting: the next free person will answer."
            )
            assert await waiting.is_visible()
            # The operator sees the caller's preflight on the ringing call.
            line = ringing.locator(".preflight")
            await line.wait_for()
            assert (await line.inner_text()).startswith("preflight ok RTT ")
            await screenshot(dashboard, "dashboard-ringing-preflight")
            await ringing.get_by_role("button", name="Answer").click()
            await status_is(frame, "Connected.")
            await my_status_is(dashboard, "Talking with Ada.")
            await each_mostly_hears((frame, OPERATOR_TONE), (dashboard, USER_TONE))
            await screenshot(page, "embed-host-page-in-call")

            await frame.get_by_role("button", name="Hang up").click()
            await my_status_is(dashboard, "Call ended (hung up)")
            await page.wait_for_function("window.events.some((e) => e.type === 'ended')")
            events = await events_of(page)
            assert [event["type"] for event in events] == [
                "ready",
                "ringing",
                "connected",
                "ended",
            ]
            assert all(event["source"] == "callbridge" for event in events)
            call_ids = {event["callSid"] for event in events[1:]}
            assert len(call_ids) == 1 and None not in call_ids
            assert (events[1]["direction"], events[3]["reason"]) == ("outbound", "hangup")

            # On demand, with a fifth of the UDP packets lost on the way (where nftables is
            # usable): a second report, which says so.
            with udp_loss(LOSS_PERCENT) if lossy else contextlib.nullcontext():
                await frame.get_by_role("button", name="Check my connection").click()
                await status_is(frame, "Checking")
                await status_is(frame, "Ready.")
            verdict = await frame.locator("#preflight").get_attribute("data-verdict")
            assert verdict == ("warning" if lossy else "good")
            await screenshot(page, "embed-preflight-" + verdict)
            assert len(await events_of(page)) == 4  # the echo calls told the host nothing
            assert errors == []
        finally:
            await user_browser.close()
            await operator_browser.close()

    _, call, _ = await asyncio.to_thread(
        server.request, "GET", f"/api/calls/{call_ids.pop()}", api_token
    )
    assert (call["state"], call["endReason"]) == ("ended", "hangup")
    assert token not in server.log.read_text(errors="replace")
    report = await preflight_of(server, api_token, call["callID"])
    assert (report["verdict"], report["report"]["trigger"]) == (verdict, "on_demand")
    echo = report["report"]["echo"]
    assert echo["ok"] and echo["packetsReceived"] > 50
    assert 0 <= echo["rttMs"] < 300 and report["report"]["microphone"]["level"] > 0.05
    if lossy:
        assert echo["lossPercent"] > 3 and echo["packetsLost"] > 0, echo
        assert any(finding.startswith("Some sound was lost") for finding in report["findings"])
    else:
        assert echo["lossPercent"] == 0
    assert report["report"]["turn"] == {"configured": False, "reachable": None}

    # Another origin, not configured: the browser refuses to frame the page.
    with static_site(site) as stranger:
        browser, page, errors = await open_page(
            playwright, tmp_path, USER_TONE, f"{stranger}/index.html", DESKTOP
        )
        try:
            async with page.expect_console_message(
                lambda message: "frame-ancestors" in message.text
            ):
                await page.get_by_role("button", name="Call us").click()
            frame = await (await page.wait_for_selector("iframe.cb-embed-panel")).content_frame()
            assert not frame.url.startswith(server.url)  # its document never loaded
            assert await events_of(page) == []
        finally:
            await browser.close()


async def test_it_reports_a_blocked_microphone_for_support(
    embed_server: Server, playwright: Any
) -> None:
    url, _ = await end_user_link(embed_server, "Cy")
    browser = await launch(playwright, None, allow_microphone=False)
    try:
        page = await (await browser.new_context()).new_page()
        page.set_default_timeout(20_000)
        await page.goto(url)
        result = page.locator("#preflight[data-verdict='problem']")
        await result.wait_for()
        assert "The microphone does not work: Microphone access is blocked" in (
            await result.inner_text()
        )
        assert await page.get_by_role("button", name="Try again").is_visible()
    finally:
        await browser.close()
    stored = await asyncio.to_thread(
        embed_server.manage,
        "shell",
        "-c",
        "from calls.models import PreflightReport as P; "
        "r = P.objects.get(session__display_name='Cy'); print(r.verdict, r.report['echo']['ok'])",
    )
    # (the shell may first say what it imported)
    assert stored.strip().splitlines()[-1].split() == ["problem", "False"]  # no echo tried
