"""Attended transfer from the dashboards, in real chromium: op talks with Ada, consults bo
("Consult first"): Ada's page says she is on hold, bo's dashboard rings with the
consult; bo answers, then hangs up on it (op and Ada talk again); op consults bo again:
op and bo hear each other, Ada hears neither; op completes: Ada and bo talk, op's call
ended. The screenshots of docs/pages.md come from here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.live_server import Server
from tests.test_browser_pages import (
    USER_TONE,
    end_user_link,
    heard,
    mostly,
    my_status_is,
    open_page,
    operator_dashboard,
    playwright,
    readings_of,
    screenshot,
    status_is,
)

pytestmark = [pytest.mark.browser, pytest.mark.daphne, pytest.mark.timeout(180)]
__all__ = ["playwright"]  # the fixture, used by name

OPERATOR_TONE, BO_TONE = 880, 1320


async def hears(page: Any, tone: int, tries: int = 6) -> None:
    """`page` comes to hear mostly `tone` (a connection that was just answered takes a
    moment to carry audio: tried a few times, each a full reading)."""
    readings: list[float] = []
    for _ in range(tries):
        readings = await heard(page)
        if mostly(readings, tone):
            return
    raise AssertionError(f"expected {tone} Hz, heard {readings[:5]}…")


async def consult(op: Any, bo: Any, page: Any) -> None:
    """Op consults bo; bo answers the consult ringing on his dashboard."""
    await op.get_by_label("Transfer to").select_option("operator:bo")
    await op.get_by_role("button", name="Consult first").click()
    await my_status_is(op, "to consult; Ada is on hold.")
    await status_is(page, "On hold.")
    offered = bo.locator("#ringing li[data-consult]", has_text="wants to consult you")
    await offered.wait_for()
    assert await op.get_by_role("button", name="Complete transfer").is_disabled()
    await offered.get_by_role("button", name="Answer").click()


async def test_it_consults_and_completes_from_the_dashboards(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    url, _ = await end_user_link(server)
    op_browser, op = await operator_dashboard(server, playwright, tmp_path)
    bo_browser, bo = await operator_dashboard(server, playwright, tmp_path, "bo", BO_TONE)
    user_browser, page, errors = await open_page(playwright, tmp_path, USER_TONE, url)
    try:
        await bo.locator('[data-availability="available"]').click()
        await status_is(page, "Ready.")
        await page.get_by_role("button", name="Call", exact=True).click()
        await (
            op.locator("#ringing li", has_text="Ada is calling")
            .get_by_role("button", name="Answer")
            .click()
        )
        await my_status_is(op, "Talking with Ada.")

        # Consult: Ada is held; bo's dashboard rings with the consult. Bo answers, then
        # hangs up on it: op and Ada talk again.
        await consult(op, bo, page)
        await my_status_is(bo, "op is consulting you about Ada")
        await bo.locator("#my-hangup").click()
        await my_status_is(bo, "Call ended (the consult ended).")
        await my_status_is(op, "Talking with Ada.")
        await status_is(page, "Connected.")
        await hears(page, OPERATOR_TONE)

        # Consult again.
        await consult(op, bo, page)

        # Answered: op and bo hear each other; Ada hears neither.
        await my_status_is(op, "Consulting bo: you hear each other")
        await my_status_is(bo, "op is consulting you about Ada")
        for hidden in ("#my-hold", "#my-transfer", "#my-consulting", "#my-record"):
            assert await bo.locator(hidden).is_hidden(), hidden
        assert await op.locator("#my-hold").is_hidden()  # no Resume: complete or cancel
        await hears(op, BO_TONE)
        await hears(bo, OPERATOR_TONE)
        ada_hears = await heard(page)
        assert readings_of(ada_hears, OPERATOR_TONE) == readings_of(ada_hears, BO_TONE) == 0
        await op.locator("#active li .badge.consulting", has_text="consulting bo").wait_for()
        await screenshot(op, "dashboard-consult")
        await screenshot(bo, "dashboard-consulted")

        # Complete: bo takes Ada, op's call ends.
        await op.get_by_role("button", name="Complete transfer").click()
        await my_status_is(op, "Call ended (you transferred it).")
        await status_is(page, "Connected.")
        await my_status_is(bo, "Talking with Ada.")
        await hears(page, BO_TONE)
        await hears(bo, USER_TONE)
        await page.get_by_role("button", name="Hang up").click()
        await my_status_is(bo, "Call ended (hung up)")
        assert errors == []
    finally:
        for browser in (user_browser, bo_browser, op_browser):
            await browser.close()
