"""Accessibility of both pages in real chromium: axe-core (the npm package's local copy,
tests/js) finds no serious or critical violation in any state of a real call — the end-user
page ready, calling, connected, asked for consent and ended; the dashboard ringing and in
the call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.live_server import Server
from tests.support.pages import (
    USER_TONE,
    end_user_link,
    my_status_is,
    open_page,
    operator_dashboard,
)

pytestmark = [pytest.mark.browser, pytest.mark.daphne]

AXE = Path(__file__).resolve().parent / "js" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = """async () => {
  const {violations} = await axe.run(document, {resultTypes: ["violations"]});
  return violations.filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}"""


async def serious_violations(page: Any) -> list[str]:
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    violations: list[str] = await page.evaluate(SERIOUS)
    return violations


async def state_is(page: Any, state: str) -> None:
    await page.wait_for_function("(state) => document.body.dataset.state === state", arg=state)


async def test_it_has_no_serious_accessibility_violation_in_any_state(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    assert AXE.exists(), "npm ci --prefix tests/js (make test does it)"
    url, _ = await end_user_link(server, "Ada")
    operator_browser, dashboard = await operator_dashboard(server, playwright, tmp_path)
    browser, page, errors = await open_page(playwright, tmp_path, USER_TONE, url)
    found: dict[str, list[str]] = {}
    try:
        await state_is(page, "idle")
        found["page ready"] = await serious_violations(page)
        found["dashboard idle"] = await serious_violations(dashboard)
        await page.locator("#call").click()
        await state_is(page, "calling")
        found["page calling"] = await serious_violations(page)
        ringing = dashboard.locator("#ringing li", has_text="Ada is calling")
        await ringing.wait_for()
        found["dashboard ringing"] = await serious_violations(dashboard)
        await ringing.get_by_role("button", name="Answer").click()
        await state_is(page, "connected")
        await my_status_is(dashboard, "Talking with Ada.")
        found["page connected"] = await serious_violations(page)
        found["dashboard in call"] = await serious_violations(dashboard)
        await dashboard.get_by_role("button", name="Give my consent to be recorded").click()
        await dashboard.get_by_role("button", name="Record", exact=True).click()
        await page.locator("#consent").wait_for()
        found["page consent asked"] = await serious_violations(page)
        await page.locator("#hangup").click()
        await state_is(page, "ended")
        found["page ended"] = await serious_violations(page)
        assert errors == []
    finally:
        await browser.close()
        await operator_browser.close()
    assert found == {state: [] for state in found}


async def press_on(page: Any, element_id: str, key: str | None) -> None:
    """Tab (forward only) until `element_id` has the focus, then press `key` on it."""
    for _ in range(80):
        if await page.evaluate("(id) => document.activeElement?.id === id", element_id):
            if key:
                await page.keyboard.press(key)
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} never took the focus by Tab")


async def test_it_makes_a_whole_call_by_keyboard_alone(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    """The caller calls (Enter), the operator answers (Enter on Answer), the caller mutes
    and unmutes (Space) and hangs up (Enter): Tab, Enter and Space only, no pointer."""
    url, _ = await end_user_link(server, "Kim")
    operator_browser, dashboard = await operator_dashboard(server, playwright, tmp_path)
    browser, page, errors = await open_page(playwright, tmp_path, USER_TONE, url)
    try:
        # The operator waits on the last control before the ringing list (the test's ring
        # timeout is short): the next Tab is the ringing call's Answer.
        await press_on(dashboard, "microphone", None)
        await state_is(page, "idle")
        await press_on(page, "call", "Enter")
        await state_is(page, "calling")
        ringing = dashboard.locator("#ringing li", has_text="Kim is calling")
        await ringing.wait_for()
        await dashboard.keyboard.press("Tab")
        await dashboard.keyboard.press("Enter")
        await state_is(page, "connected")
        await my_status_is(dashboard, "Talking with Kim.")
        await press_on(page, "mute", " ")
        assert await page.get_attribute("#mute", "aria-pressed") == "true"
        await page.keyboard.press(" ")
        assert await page.get_attribute("#mute", "aria-pressed") == "false"
        await press_on(page, "hangup", "Enter")
        await state_is(page, "ended")
        await my_status_is(dashboard, "Call ended")
        assert errors == []
    finally:
        await browser.close()
        await operator_browser.close()
