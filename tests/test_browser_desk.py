"""The service desk in real chromium: queues, callbacks, voicemail, transfers and consults,
and a PolyAI client's call, as callers and operators live them (split from
test_browser_pages.py so the two files run in parallel)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.live_server import Server
from tests.support.media_peers import ClientPeer
from tests.support.pages import (
    OPERATOR_TONE,
    USER_TONE,
    call_state,
    each_mostly_hears,
    end_user_link,
    heard,
    make_queue,
    mostly,
    my_status_is,
    open_page,
    operator_dashboard,
    readings_of,
    screenshot,
    status_is,
)
from tests.support.real_socket import RealSocket

pytestmark = [pytest.mark.browser, pytest.mark.daphne]


async def test_it_transfers_a_caller_from_one_dashboard_to_another(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    """Blind transfer as operators do it: op talks with Ada, picks Bo in "Transfer to";
    Ada's page says "Transferring you…", Bo's dashboard rings with Answer, Bo answers and
    Ada hears Bo, not op; op's call ended into wrap-up."""
    bo_tone = 1320
    url, token = await end_user_link(server)
    op_browser, dashboard = await operator_dashboard(server, playwright, tmp_path)
    bo_browser, bo = await operator_dashboard(server, playwright, tmp_path, "bo", bo_tone)
    user_browser, page, errors = await open_page(playwright, tmp_path, USER_TONE, url)
    try:
        await bo.locator('[data-availability="available"]').click()
        await status_is(page, "Ready.")
        await page.get_by_role("button", name="Call", exact=True).click()
        ringing = dashboard.locator("#ringing li", has_text="Ada is calling")
        await ringing.get_by_role("button", name="Answer").click()
        await status_is(page, "Connected.")
        await my_status_is(dashboard, "Talking with Ada.")

        await dashboard.get_by_label("Transfer to").select_option("operator:bo")
        await screenshot(dashboard, "dashboard-transfer")
        await dashboard.get_by_role("button", name="Transfer", exact=True).click()
        await my_status_is(dashboard, "Call ended (you transferred it).")
        await page.locator("#transferring").get_by_text("Transferring you").wait_for()
        await status_is(page, "Transferring you…")
        await screenshot(page, "enduser-transferring")
        offered = bo.locator("#ringing li", has_text="transferred to operator bo")
        await offered.wait_for()
        await screenshot(bo, "dashboard-transfer-ringing")
        await offered.get_by_role("button", name="Answer").click()

        await status_is(page, "Connected.")
        assert await page.locator("#transferring").is_hidden()
        await my_status_is(bo, "Talking with Ada.")
        await each_mostly_hears((page, bo_tone), (bo, USER_TONE))
        _, active, _ = await asyncio.to_thread(
            server.request, "GET", "/api/calls?state=active", token
        )
        (call,) = active
        assert [(leg["party"], leg["leftAt"] is None) for leg in call["legs"][1:]] == [
            ("operator op", False),
            ("operator bo", True),
        ]
        await page.get_by_role("button", name="Hang up").click()
        await my_status_is(bo, "Call ended (hung up)")
        assert errors == []
    finally:
        for browser in (user_browser, bo_browser, op_browser):
            await browser.close()


