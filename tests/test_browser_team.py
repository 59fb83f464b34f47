"""The team dashboard in real chromium: availability, queues, offers, notifications."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import launch, require_browser_environment, write_tone_wav
from tests.support.live_server import Server

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "var" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.daphne]

PASSWORD = "team-test-pw-1"
DESKTOP = {"width": 1280, "height": 800}

# Headless chromium keeps every page "visible" (another page brought to front, a minimized
# window: neither hides it), so a test puts the dashboard in the background by overriding
# what the page reads (`document.visibilityState`, `document.hidden`) and firing the
# `visibilitychange` a browser would. And it records every Notification the page makes.
BACKGROUND_AND_NOTIFICATIONS = """
(() => {
  let hidden = false;
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true, get() { return hidden ? "hidden" : "visible"; }});
  Object.defineProperty(Document.prototype, "hidden", {
    configurable: true, get() { return hidden; }});
  window.__setHidden = (value) => {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
  window.__notifications = [];
  window.__closed = [];
  const Real = window.Notification;
  if (Real) {
    window.Notification = class extends Real {
      constructor(title, options) {
        window.__notifications.push({title, body: options && options.body});
        super(title, options);
      }
      close() {
        window.__closed.push(this.title);
        super.close();
      }
    };
  }
})();
"""


@pytest.fixture
async def playwright() -> AsyncIterator[Any]:
    require_browser_environment()
    from playwright.async_api import async_playwright

    async with async_playwright() as running:
        yield running


def setup_team(server: Server, queue: str, ring_timeout_s: int) -> str:
    """Two operators, op and ann (made once per server), a round-robin queue they both
    answer, and two disposition codes; an API token's secret, returned (made in the same
    `manage.py shell`: each Django start is seconds on a loaded machine)."""
    script = (
        "from django.contrib.auth import get_user_model; from calls.models import Queue; "
        "U = get_user_model(); "
        f"op = U.objects.filter(username='op').first() or U.objects.create_superuser("
        f"'op', 'op@example.com', '{PASSWORD}'); "
        f"ann = U.objects.filter(username='ann').first() or U.objects.create_superuser("
        f"'ann', 'ann@example.com', '{PASSWORD}', first_name='Ann', last_name='Supervisor'); "
        f"q = Queue.objects.create(name='{queue.title()}', public_id='{queue}', "
        f"strategy='round_robin', ring_timeout_s={ring_timeout_s}, max_wait_s=900); "
        "q.members.add(op, ann); "
        # The codes operators pick from (tests/test_browser_team's notes step).
        "from calls.models import DispositionCode as D; "
        "D.objects.get_or_create(code='callback', defaults={'label': 'Call back'}); "
        "D.objects.get_or_create(code='resolved', defaults={'label': 'Resolved'}); "
        "from django.core.management import call_command; "
        "call_command('createapitoken', 'team', quiet=True)"
    )
    return server.manage("shell", "-c", script).strip().splitlines()[-1]


async def call_queue(server: Server, token: str, name: str, queue: str) -> dict[str, Any]:
    _, session, _ = await asyncio.to_thread(
        server.request, "POST", "/api/sessions", token, {"displayName": name}
    )
    _, call, _ = await asyncio.to_thread(
        server.request, "POST", "/api/calls", session["sessionToken"], {"queue": queue}
    )
    return call


async def dashboard(server: Server, browser: Any, username: str) -> Any:
    context = await browser.new_context(viewport=DESKTOP)
    await context.grant_permissions(["notifications"], origin=server.url)
    await context.add_init_script(BACKGROUND_AND_NOTIFICATIONS)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    await page.goto(f"{server.url}/admin/login/?next=/admin/dashboard/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/admin/dashboard/")
    await page.wait_for_function("document.getElementById('feed').textContent === 'Live.'")
    return page


async def availability_of(server: Server, token: str, username: str) -> tuple[str, str]:
    _, operators, _ = await asyncio.to_thread(server.request, "GET", "/api/operators", token)
    (row,) = [o for o in operators if o["operator"] == username]
    return row["availability"], row["activity"]


async def test_it_rings_only_the_offered_operator_and_notifies_it_in_the_background(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    token = await asyncio.to_thread(setup_team, server, "sales", 600)
    browser = await launch(playwright, write_tone_wav(tmp_path / "880.wav", 880))
    try:
        op = await dashboard(server, browser, "op")
        ann = await dashboard(server, browser, "ann")

        # Both set themselves available from their dashboards: server state, not the page's.
        for page in (op, ann):
            await page.get_by_role("button", name="Available", exact=True).click()
            await (
                page.get_by_role("button", name="Available", exact=True)
                .and_(page.locator("[aria-pressed=true]"))
                .wait_for()
            )
            await page.locator("#announce", has_text="You are now available.").wait_for()
        assert await availability_of(server, token, "op") == ("available", "idle")
        assert await availability_of(server, token, "ann") == ("available", "idle")
        await op.reload()  # it survives a reload: the server says so
        await op.wait_for_function("document.getElementById('feed').textContent === 'Live.'")
        # "Live." is the socket opening; the snapshot that says so comes just after it.
        await op.locator("[data-availability=available][aria-pressed=true]").wait_for()
        await op.locator("#my-activity", has_text="You are available, idle.").wait_for()

        await op.evaluate("window.__setHidden(true)")  # op looks at another tab
        call = await call_queue(server, token, "Ada", "sales")

        # Round robin, nobody offered yet: the lower id first, op. Only op may answer.
        ringing = op.locator("#ringing li", has_text="Ada is calling")
        await ringing.get_by_role("button", name="Answer").wait_for()
        await ringing.filter(has_text="answer within").wait_for()
        await op.wait_for_function("window.__notifications.length > 0")
        assert await op.evaluate("window.__notifications") == [
            {"title": "Ada is calling", "body": "Waiting in Sales"}
        ]
        await op.wait_for_function("document.title.startsWith('☎ Ada is calling')")
        await screenshot(op, "dashboard-offered")

        seen = ann.locator("#ringing li", has_text="Ada is calling")
        await seen.filter(has_text="ringing op").wait_for()
        assert await seen.get_by_role("button").count() == 0
        queue = ann.get_by_role("region", name="Queue Sales")
        await queue.locator("li", has_text="Ada").first.wait_for()
        assert "1 waiting" in await queue.locator("h3").text_content()
        assert await ann.evaluate("window.__notifications") == []  # not hers to answer
        # The supervisor's view follows op's activity from the feed: ringing, not free.
        await ann.locator("#team li", has_text="op").locator(".badge.ringing").wait_for()
        await queue.locator("h3", has_text="1 of 2 free").wait_for()
        await screenshot(ann, "dashboard-team")

        # Back to the tab: the title stops flashing; Answer connects op to Ada.
        await op.evaluate("window.__setHidden(false)")
        await op.wait_for_function("!document.title.startsWith('☎')")
        await ringing.get_by_role("button", name="Answer").click()
        await op.locator("#active li", has_text="Ada ↔ op").wait_for()
        _, answered, _ = await asyncio.to_thread(
            server.request, "GET", f"/api/calls/{call['callID']}", token
        )
        assert answered["state"] == "active"
        assert "operator" in [leg["role"] for leg in answered["legs"]]
        await op.locator("#my-activity", has_text="You are available, in a call.").wait_for()
        await write_notes_in_the_call_and_its_wrap_up(server, op, token, call["callID"])
        assert op.errors == [] and ann.errors == []
    finally:
        await browser.close()


async def write_notes_in_the_call_and_its_wrap_up(
    server: Server, op: Any, token: str, call_id: str
) -> None:
    """Issue 16 item 4 on the dashboard: the notes box opens with op's call, saves, stays
    for the wrap-up after the call ends, and says so when a save fails (keeping the text)."""
    box = op.locator("#wrapup")
    await box.locator("#wrapup-state", has_text="Nothing saved yet.").wait_for()
    await box.get_by_label("Disposition").select_option("callback")
    await box.get_by_label("Notes").fill("Wants a refund")
    await box.locator("#wrapup-state", has_text="Not saved yet.").wait_for()
    await box.get_by_role("button", name="Save notes").click()
    await box.locator("#wrapup-state", has_text="Saved at").wait_for()

    await asyncio.to_thread(server.request, "POST", f"/api/calls/{call_id}/hangup", token)
    await box.locator("#wrapup-for", has_text="wrap-up").wait_for()
    # op is a superuser, so a supervisor: no deadline is shown (an operator sees "You can
    # change them until …", from the server's editableUntil).
    await box.locator("#wrapup-state", has_text="Saved at").wait_for()
    await box.get_by_label("Disposition").select_option("resolved")
    await box.get_by_label("Notes").fill("Wants a refund. Refunded.")
    await asyncio.to_thread(
        server.manage,
        "shell",
        "-c",
        "from calls.models import DispositionCode as D; "
        "D.objects.filter(code='resolved').update(active=False)",
    )
    await box.get_by_role("button", name="Save notes").click()
    failed = box.locator("#wrapup-state[data-state=failed]")
    await failed.filter(has_text="Not saved: code: 'resolved' is no longer in use").wait_for()
    assert await box.get_by_label("Notes").input_value() == "Wants a refund. Refunded."
    await screenshot(op, "dashboard-wrapup")
    # Ann, a supervisor, saves meanwhile: op's next save is refused (no lost update), says
    # who, keeps op's text; saving again replaces Ann's on purpose.
    await asyncio.to_thread(
        server.manage,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from calls import notes; "
        "from calls.models import Call; from calls.principals import Principal; "
        "ann = Principal.staff(get_user_model().objects.get(username='ann')); "
        f"notes.save(ann, Call.objects.get(pk='{call_id}'), notes='Checked by Ann')",
    )
    await box.get_by_label("Disposition").select_option("callback")
    await box.get_by_role("button", name="Save notes").click()
    await failed.filter(has_text="operator ann changed them meanwhile").wait_for()
    assert await box.get_by_label("Notes").input_value() == "Wants a refund. Refunded."
    await box.get_by_role("button", name="Save notes").click()
    await box.locator("#wrapup-state[data-state=saved]").wait_for()
    _, saved, _ = await asyncio.to_thread(
        server.request, "GET", f"/api/calls/{call_id}/disposition", token
    )
    assert (saved["disposition"]["code"], saved["notes"], saved["revision"]) == (
        "callback",
        "Wants a refund. Refunded.",
        3,
    )
    assert [h["by"] for h in saved["history"]] == ["operator op", "operator ann", "operator op"]
    recent = op.locator("#recent li", has_text="Ada")
    await recent.filter(has_text="callback").wait_for()


async def test_it_stops_alerting_when_the_offer_rings_out_and_rings_the_next_operator(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    token = await asyncio.to_thread(setup_team, server, "support", 600)
    browser = await launch(playwright, write_tone_wav(tmp_path / "880.wav", 880))
    try:
        op = await dashboard(server, browser, "op")
        ann = await dashboard(server, browser, "ann")
        for page in (op, ann):  # from the keyboard: the buttons are buttons
            await page.get_by_role("button", name="Away", exact=True).focus()
            await page.keyboard.press("Enter")
            await page.locator("#my-activity", has_text="You are away").wait_for()
            await page.get_by_role("button", name="Available", exact=True).focus()
            await page.keyboard.press("Space")
            await page.locator("#my-activity", has_text="You are available").wait_for()
        assert (await availability_of(server, token, "op"))[0] == "available"

        # Round robin: ann was offered a call last, so op rings first.
        recently = (
            "from django.utils import timezone; from calls.models import OperatorStatus; "
            "OperatorStatus.objects.filter(user__username='ann')"
            ".update(last_offered_at=timezone.now())"
        )
        await asyncio.to_thread(server.manage, "shell", "-c", recently)
        await op.evaluate("window.__setHidden(true)")
        call = await call_queue(server, token, "Bo", "support")
        await op.wait_for_function("document.title.startsWith('☎ Bo is calling')")
        # op lets it ring out: the alerts stop, and the call rings ann, who may answer.
        await ring_out(server, token, "op")
        await op.locator("#announce", has_text="You missed Bo's call.").wait_for()
        await op.wait_for_function("!document.title.startsWith('☎')")
        assert await op.evaluate("window.__closed") == ["Bo is calling"]
        offered = ann.locator("#ringing li", has_text="Bo is calling")
        await offered.get_by_role("button", name="Answer").wait_for()
        assert await ann.evaluate("window.__notifications") == []  # her tab is in front
        seen = op.locator("#ringing li", has_text="Bo is calling")
        await seen.filter(has_text="ringing Ann Supervisor").wait_for()
        assert await seen.get_by_role("button").count() == 0
        await asyncio.to_thread(
            server.request, "POST", f"/api/calls/{call['callID']}/hangup", token
        )
        await op.locator("#recent li", has_text="Bo").wait_for()
        assert op.errors == [] and ann.errors == []
    finally:
        await browser.close()


async def ring_out(server: Server, token: str, username: str) -> None:
    """The operator's pending offer rings out now, not in the queue's ring timeout (which
    is long: the next operator's offer must not ring out while the test looks at it)."""
    due = (
        "from django.utils import timezone; from calls.models import QueueOffer; "
        f"QueueOffer.objects.filter(operator__username='{username}', outcome='pending')"
        ".update(deadline=timezone.now())"
    )
    await asyncio.to_thread(server.manage, "shell", "-c", due)
    # The server's deadlines service sleeps until the deadline it knew; any call event in
    # its process wakes it: an end user's microphone test, started and ended.
    _, session, _ = await asyncio.to_thread(
        server.request, "POST", "/api/sessions", token, {"displayName": "Waker"}
    )
    status, echo, _ = await asyncio.to_thread(
        server.request, "POST", "/api/calls", session["sessionToken"], {"mode": "echo"}
    )
    assert status == 201, echo
    status, _, _ = await asyncio.to_thread(
        server.request, "POST", f"/api/calls/{echo['callID']}/hangup", session["sessionToken"]
    )
    assert status == 200


async def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
