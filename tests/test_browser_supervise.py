"""Supervisor modes in real chromium: an end user's page, the operator's dashboard and a
supervisor's dashboard, each with its own tone; who hears whom by spectrum, the buttons
only where they apply, the end user's page told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (
    LEVELS_OF_AUDIO_ELEMENT,
    launch,
    require_browser_environment,
    write_tone_wav,
)
from tests.support.live_server import Server

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "var" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.daphne]

USER_TONE, OPERATOR_TONE, SUPERVISOR_TONE = 440, 880, 1250
TONES = (USER_TONE, OPERATOR_TONE, SUPERVISOR_TONE)
PASSWORD = "supervise-test-pw-1"
PHONE = {"width": 390, "height": 760}
DESKTOP = {"width": 1280, "height": 900}
# Tone measurements need the browser's voice processing off (it squashes steady tones).
NO_PROCESSING = "try { localStorage.setItem('callbridge.audioProcessing', 'off'); } catch (e) {}"
HEARD_WITHIN_DB = 20  # a tone heard is within this of the loudest one
UNHEARD_BELOW_DB = 35  # a tone not heard is at least this far under it


@pytest.fixture
async def playwright() -> AsyncIterator[Any]:
    require_browser_environment()
    from playwright.async_api import async_playwright

    async with async_playwright() as running:
        yield running


async def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def open_page(playwright: Any, tmp_path: Path, tone: int, url: str, viewport: Any) -> Any:
    browser = await launch(playwright, write_tone_wav(tmp_path / f"{tone}.wav", tone))
    context = await browser.new_context(viewport=viewport)
    await context.add_init_script(NO_PROCESSING)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    await page.goto(url)
    return browser, page


async def dashboard(server: Server, playwright: Any, tmp_path: Path, who: str, tone: int) -> Any:
    login = f"{server.url}/admin/login/?next=/admin/dashboard/"
    browser, page = await open_page(playwright, tmp_path, tone, login, DESKTOP)
    await page.get_by_label("Username").fill(who)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/admin/dashboard/")
    await page.wait_for_function("document.getElementById('feed').textContent === 'Live.'")
    return browser, page


async def ear_hears(page: Any, selector: str, heard: tuple[int, ...]) -> None:
    """What `selector` plays: the `heard` tones, none of the others (tried for a while:
    a mode change takes a moment to reach the ear)."""
    levels: list[float] = []
    for _ in range(6):
        levels = await page.evaluate(
            LEVELS_OF_AUDIO_ELEMENT, {"selector": selector, "tones": list(TONES)}
        )
        loudest = max(levels)
        ok = loudest > -70 and all(
            (level > loudest - HEARD_WITHIN_DB)
            if tone in heard
            else (level < loudest - UNHEARD_BELOW_DB)
            for tone, level in zip(TONES, levels, strict=True)
        )
        if ok:
            return
    raise AssertionError(
        f"{selector} should hear {heard}; levels {dict(zip(TONES, levels, strict=True))}"
    )


async def supervisor_hears_both_apart(page: Any) -> None:
    """The supervisor's dashboard plays the caller and the operator on two tracks apart."""
    await ear_hears(page, "#supervisor-audio", (USER_TONE,))
    await ear_hears(page, "#supervisor-audio-operator", (OPERATOR_TONE,))


async def test_it_lets_a_supervisor_monitor_and_barge_from_the_dashboard(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    create = (
        "from django.contrib.auth import get_user_model; U = get_user_model(); "
        f"U.objects.filter(username='op').exists() or "
        f"U.objects.create_superuser('op', 'op@example.com', '{PASSWORD}'); "
        "from calls.operators import operators_group; "
        f"ann = U.objects.filter(username='ann').first() or U.objects.create_user("
        f"'ann', 'ann@example.com', '{PASSWORD}', is_staff=True); "
        "from calls.supervision import supervisors_group; "
        "ann.groups.add(operators_group(), supervisors_group())"
    )
    await asyncio.to_thread(server.manage, "shell", "-c", create)
    token = (await asyncio.to_thread(server.manage, "createapitoken", "sv", "--quiet")).strip()
    _, session, _ = await asyncio.to_thread(
        server.request, "POST", "/api/sessions", token, {"displayName": "Ada"}
    )
    browsers = []
    try:
        user_browser, page = await open_page(playwright, tmp_path, USER_TONE, session["url"], PHONE)
        op_browser, op = await dashboard(server, playwright, tmp_path, "op", OPERATOR_TONE)
        ann_browser, ann = await dashboard(server, playwright, tmp_path, "ann", SUPERVISOR_TONE)
        browsers = [user_browser, op_browser, ann_browser]
        await page.wait_for_function("document.getElementById('status').textContent === 'Ready.'")
        await page.get_by_role("button", name="Call", exact=True).click()
        await (
            op.locator("#ringing li", has_text="Ada is calling")
            .get_by_role("button", name="Answer")
            .click()
        )
        row = ann.locator("#active li", has_text="Ada ↔ op")
        await row.wait_for()
        # The operator's own call has no supervisor buttons (op may supervise: superuser).
        await op.locator("#active li", has_text="Ada ↔ op").wait_for()
        assert await op.locator("#active li [data-supervise]").count() == 0

        await row.get_by_role("button", name="Monitor").click()
        await row.locator("[data-supervise=monitor][aria-pressed=true]").wait_for()
        await row.locator(".badge.supervised", has_text="monitor").wait_for()
        await page.locator("#supervisor", has_text="is listening").wait_for()
        await asyncio.gather(  # the three browsers listen at once
            supervisor_hears_both_apart(ann),
            ear_hears(page, "#remote", (OPERATOR_TONE,)),
            ear_hears(op, "#remote", (USER_TONE,)),
        )

        await row.get_by_role("button", name="Barge").click()
        await row.locator("[data-supervise=barge][aria-pressed=true]").wait_for()
        await page.locator("#supervisor", has_text="hear each other").wait_for()
        await asyncio.gather(
            ear_hears(page, "#remote", (OPERATOR_TONE, SUPERVISOR_TONE)),
            ear_hears(op, "#remote", (USER_TONE, SUPERVISOR_TONE)),
            supervisor_hears_both_apart(ann),
        )
        await screenshot(ann, "dashboard-barge")
        await screenshot(page, "enduser-supervisor")

        await row.get_by_role("button", name="Leave").click()
        await page.locator("#supervisor").wait_for(state="hidden")
        await row.locator(".badge.supervised").wait_for(state="detached")
        await asyncio.gather(
            ear_hears(page, "#remote", (OPERATOR_TONE,)), ear_hears(op, "#remote", (USER_TONE,))
        )
        await page.get_by_role("button", name="Hang up").click()
        await op.locator("#recent li", has_text="Ada").first.wait_for()
        assert page.errors == [] and op.errors == [] and ann.errors == []
    finally:
        for browser in browsers:
            await browser.close()
