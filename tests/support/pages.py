"""Both pages driven in real chromium: a page with a fake microphone tone, an operator's
dashboard logged in, what an audio element hears, screenshots (tests/test_browser_*.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (
    PEAKS_OF_AUDIO_ELEMENT,
    launch,
    require_browser_environment,
    write_tone_wav,
)
from tests.support.live_server import Server

ROOT = Path(__file__).resolve().parent.parent.parent

USER_TONE, OPERATOR_TONE = 440, 880
SCREENSHOTS = ROOT / "var" / "screenshots"
# Tone measurements need the browser's voice processing off (it squashes steady tones).
NO_PROCESSING = "try { localStorage.setItem('callbridge.audioProcessing', 'off'); } catch (e) {}"
PHONE = {"width": 390, "height": 760}
DESKTOP = {"width": 1280, "height": 800}
OPERATOR_PASSWORD = "dashboard-test-pw-1"


@pytest.fixture
async def playwright() -> AsyncIterator[Any]:
    require_browser_environment()
    from playwright.async_api import async_playwright

    async with async_playwright() as running:
        yield running


async def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def heard(
    page: Any, selector: str = "#remote", samples: int = 25, smoothing: float = 0.8
) -> list[float]:
    """The loudest frequency of each reading (a page or a frame) above -90 dB, once the
    element plays a stream (a call just answered gets its remote track a moment later)."""
    await page.wait_for_function(
        "s => document.querySelector(s)?.srcObject instanceof MediaStream", arg=selector
    )
    peaks = await page.evaluate(
        PEAKS_OF_AUDIO_ELEMENT, {"selector": selector, "samples": samples, "smoothing": smoothing}
    )
    return [peak["hz"] for peak in peaks if peak["db"] > -90]


def readings_of(frequencies: list[float], tone: float) -> int:
    return sum(1 for hz in frequencies if abs(hz - tone) < 30)


def mostly(frequencies: list[float], tone: float) -> bool:
    near = [hz for hz in frequencies if abs(hz - tone) < 30]
    return bool(frequencies) and len(near) >= 0.8 * len(frequencies)


async def each_mostly_hears(*ears: tuple[Any, float]) -> None:
    """Each (page, tone): the page mostly hears its tone. The pages listen at once (each
    its own full reading): one reading's time for all of them, not one after another."""
    readings = await asyncio.gather(*(heard(page) for page, _ in ears))
    for index, ((_, tone), frequencies) in enumerate(zip(ears, readings, strict=True)):
        assert mostly(frequencies, tone), (index, tone, frequencies[:8])


async def end_user_link(server: Server, name: str = "Ada") -> tuple[str, str]:
    """A new session's page URL and the API token that made it."""
    token = (await asyncio.to_thread(server.manage, "createapitoken", "pages", "--quiet")).strip()
    _, session, _ = await asyncio.to_thread(
        server.request, "POST", "/api/sessions", token, {"displayName": name}
    )
    return session["url"], token


async def open_page(
    playwright: Any, tmp_path: Path, tone: int, url: str, viewport: dict[str, int] = PHONE
) -> tuple[Any, Any, list[str]]:
    browser = await launch(playwright, write_tone_wav(tmp_path / f"{tone}.wav", tone))
    context = await browser.new_context(viewport=viewport)
    await context.add_init_script(NO_PROCESSING)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(url)
    return browser, page, errors


async def status_is(page: Any, text: str) -> None:
    """`page` may be a frame: the end-user page framed by a host page."""
    await page.wait_for_function(
        "(text) => document.getElementById('status').textContent.includes(text)", arg=text
    )


async def make_queue(server: Server, public_id: str, name: str, **fields: Any) -> None:
    """A queue in `server`'s database (once: an existing one is kept), with `fields`."""
    defaults = {"name": name, **fields}
    create = (
        "from calls.models import Queue;"
        f"Queue.objects.get_or_create(public_id={public_id!r}, defaults={defaults!r})"
    )
    await asyncio.to_thread(server.manage, "shell", "-c", create)


async def operator_dashboard(
    server: Server, playwright: Any, tmp_path: Path, username: str = "op", tone: int = OPERATOR_TONE
) -> tuple[Any, Any]:
    create = (
        "from django.contrib.auth import get_user_model; U = get_user_model(); "
        f"U.objects.filter(username='{username}').exists() or "
        f"U.objects.create_superuser('{username}', '{username}@example.com', '{OPERATOR_PASSWORD}')"
    )
    await asyncio.to_thread(server.manage, "shell", "-c", create)
    login = f"{server.url}/admin/login/?next=/admin/dashboard/"
    browser, page, _ = await open_page(playwright, tmp_path, tone, login, DESKTOP)
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/admin/dashboard/")
    await page.wait_for_function("document.getElementById('feed').textContent === 'Live.'")
    return browser, page


async def my_status_is(page: Any, text: str) -> None:
    await page.wait_for_function(
        "(text) => document.getElementById('my-status').textContent.includes(text)", arg=text
    )


async def call_state(server: Server, token: str, call_id: str) -> dict[str, Any]:
    """The call as `GET /api/calls/{id}` shows it to `token`."""
    _, call, _ = await asyncio.to_thread(server.request, "GET", f"/api/calls/{call_id}", token)
    return call
