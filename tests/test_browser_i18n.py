"""The end-user page in two shipped languages, in real chromium: in each state of a real
call (ready after its preflight, calling, connected, consent asked, ended) the page shows
no English text of the catalogues (docs/pages.md#languages); nor does the operators'
dashboard afterwards, with those calls in its lists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.catalogs import english_texts, po_entries
from tests.support.live_server import Server, running_server
from tests.support.pages import (
    USER_TONE,
    end_user_link,
    my_status_is,
    open_page,
    operator_dashboard,
)

pytestmark = [pytest.mark.browser, pytest.mark.daphne]

# What a person perceives: the rendered text, the title, and the names and descriptions
# assistive technology reads out (of elements that are shown) — less the texts an admin or
# integrator entered (consent and voicemail notices, branding), shown as entered, and the
# admin's sidebar of model names around the dashboard (Django admin's, not the dashboard's).
RENDERED_TEXT = """() => {
  const shown = (element) => element.getClientRects().length > 0;
  let text = document.body.innerText;
  for (const id of ["consent-text", "voicemail-text", "welcome", "waiting", "nav-sidebar"]) {
    const element = document.getElementById(id);
    if (element && element.innerText) text = text.replace(element.innerText, "");
  }
  const parts = [document.title, text];
  for (const element of document.querySelectorAll("[aria-label], [title], [alt], [placeholder]")) {
    if (!shown(element)) continue;
    for (const name of ["aria-label", "title", "alt", "placeholder"]) {
      if (element.hasAttribute(name)) parts.push(element.getAttribute(name));
    }
  }
  return parts.join("\\n");
}"""
PLACEHOLDER = re.compile(r"%\(\w+\)s|%s")


def english_patterns(language: str) -> dict[str, re.Pattern[str]]:
    """A pattern for each English text that `language` translates differently (a text the
    translation keeps, such as "Logo", is no failure)."""
    same = {
        msgid
        for domain in ("django", "djangojs")
        for msgid, (msgstr, _) in po_entries(language, domain).items()
        if msgstr == msgid
    }
    patterns = {}
    for msgid in english_texts() - same:
        text = re.sub(r"<[^>]+>", "", msgid).replace("%%", "%")
        body = ".+?".join(re.escape(part) for part in PLACEHOLDER.split(text))
        start = r"\b" if text[:1].isalnum() else ""
        end = r"\b" if text[-1:].isalnum() else ""
        patterns[msgid] = re.compile(start + body + end)
    return patterns


async def untranslated(page: Any, patterns: dict[str, re.Pattern[str]]) -> list[str]:
    text = await page.evaluate(RENDERED_TEXT)
    return sorted(msgid for msgid, pattern in patterns.items() if pattern.search(text))


async def state_is(page: Any, state: str) -> None:
    await page.wait_for_function("(state) => document.body.dataset.state === state", arg=state)


@pytest.fixture(scope="module")
def checking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Pages check microphone and connection first: the ready state shows the result."""
    with running_server(
        tmp_path_factory.mktemp("callbridge-i18n"), CALLBRIDGE_PREFLIGHT="before_call"
    ) as running:
        yield running


async def test_it_shows_no_english_text_in_any_state_of_a_call_in_german_and_spanish(
    checking_server: Server, playwright: Any, tmp_path: Path
) -> None:
    server = checking_server
    operator_browser, dashboard = await operator_dashboard(server, playwright, tmp_path)
    try:
        for language, name, connected in (
            ("de", "Anna", "Verbunden."),
            ("es", "Ana", "Conectado."),
        ):
            patterns = english_patterns(language)
            url, _ = await end_user_link(server, name)
            browser, page, errors = await open_page(
                playwright, tmp_path, USER_TONE, f"{url}&lang={language}"
            )
            seen: dict[str, list[str]] = {}
            try:
                assert await page.get_attribute("html", "lang") == language
                await state_is(page, "idle")  # its preflight ran: the result is shown
                await page.locator("#preflight h2").wait_for()
                seen["ready"] = await untranslated(page, patterns)

                await page.locator("#call").click()
                await state_is(page, "calling")
                seen["calling"] = await untranslated(page, patterns)
                ringing = dashboard.locator("#ringing li", has_text=f"{name} is calling")
                await ringing.get_by_role("button", name="Answer").click()
                await state_is(page, "connected")
                assert await page.text_content("#status") == connected
                seen["connected"] = await untranslated(page, patterns)

                await my_status_is(dashboard, f"Talking with {name}.")
                await dashboard.get_by_role("button", name="Give my consent to be recorded").click()
                await dashboard.get_by_role("button", name="Record", exact=True).click()
                await page.locator("#consent").wait_for()
                seen["consent asked"] = await untranslated(page, patterns)
                await page.locator("#consent-no").click()
                await page.wait_for_function("document.getElementById('note').textContent !== ''")
                seen["consent refused"] = await untranslated(page, patterns)

                await page.locator("#hangup").click()
                await state_is(page, "ended")
                seen["ended"] = await untranslated(page, patterns)
                assert errors == []
            finally:
                await browser.close()
            assert seen == {state: [] for state in seen}, f"English on the {language} page"
            assert len(seen) == 6
        # The operator's dashboard in either language, its recent calls listing both calls.
        for language, live in (("de", "Live."), ("es", "En directo.")):
            await dashboard.goto(f"{server.url}/admin/dashboard/?lang={language}")
            await dashboard.wait_for_function(
                "(live) => document.getElementById('feed').textContent === live", arg=live
            )
            await dashboard.locator("#recent li").nth(1).wait_for()
            assert await dashboard.get_attribute("html", "lang") == language
            found = await untranslated(dashboard, english_patterns(language))
            assert found == [], language
    finally:
        await operator_browser.close()