async def test_it_shows_a_polyai_clients_call_on_the_dashboard_which_answers_it(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    """Seed 004's offer over a real socket to the gateway path, from an aiortc client: the
    dashboard shows its numbers and callSid and answers it, each hears the other; the
    client's `close` ends it for the operator too."""
    _, token = await end_user_link(server, "Pia")
    _, session, _ = await asyncio.to_thread(
        server.request, "POST", "/api/sessions", token, {"displayName": "Pia"}
    )
    operator_browser, dashboard = await operator_dashboard(server, playwright, tmp_path)
    client = await RealSocket.open(server, path="/api/v1/webrtc/signal")
    peer = ClientPeer(USER_TONE)
    try:
        answer = await client.offer(
            session["sessionToken"],
            await peer.offer(),
            callSid="call-unique-id",
            caller="+14155551234",
            callee="+14155555678",
        )
        await peer.accept(answer["data"]["sdp"])
        ringing = dashboard.locator("#ringing li", has_text="Pia is calling")
        details = "from +14155551234 · to +14155555678 · callSid call-unique-id"
        await ringing.locator(".details", has_text=details).wait_for()
        await ringing.get_by_role("button", name="Answer").click()
        await my_status_is(dashboard, "Talking with Pia.")
        await dashboard.locator("#active li .details", has_text=details).wait_for()
        await peer.wait_connected()
        await peer.hears(OPERATOR_TONE)
        assert mostly(await heard(dashboard), USER_TONE)

        await client.send({"type": "close", "sessionId": answer["sessionId"]})
        await my_status_is(dashboard, "Call ended (hung up)")
        await dashboard.locator("#recent li .details", has_text=details).wait_for()
        call = await call_state(server, token, answer["callSid"])
        assert (call["state"], call["endReason"], call["externalId"]) == (
            "ended",
            "hangup",
            "call-unique-id",
        )
    finally:
        await peer.close()
        await client.close()
        await operator_browser.close()


async def test_it_tells_a_caller_in_a_queue_their_place_in_line(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    # A queue with no operator available: the caller waits, first in line.
    await make_queue(server, "billing", "Billing")
    url, _ = await end_user_link(server, "Cleo")
    user_browser, page, errors = await open_page(
        playwright, tmp_path, USER_TONE, f"{url}&queue=billing"
    )
    try:
        await status_is(page, "Ready.")
        await page.get_by_role("button", name="Call", exact=True).click()
        place = page.locator("#place")
        await place.get_by_text("you are number 1 in line for Billing").wait_for()
        assert await place.get_attribute("aria-live") == "polite"
        await screenshot(page, "enduser-waiting")
        await page.reload()  # the place is told again to the page's new socket
        await place.get_by_text("you are number 1 in line for Billing").wait_for()
        await page.get_by_role("button", name="Hang up").click()
        await status_is(page, "The call has ended.")
        assert await place.is_hidden()
        assert errors == []
    finally:
        await user_browser.close()


async def test_it_calls_back_a_caller_who_asked_while_waiting(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    # Nobody answers the help desk: the caller asks to be called back from the page; the
    # dashboard lists the request (and the missed call); Call back rings the same page.
    await make_queue(server, "helpdesk", "Help desk")
    url, token = await end_user_link(server, "Dee")
    user_browser, page, errors = await open_page(
        playwright, tmp_path, USER_TONE, f"{url}&queue=helpdesk"
    )
    operator_browser, dashboard = await operator_dashboard(server, playwright, tmp_path)
    try:
        await status_is(page, "Ready.")
        await page.get_by_role("button", name="Call", exact=True).click()
        offer = page.get_by_role("region", name="Call me back")
        await offer.get_by_label("Anything we should know? (optional)").fill("About invoice 42")
        await screenshot(page, "enduser-callback-offer")
        await offer.get_by_role("button", name="Call me back").click()
        await status_is(page, "We will call you back.")
        assert await offer.is_hidden()

        request = dashboard.locator("#callbacks li", has_text="Dee")
        await request.filter(has_text="About invoice 42").filter(has_text="Help desk").wait_for()
        await request.get_by_role("img", name="online").wait_for()
        await dashboard.locator("#missed li", has_text="asked for a callback").wait_for()
        await screenshot(dashboard, "dashboard-callbacks")
        await request.get_by_role("button", name="Call back").click()

        await page.get_by_role("region", name="Incoming call").wait_for()
        await page.get_by_role("button", name="Accept").click()
        await status_is(page, "Connected.")
        await my_status_is(dashboard, "Talking with Dee.")
        await request.wait_for(state="detached")  # done: answered
        assert mostly(await heard(page), OPERATOR_TONE)
        _, done, _ = await asyncio.to_thread(
            server.request, "GET", "/api/callbacks?state=done&queue=helpdesk", token
        )
        assert [(r["displayName"], r["note"], r["attempts"]) for r in done] == [
            ("Dee", "About invoice 42", 1)
        ]
        await page.get_by_role("button", name="Hang up").click()
        await my_status_is(dashboard, "Call ended")
        assert errors == []
    finally:
        await user_browser.close()
        await operator_browser.close()


async def test_it_lets_a_caller_leave_a_message_when_nobody_answers(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    # A queue nobody answers, overflowing to voicemail after a second.
    await make_queue(
        server, "after-hours", "After hours", max_wait_s=1, overflow="voicemail", voicemail_max_s=30
    )
    url, _ = await end_user_link(server, "Vic")
    operator_browser, dashboard = await operator_dashboard(server, playwright, tmp_path)
    user_browser, page, errors = await open_page(
        playwright, tmp_path, USER_TONE, f"{url}&queue=after-hours"
    )
    try:
        await status_is(page, "Ready.")
        await page.get_by_role("button", name="Call", exact=True).click()
        leave = page.get_by_role("button", name="Leave a message")
        await leave.wait_for()
        await status_is(page, "Nobody is free to take your call right now.")
        assert "Pressing" in await page.locator("#voicemail-text").text_content()
        assert await page.locator("#voicemail-choices").is_visible()
        assert await page.locator("#call").is_hidden()
        await screenshot(page, "enduser-voicemail")
        await leave.click()
        await page.get_by_text("Recording your message").wait_for()
        await asyncio.sleep(1.5)  # the caller speaks
        await page.get_by_role("button", name="Send").click()
        await status_is(page, "Thank you: your message was sent.")
        assert await page.locator("#voicemail").is_hidden()
        check = (
            "from calls.models import Recording;"
            "r = Recording.objects.get(kind='voicemail', call__queue__public_id='after-hours');"
            "print(r.state, r.call.end_reason, r.duration_s > 1)"
        )
        out = await asyncio.to_thread(server.manage, "shell", "-c", check)
        assert "finished voicemail True" in out, out
        # The operator's dashboard lists it (refreshed by the feed) and plays it through
        # the audited path.
        message = dashboard.locator("#voicemails li", has_text="Vic")
        await message.get_by_text("new").wait_for()
        assert "After hours" in await message.text_content()
        await screenshot(dashboard, "dashboard-voicemails")
        await message.locator("audio").evaluate("(audio) => audio.play()")
        await message.get_by_text("heard").wait_for()
        audited = (
            "from calls.models import RecordingAccess;"
            "print('listens', RecordingAccess.objects.filter("
            "recording__call__queue__public_id='after-hours', username='op').count())"
        )
        for _ in range(50):  # the stream's request is on its way
            listens = await asyncio.to_thread(server.manage, "shell", "-c", audited)
            if "listens 0" not in listens:
                break
            await asyncio.sleep(0.2)
        assert "listens 0" not in listens, listens
        assert errors == []
    finally:
        await user_browser.close()
        await operator_browser.close()


CONSULTED_TONE = 1320  # bo, consulted by op


async def comes_to_hear(page: Any, tone: int, tries: int = 6) -> None:
    """`page` comes to hear mostly `tone` (a connection that was just answered takes a
    moment to carry audio: tried a few times, each a full reading)."""
    readings: list[float] = []
    for _ in range(tries):
        readings = await heard(page)
        if mostly(readings, tone):
            return
    raise AssertionError(f"expected {tone} Hz, heard {readings[:5]}…")


async def consults_bo(op: Any, bo: Any, page: Any) -> None:
    """Op consults bo; bo answers the consult ringing on his dashboard."""
    await op.get_by_label("Transfer to").select_option("operator:bo")
    await op.get_by_role("button", name="Consult first").click()
    await my_status_is(op, "to consult; Ada is on hold.")
    await status_is(page, "On hold.")
    offered = bo.locator("#ringing li[data-consult]", has_text="wants to consult you")
    await offered.wait_for()
    assert await op.get_by_role("button", name="Complete transfer").is_disabled()
    await offered.get_by_role("button", name="Answer").click()


@pytest.mark.timeout(180)  # three browsers, two consults
async def test_it_consults_and_completes_from_the_dashboards(
    server: Server, playwright: Any, tmp_path: Path
) -> None:
    """Attended transfer from the dashboards: op talks with Ada, consults bo
    ("Consult first"): Ada's page says she is on hold, bo's dashboard rings with the
    consult; bo answers, then hangs up on it (op and Ada talk again); op consults bo again:
    op and bo hear each other, Ada hears neither; op completes: Ada and bo talk, op's call
    ended. The screenshots of docs/pages.md come from here."""
    url, _ = await end_user_link(server)
    op_browser, op = await operator_dashboard(server, playwright, tmp_path)
    bo_browser, bo = await operator_dashboard(server, playwright, tmp_path, "bo", CONSULTED_TONE)
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
        await consults_bo(op, bo, page)
        await my_status_is(bo, "op is consulting you about Ada")
        await bo.locator("#my-hangup").click()
        await my_status_is(bo, "Call ended (the consult ended).")
        await my_status_is(op, "Talking with Ada.")
        await status_is(page, "Connected.")
        await comes_to_hear(page, OPERATOR_TONE)

        # Consult again.
        await consults_bo(op, bo, page)

        # Answered: op and bo hear each other; Ada hears neither.
        await my_status_is(op, "Consulting bo: you hear each other")
        await my_status_is(bo, "op is consulting you about Ada")
        for hidden in ("#my-hold", "#my-transfer", "#my-consulting", "#my-record"):
            assert await bo.locator(hidden).is_hidden(), hidden
        assert await op.locator("#my-hold").is_hidden()  # no Resume: complete or cancel
        await asyncio.gather(comes_to_hear(op, CONSULTED_TONE), comes_to_hear(bo, OPERATOR_TONE))
        ada_hears = await heard(page)  # once their audio flows: Ada's silence is no delay
        assert readings_of(ada_hears, OPERATOR_TONE) == readings_of(ada_hears, CONSULTED_TONE) == 0
        await op.locator("#active li .badge.consulting", has_text="consulting bo").wait_for()
        await screenshot(op, "dashboard-consult")
        await screenshot(bo, "dashboard-consulted")

        # Complete: bo takes Ada, op's call ends.
        await op.get_by_role("button", name="Complete transfer").click()
        await my_status_is(op, "Call ended (you transferred it).")
        await status_is(page, "Connected.")
        await my_status_is(bo, "Talking with Ada.")
        await asyncio.gather(comes_to_hear(page, CONSULTED_TONE), comes_to_hear(bo, USER_TONE))
        await page.get_by_role("button", name="Hang up").click()
        await my_status_is(bo, "Call ended (hung up)")
        assert errors == []
    finally:
        for browser in (user_browser, bo_browser, op_browser):
            await browser.close()
