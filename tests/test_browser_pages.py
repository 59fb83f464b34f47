"""The end-user page and the operator dashboard, driven in real chromium like people do."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import launch
from tests.support.live_server import Server
from tests.support.pages import (
    OPERATOR_TONE,
    USER_TONE,
    call_state,
    each_mostly_hears,
    end_user_link,
    heard,
    mostly,
    my_status_is,
    open_page,
    operator_dashboard,
    readings_of,
    screenshot,
    status_is,
)

pytestmark = [pytest.mark.browser, pytest.mark.daphne]


async def test_it_tests_the_microphone_with_an_echo(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    url, token = await end_user_link(server)
    browser, page, errors = await open_page(playwright, tmp_path, 1000, url)
    try:
        await status_is(page, "Ready.")
        await screenshot(page, "enduser-ready")
        await page.get_by_role("button", name="Test my microphone").click()
        await status_is(page, "Testing your microphone")
        assert mostly(await heard(page), 1000)
        await screenshot(page, "enduser-echo-test")
        await page.get_by_role("button", name="Stop the test").click()
        await status_is(page, "Microphone test finished.")
        assert errors == []
    finally:
        await browser.close()
    _, calls, _ = await asyncio.to_thread(server.request, "GET", "/api/calls?state=active", token)
    assert calls == []


@pytest.mark.parametrize("who_hangs_up", ["user", "operator"])
async def test_it_connects_an_end_user_and_an_operator_who_hear_each_other(
    server: Server, playwright: Any, tmp_path: Path, who_hangs_up: str
) -> None:
    url, token = await end_user_link(server)
    operator_browser, dashboard = await operator_dashboard(server, playwright, tmp_path)
    user_browser, page, errors = await open_page(playwright, tmp_path, USER_TONE, url)
    try:
        await status_is(page, "Ready.")
        await page.get_by_role("button", name="Call", exact=True).click()
        await status_is(page, "Calling the operators")
        ringing = dashboard.locator("#ringing li", has_text="Ada is calling")
        await ringing.wait_for()
        await screenshot(dashboard, "dashboard-ringing")
        await ringing.get_by_role("button", name="Answer").click()

        await status_is(page, "Connected.")
        await my_status_is(dashboard, "Talking with Ada.")
        await each_mostly_hears((page, OPERATOR_TONE), (dashboard, USER_TONE))
        await screenshot(page, "enduser-connected")
        await screenshot(dashboard, "dashboard-in-call")
        _, active, _ = await asyncio.to_thread(
            server.request, "GET", "/api/calls?state=active", token
        )
        (call_id,) = [call["callID"] for call in active]

        if who_hangs_up == "user":
            await page.get_by_role("button", name="Hang up").click()
            await my_status_is(dashboard, "Call ended (hung up)")
        else:
            await dashboard.locator("#my-hangup").click()
            await status_is(page, "The call has ended.")
        await status_is(page, "The call has ended.")
        await screenshot(page, "enduser-ended")
        call = await call_state(server, token, call_id)
        assert (call["state"], call["endReason"], call["endedBy"]["role"]) == (
            "ended",
            "hangup",
            who_hangs_up,
        )
        recent = dashboard.locator("#recent li", has_text="Ada")
        await recent.first.wait_for()
        assert errors == []
    finally:
        await user_browser.close()
        await operator_browser.close()


async def test_it_lets_an_operator_call_an_online_end_user(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    url, _ = await end_user_link(server, "Bea")
    user_browser, page, errors = await open_page(playwright, tmp_path, USER_TONE, url)
    operator_browser, dashboard = await operator_dashboard(server, playwright, tmp_path)
    try:
        await status_is(page, "Ready.")
        available = dashboard.locator("#online li", has_text="Bea")
        await available.get_by_role("button", name="Call").click()
        await page.get_by_role("region", name="Incoming call").wait_for()
        await screenshot(page, "enduser-incoming")
        await page.get_by_role("button", name="Accept").click()
        await status_is(page, "Connected.")
        await my_status_is(dashboard, "Talking with Bea.")
        await each_mostly_hears((page, OPERATOR_TONE), (dashboard, USER_TONE))
        # Hold: Bea's page says so, the dashboard shows it; the operator hears nothing of
        # her (no hold audio is configured: she hears silence), until Resume.
        await dashboard.get_by_role("button", name="Hold", exact=True).click()
        held = page.locator("#held")
        await held.get_by_text("You are on hold").wait_for()
        await status_is(page, "On hold.")
        await my_status_is(dashboard, "Bea is on hold")
        await dashboard.locator("#active li", has_text="on hold").wait_for()
        # Unsmoothed readings (a sound that stopped lingers in smoothed ones), 25 in 2.5 s:
        # a new analyser's first window or two may still hold audio from before the hold.
        dashboard_hears, page_hears = await asyncio.gather(  # both at once
            heard(dashboard, smoothing=0), heard(page, smoothing=0)
        )
        assert readings_of(dashboard_hears, USER_TONE) <= 3
        assert readings_of(page_hears, OPERATOR_TONE) <= 3
        await screenshot(dashboard, "dashboard-hold")
        await screenshot(page, "enduser-on-hold")
        await dashboard.get_by_role("button", name="Resume").click()
        await status_is(page, "Connected.")
        assert await held.is_hidden()
        await my_status_is(dashboard, "Talking with Bea.")
        await each_mostly_hears((page, OPERATOR_TONE), (dashboard, USER_TONE))
        await page.get_by_role("button", name="Hang up").click()
        await my_status_is(dashboard, "Call ended")
        assert errors == []
    finally:
        await user_browser.close()
        await operator_browser.close()


async def test_it_explains_a_blocked_microphone(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    url, _ = await end_user_link(server, "Cy")
    browser = await launch(playwright, None, allow_microphone=False)
    try:
        page = await (await browser.new_context()).new_page()
        await page.goto(url)
        alert = page.get_by_role("alert")
        await alert.wait_for()
        assert "Microphone access is blocked" in await alert.text_content()
        assert not await page.get_by_role("button", name="Call", exact=True).is_visible()
        assert await page.get_by_role("button", name="Try again").is_visible()
        await screenshot(page, "enduser-microphone-blocked")
    finally:
        await browser.close()


async def test_it_survives_a_dropped_signaling_socket(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    url, token = await end_user_link(server, "Dee")
    browser, page, errors = await open_page(playwright, tmp_path, 1000, "about:blank")
    sockets: list[Any] = []

    async def through_proxy(socket: Any) -> None:
        sockets.append(socket)
        socket.connect_to_server()

    await page.route_web_socket("**/ws/signal", through_proxy)
    try:
        await page.goto(url)
        await status_is(page, "Ready.")
        await page.get_by_role("button", name="Test my microphone").click()
        await status_is(page, "Testing your microphone")
        assert mostly(await heard(page), 1000)
        await sockets[0].close(code=1012, reason="server restarting")  # the server drops it
        async with asyncio.timeout(15):
            while len(sockets) < 2:  # noqa: ASYNC110 (waiting for the page to reconnect)
                await asyncio.sleep(0.1)
        await status_is(page, "Testing your microphone")
        assert mostly(await heard(page), 1000)  # the media never stopped
        session_id = await page.evaluate("JSON.parse(config.textContent).sessionId")
        _, active, _ = await asyncio.to_thread(
            server.request, "GET", "/api/calls?state=active", token
        )
        assert [c["sessionId"] for c in active].count(session_id) == 1
        await page.get_by_role("button", name="Stop the test").click()
        await status_is(page, "Microphone test finished.")
        assert errors == []
    finally:
        await browser.close()


async def test_it_reconnects_its_media_after_a_network_blip(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    import json

    import websockets

    url, token = await end_user_link(server, "Eve")
    session_token = url.split("token=")[1]
    browser, page, errors = await open_page(playwright, tmp_path, 1000, url)
    try:
        await status_is(page, "Ready.")
        await page.get_by_role("button", name="Test my microphone").click()
        await status_is(page, "Testing your microphone")
        _, active, _ = await asyncio.to_thread(
            server.request, "GET", "/api/calls?state=active", token
        )
        session_id = await page.evaluate("JSON.parse(config.textContent).sessionId")
        (call,) = [c for c in active if c["sessionId"] == session_id]
        leg = call["legs"][0]["legID"]
        async with asyncio.timeout(10):  # the worker records the connection just after
            while (connected_at := call["legs"][0]["mediaConnectedAt"]) is None:
                await asyncio.sleep(0.2)
                call = await call_state(server, token, call["callID"])
        # The server drops this leg's media (as if its network vanished).
        ws_url = server.url.replace("http://", "ws://") + "/ws/signal"
        async with websockets.connect(ws_url, open_timeout=10) as other_tab:
            await other_tab.send(
                json.dumps({"type": "register", "sessionId": "", "authToken": session_token})
            )
            await other_tab.recv()
            await other_tab.send(json.dumps({"type": "close", "sessionId": leg}))
        async with asyncio.timeout(15):  # the same leg connects again, later
            while True:
                again = await call_state(server, token, call["callID"])
                (now,) = again["legs"]
                if now["mediaState"] == "connected" and now["mediaConnectedAt"] > connected_at:
                    break
                await asyncio.sleep(0.2)
        assert (again["state"], now["legID"]) == ("active", leg)
        await status_is(page, "Testing your microphone")
        assert mostly(await heard(page), 1000)
        assert errors == []
    finally:
        await browser.close()


async def test_it_records_only_after_both_agree_and_stops_when_the_user_withdraws(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    url, token = await end_user_link(server, "Flo")
    # A 600 Hz library file, there when the dashboard opens.
    add = (
        "import wave, numpy as np; from pathlib import Path; from django.conf import settings; "
        "from calls.models import AudioFile; "
        "d = Path(settings.MEDIA_ROOT) / 'audio'; d.mkdir(parents=True, exist_ok=True); "
        "t = np.arange(48000 * 6) / 48000; "
        "w = wave.open(str(d / 'chime.wav'), 'wb'); w.setnchannels(1); w.setsampwidth(2); "
        "w.setframerate(48000); "
        "w.writeframes((np.sin(2 * np.pi * 600 * t) * 0.6 * 32767).astype('<i2').tobytes()); "
        "w.close(); "
        "AudioFile.objects.get_or_create(name='chime', "
        "defaults={'file': 'audio/chime.wav', 'duration_s': 6.0})"
    )
    await asyncio.to_thread(server.manage, "shell", "-c", add)
    operator_browser, dashboard = await operator_dashboard(server, playwright, tmp_path)
    user_browser, page, errors = await open_page(playwright, tmp_path, USER_TONE, url)
    try:
        await status_is(page, "Ready.")
        await page.get_by_role("button", name="Call", exact=True).click()
        ringing = dashboard.locator("#ringing li", has_text="Flo is calling")
        await ringing.get_by_role("button", name="Answer").click()
        await status_is(page, "Connected.")
        await my_status_is(dashboard, "Talking with Flo.")

        await dashboard.get_by_role("button", name="Give my consent to be recorded").click()
        # Only the user's consent is missing once the operator's is on file (not before).
        await dashboard.wait_for_function(
            "document.getElementById('my-consent').textContent.endsWith('missing from: user.')"
        )
        await dashboard.get_by_role("button", name="Record", exact=True).click()
        await dashboard.get_by_role("alert").filter(has_text="consent of: user").wait_for()
        prompt = page.get_by_role("region", name="Recording consent")
        await prompt.wait_for()
        assert "Do you agree to be recorded?" in await prompt.text_content()
        await screenshot(page, "enduser-consent")
        await page.get_by_role("button", name="I agree to be recorded").click()
        await dashboard.wait_for_function(
            "document.getElementById('my-consent').textContent.includes('everyone agreed')"
        )
        await dashboard.get_by_role("button", name="Record", exact=True).click()
        await page.locator("#recording").wait_for()
        await dashboard.get_by_role("link", name="● Recording").wait_for()
        await screenshot(page, "enduser-recording")
        await screenshot(dashboard, "dashboard-recording")

        # A library file played to the end user is heard over the operator's voice.
        await dashboard.get_by_label("Play a file").select_option("chime")
        await dashboard.get_by_role("button", name="Play", exact=True).click()
        await asyncio.sleep(1.0)  # the request, decoding the file, the first packets
        assert mostly(await heard(page, samples=15), 600)
        await dashboard.get_by_role("button", name="Stop playing").click()

        await page.get_by_role("button", name="Stop recording me").click()
        await page.locator("#recording").wait_for(state="hidden")
        _, active, _ = await asyncio.to_thread(
            server.request, "GET", "/api/calls?state=active", token
        )
        (call,) = [c for c in active if c["recording"]]
        assert (call["recording"]["state"], call["recording"]["stopReason"]) == (
            "finished",
            "consent_withdrawn",
        )
        assert call["recording"]["sha256"] and call["recording"]["durationS"] > 0
        await page.get_by_role("button", name="Hang up").click()
        assert errors == []
    finally:
        await user_browser.close()
        await operator_browser.close()
