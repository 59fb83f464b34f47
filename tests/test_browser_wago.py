"""WaGo's browser example, verbatim but for base URL, token and call id, in real chromium."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.browser import (
    PEAKS_OF_AUDIO_ELEMENT,
    launch,
    require_browser_environment,
    write_tone_wav,
)
from tests.support.live_server import Server

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.browser, pytest.mark.daphne]

TONE = 1000


async def test_it_runs_wagos_browser_example_against_the_aliases(
    server: Server, tmp_path: Path
) -> None:
    require_browser_environment()
    from playwright.async_api import async_playwright

    token = (
        await asyncio.to_thread(server.manage, "createapitoken", "wago-page", "--quiet")
    ).strip()
    call = await asyncio.to_thread(server.wago, token, "POST", "/call/make", {"mode": "echo"})
    example = (ROOT / "tests/fixtures/wago_live_audio_example.js").read_text()
    example = (
        example.replace("https://your-wago-server.com", server.url)
        .replace("YOUR_TOKEN", token)
        .replace("CALL_ID", call["callID"])
    )
    page_html = (
        "<!doctype html><title>WaGo example</title><audio autoplay></audio>"
        f"<script type=module>{example}\nwindow.exampleDone = true;</script>"
    )
    microphone = write_tone_wav(tmp_path / "tone.wav", TONE)
    async with async_playwright() as playwright:
        browser = await launch(playwright, microphone)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.route(
                f"{server.url}/wago-example.html",
                lambda route: route.fulfill(body=page_html, content_type="text/html"),
            )
            await page.goto(f"{server.url}/wago-example.html")
            await page.wait_for_function("window.exampleDone === true", timeout=20_000)
            assert errors == []
            peaks = await page.evaluate(
                PEAKS_OF_AUDIO_ELEMENT, {"selector": "audio", "samples": 40}
            )
        finally:
            await browser.close()
    heard = [peak for peak in peaks[10:] if peak["db"] > -90]
    assert heard, peaks
    near_tone = [peak for peak in heard if abs(peak["hz"] - TONE) < 30]
    assert len(near_tone) >= len(heard) * 0.8, peaks
    _, state, _ = await asyncio.to_thread(
        server.request, "GET", f"/api/calls/{call['callID']}", token
    )
    assert state["state"] == "active"
    assert state["legs"][0]["mediaState"] in ("connected", "closed")
