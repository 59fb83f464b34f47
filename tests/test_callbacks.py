"""Callback requests: a waiting caller asks (`callback.request` on /ws/signal, or REST), the
call ends `callback_requested`; an operator of the queue calls back (REST), the end user's
page rings and answers (real aiortc peers); races, bad input, offline and expired callers;
the dashboard's lists (feed snapshot, `GET /api/calls` filters)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.test import AsyncClient
from django.utils import timezone
from rest_framework.test import APIClient

from calls.models import (
    Call,
    CallbackRequest,
    CallEvent,
    EndUserSession,
    Queue,
)
from calls.principals import Principal
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.queues import answer, in_threads, make_operator, make_queue, wait_passes
from tests.support.rest_client import assert_error, bearer_client
from tests.support.signal_client import SignalClient, staff_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

USER_TONE, OPERATOR_TONE = 440, 880


def staff_client(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def post_as(user: Any, path: str) -> Any:
    return staff_client(user).post(path)


def waiting_call(session: EndUserSession, queue: Queue | None) -> Call:
    return Call.start(
        by=Principal.end_user(session), mode="bridge", media_worker="embedded", queue=queue
    )


def callback_events(call_id: Any) -> list[str]:
    return list(
        CallEvent.objects.filter(call_id=call_id, name__startswith="callback.")
        .order_by("id")
        .values_list("name", flat=True)
    )


async def registered_page(asgi_app: Any, token: str) -> SignalClient:
    page = SignalClient(asgi_app)
    await page.connect()
    await page.send({"type": "register", "sessionId": "", "authToken": token})
    await page.expect("event", "registered")
    return page


async def operator_feed(asgi_app: Any) -> SignalClient:
    cookie = await sync_to_async(staff_cookie)("sam")  # a supervisor's dashboard
    feed = SignalClient(asgi_app, "/ws/operator", origin="http://localhost")
    feed.communicator.scope["headers"].append((b"cookie", cookie.encode()))
    await feed.connect()
    return feed


@pytest.mark.media
async def test_it_calls_back_a_caller_who_asked_while_waiting(asgi_app: Any) -> None:
    olga = await sync_to_async(make_operator)("olga", available=False)
    queue = await sync_to_async(make_queue)("support", [olga])
    session, token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    feed = await operator_feed(asgi_app)
    assert (await feed.receive())["data"]["callbacks"] == []
    page = await registered_page(asgi_app, token)
    call = await sync_to_async(waiting_call)(session, queue)
    waiting = await page.expect("event", "queue.waiting")
    assert (waiting["data"]["position"], waiting["data"]["callback"]) == (1, True)

    # Nobody is free: Ada asks to be called back, with a note.
    await page.send({"type": "callback.request", "callSid": str(call.pk), "note": " after 5pm "})
    ended = await page.expect("event", "call.ended")
    assert (ended["callSid"], ended["data"]["reason"]) == (str(call.pk), "callback_requested")
    confirmed = await page.expect("event", "callback.requested")
    callback_id = confirmed["data"]["callbackID"]
    assert "callback" not in confirmed["data"]  # the caller is not told who handles it
    announced = await feed.expect("event", "callback.requested")
    request = announced["data"]["callback"]
    assert (request["callbackID"], request["state"], request["note"]) == (
        callback_id,
        "open",
        "after 5pm",
    )
    assert (request["queue"], request["displayName"], request["callID"]) == (
        "support",
        "Ada",
        str(call.pk),
    )
    stored = await Call.objects.aget(pk=call.pk)
    assert (stored.state, stored.end_reason) == ("cancelled", "callback_requested")
    assert await CallbackRequest.objects.acount() == 1

    # A reloaded dashboard lists the request and the call among today's missed calls.
    again = await operator_feed(asgi_app)
    snapshot = (await again.receive())["data"]
    assert [c["callbackID"] for c in snapshot["callbacks"]] == [callback_id]
    assert snapshot["callbacks"][0]["online"] is True
    assert [c["callID"] for c in snapshot["missed"]] == [str(call.pk)]
    await again.close()

    # Olga calls back: Ada's page rings; both answer with real media and hear each other.
    reply = await sync_to_async(post_as)(olga, f"/api/callbacks/{callback_id}/call")
    assert reply.status_code == 201, reply.json()
    back = reply.json()
    assert (back["direction"], back["state"], back["callback"]["state"]) == (
        "outbound",
        "ringing",
        "calling",
    )
    incoming = await page.expect("event", "call.incoming")
    assert incoming["callSid"] == back["callID"]
    calling = await feed.expect("event", "callback.calling")
    assert calling["data"]["callback"]["callbackCallID"] == back["callID"]
    assert calling["data"]["callback"]["handledBy"] == "olga"

    user_peer, operator_peer = ClientPeer(USER_TONE), ClientPeer(OPERATOR_TONE)
    try:
        staff = AsyncClient()
        await staff.aforce_login(olga)
        offered = await staff.post(
            f"/api/calls/{back['callID']}/webrtc/offer",
            {"type": "offer", "sdp": await operator_peer.offer()},
            content_type="application/json",
        )
        assert offered.status_code == 200, offered.json()
        await operator_peer.accept(offered.json()["sdp"])
        answered = await page.offer(token, await user_peer.offer(), callSid=back["callID"])
        await user_peer.accept(answered["data"]["sdp"])
        await page.expect("event", "call.answered")
        done = await feed.expect("event", "callback.done")
        assert (done["data"]["callback"]["state"], done["data"]["callback"]["attempts"]) == (
            "done",
            1,
        )
        await user_peer.wait_connected()
        await operator_peer.wait_connected()
        await hear_each_other((operator_peer, USER_TONE), (user_peer, OPERATOR_TONE))
    finally:
        await user_peer.close()
        await operator_peer.close()
    stored_request = await CallbackRequest.objects.aget(pk=callback_id)
    assert (stored_request.state, str(stored_request.callback_call_id)) == ("done", back["callID"])
    assert await sync_to_async(callback_events)(call.pk) == [
        "callback.requested",
        "callback.calling",
        "callback.done",
    ]
    hung_up = await sync_to_async(post_as)(olga, f"/api/calls/{back['callID']}/hangup")
    assert hung_up.status_code == 200
    for socket in (page, feed):
        await socket.close()


def online_session(name: str) -> tuple[EndUserSession, str]:
    session, token = EndUserSession.create(ttl_seconds=600, display_name=name)
    session.socket_opened()  # what a registered /ws/signal socket does
    return session, token


def ask(token: str, call: Call, **body: Any) -> Any:
    return bearer_client(token).post(f"/api/calls/{call.pk}/callback", body, format="json")


def test_it_places_one_call_back_when_two_operators_press_at_once() -> None:
    olga, oscar = make_operator("olga"), make_operator("oscar")
    queue = make_queue("support", [olga, oscar])
    session, token = online_session("Ada")
    call = waiting_call(session, queue)
    asked = ask(token, call, note="about my order")
    assert asked.status_code == 201, asked.json()
    callback_id = asked.json()["callbackID"]

    replies = in_threads(
        lambda user: staff_client(user).post(f"/api/callbacks/{callback_id}/call"), [olga, oscar]
    )
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [201, 409], [reply.json() for reply in replies]
    loser = next(reply for reply in replies if reply.status_code == 409)
    assert_error(loser, 409, "CALL_STATE")
    assert Call.objects.filter(direction="outbound", session=session).count() == 1
    request = CallbackRequest.objects.get(pk=callback_id)
    assert (request.state, request.attempts) == ("calling", 1)

    # The call back rings out unanswered (the operator gives up): open again, tried once.
    winner = next(reply for reply in replies if reply.status_code == 201)
    placed_by = olga if request.handled_by == olga else oscar
    cancelled = staff_client(placed_by).post(f"/api/calls/{winner.json()['callID']}/hangup")
    assert cancelled.status_code == 200
    request.refresh_from_db()
    assert (request.state, request.attempts) == ("open", 1)

    # Marked done by hand: nobody calls back any more.
    closed = staff_client(oscar).post(
        f"/api/callbacks/{callback_id}/close", {"outcome": "done"}, format="json"
    )
    assert closed.status_code == 200 and closed.json()["state"] == "done"
    assert_error(staff_client(olga).post(f"/api/callbacks/{callback_id}/call"), 409, "CALL_STATE")
    assert callback_events(call.pk) == [
        "callback.requested",
        "callback.calling",
        "callback.reopened",
        "callback.done",
    ]
    listed = staff_client(olga).get("/api/callbacks?state=done").json()
    assert [(r["callbackID"], r["attempts"], r["note"]) for r in listed] == [
        (callback_id, 1, "about my order")
    ]


def test_it_either_answers_or_ends_for_a_callback_when_both_happen_at_once() -> None:
    olga = make_operator("olga")  # offered the call: she may answer it
    queue = make_queue("support", [olga])
    for round_ in range(3):
        session, token = online_session(f"Caller {round_}")
        call = waiting_call(session, queue)
        answered, asked = in_threads(
            lambda act: act[0](*act[1:]),
            [(answer, olga, call.pk), (ask, token, call)],
        )
        stored = Call.objects.get(pk=call.pk)
        requests = CallbackRequest.objects.filter(call=call).count()
        if answered.status_code == 200:
            assert_error(asked, 409, "CALL_STATE")
            assert (stored.state, requests) == ("active", 0)
            stored.hang_up(Principal.staff(olga))
        else:
            assert_error(answered, 409, "CALL_STATE")
            assert asked.status_code == 201, asked.json()
            assert (stored.state, stored.end_reason, requests) == (
                "cancelled",
                "callback_requested",
                1,
            )


def test_it_refuses_bad_callback_requests_and_changes_nothing(
    api_token: tuple[Any, str],
) -> None:
    olga = make_operator("olga")  # available: offered the calls, she answers one
    support = make_queue("support", [olga])
    quiet = make_queue("quiet", [olga], offer_callback=False)
    ada, ada_token = online_session("Ada")
    _, bob_token = online_session("Bob")

    ringing = waiting_call(ada, support)
    assert_error(ask(ada_token, ringing, note="x" * 501), 400, "INVALID_ARGUMENT")
    assert_error(ask(ada_token, ringing, note="a\x07b"), 400, "INVALID_ARGUMENT")
    assert_error(ask(bob_token, ringing), 403, "FORBIDDEN")  # another credential
    assert_error(ask(api_token[1], ringing), 403, "FORBIDDEN")  # an integrator's token
    assert Call.objects.get(pk=ringing.pk).state == "ringing"
    ringing.hang_up(Principal.end_user(ada))

    in_quiet = waiting_call(ada, quiet)  # a queue that offers no callbacks
    assert_error(ask(ada_token, in_quiet), 403, "FORBIDDEN")
    in_quiet.hang_up(Principal.end_user(ada))
    in_default = waiting_call(ada, None)  # the default queue: operators pick, no line
    assert_error(ask(ada_token, in_default), 403, "FORBIDDEN")
    in_default.hang_up(Principal.end_user(ada))

    answered = waiting_call(ada, support)
    answered.answer(Principal.staff(olga))
    assert_error(ask(ada_token, answered), 409, "CALL_STATE")
    answered.hang_up(Principal.end_user(ada))
    echo = Call.start(by=Principal.end_user(ada), mode="echo", media_worker="embedded")
    assert_error(ask(ada_token, echo), 409, "CALL_STATE")

    assert CallbackRequest.objects.count() == 0
    assert not CallEvent.objects.filter(name__startswith="callback.").exists()
    assert not Call.objects.filter(end_reason="callback_requested").exists()
    assert_error(bearer_client(ada_token).get("/api/callbacks"), 403, "FORBIDDEN")


async def test_it_refuses_bad_callback_messages_on_the_socket(asgi_app: Any) -> None:
    olga = await sync_to_async(make_operator)("olga", available=False)
    queue = await sync_to_async(make_queue)("support", [olga])
    ada, ada_token = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    _, bob_token = await sync_to_async(EndUserSession.create)(ttl_seconds=600)
    call = await sync_to_async(waiting_call)(ada, queue)
    bob = await registered_page(asgi_app, bob_token)
    await bob.send({"type": "callback.request", "callSid": str(call.pk)})
    assert (await bob.expect("error"))["data"]["code"] == "FORBIDDEN"
    await bob.send({"type": "callback.request"})  # Bob waits nowhere
    assert (await bob.expect("error"))["data"]["code"] == "CALL_STATE"
    page = await registered_page(asgi_app, ada_token)
    await page.send({"type": "callback.request", "note": ["not", "text"]})
    assert (await page.expect("error"))["data"]["code"] == "INVALID_MESSAGE"
    await page.send({"type": "callback.request", "note": "x" * 501})
    assert (await page.expect("error"))["data"]["code"] == "INVALID_ARGUMENT"
    assert (await Call.objects.aget(pk=call.pk)).state == "ringing"
    assert await CallbackRequest.objects.acount() == 0
    # No call named: the caller's one waiting call.
    await page.send({"type": "callback.request"})
    assert (await page.expect("event", "call.ended"))["data"]["reason"] == "callback_requested"
    for socket in (bob, page):
        await socket.close()


def test_it_keeps_the_request_open_while_the_caller_is_offline_and_expires_it_with_the_session(
    api_token: tuple[Any, str],
) -> None:
    olga, outsider = make_operator("olga"), make_operator("otto")
    make_queue("other", [outsider])
    queue = make_queue("support", [olga])
    session, token = online_session("Ada")
    call = waiting_call(session, queue)
    callback_id = ask(token, call).json()["callbackID"]
    session.socket_closed()  # Ada closed her page

    offline = assert_error(
        staff_client(olga).post(f"/api/callbacks/{callback_id}/call"), 409, "CALL_STATE"
    )
    assert offline["recoverable"] is True
    assert CallbackRequest.objects.get(pk=callback_id).state == "open"
    assert not Call.objects.filter(direction="outbound").exists()
    # Not his queue: otto neither sees nor handles it; a supervisor and a token do.
    assert staff_client(outsider).get("/api/callbacks").json() == []
    assert_error(
        staff_client(outsider).post(f"/api/callbacks/{callback_id}/call"), 403, "FORBIDDEN"
    )
    outsider.user_permissions.add(Permission.objects.get(codename="change_callbackrequest"))
    supervisor = type(outsider).objects.get(pk=outsider.pk)  # permissions re-read
    assert [r["callbackID"] for r in staff_client(supervisor).get("/api/callbacks").json()] == [
        callback_id
    ]
    listed = bearer_client(api_token[1]).get("/api/callbacks").json()
    assert [(r["callbackID"], r["online"]) for r in listed] == [(callback_id, False)]
    assert_error(staff_client(olga).post("/api/callbacks/nope/call"), 404, "NOT_FOUND")
    bad_close = staff_client(olga).post(
        f"/api/callbacks/{callback_id}/close", {"outcome": "open"}, format="json"
    )
    assert_error(bad_close, 400, "INVALID_ARGUMENT")

    # Her session expires: the request with it.
    EndUserSession.objects.filter(pk=session.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert staff_client(olga).get("/api/callbacks").json() == []
    assert CallbackRequest.objects.get(pk=callback_id).state == "expired"
    assert_error(staff_client(olga).post(f"/api/callbacks/{callback_id}/call"), 409, "CALL_STATE")
    assert callback_events(call.pk) == ["callback.requested", "callback.expired"]

    # Another caller's session is revoked: their request expires at once.
    bea, bea_token = online_session("Bea")
    bea_call = waiting_call(bea, queue)
    bea_request = ask(bea_token, bea_call).json()["callbackID"]
    bea.revoke()
    assert CallbackRequest.objects.get(pk=bea_request).state == "expired"


def test_it_lists_todays_missed_calls_through_the_calls_filters() -> None:
    olga = make_operator("olga")
    queue = make_queue("support", [olga])
    ada, ada_token = online_session("Ada")
    asked = waiting_call(ada, queue)
    ask(ada_token, asked)
    refused = waiting_call(ada, queue)
    wait_passes(refused)  # nobody within the maximum wait: `no_operator`
    talked = waiting_call(ada, queue)
    talked.answer(Principal.staff(olga))
    talked.hang_up(Principal.staff(olga))

    today = timezone.localdate().isoformat()
    missed = staff_client(olga).get(
        f"/api/calls?answered=false&direction=inbound&queue=support&since={today}"
    )
    assert missed.status_code == 200, missed.json()
    assert {(c["callID"], c["endReason"]) for c in missed.json()} == {
        (str(asked.pk), "callback_requested"),
        (str(refused.pk), "no_operator"),
    }
    by_reason = staff_client(olga).get("/api/calls?endReason=callback_requested").json()
    assert [c["callID"] for c in by_reason] == [str(asked.pk)]
    assert_error(staff_client(olga).get("/api/calls?endReason=bored"), 400, "INVALID_ARGUMENT")
    assert_error(staff_client(olga).get("/api/calls?answered=maybe"), 400, "INVALID_ARGUMENT")
    assert_error(staff_client(olga).get("/api/calls?since=yesterday"), 400, "INVALID_ARGUMENT")
    # The queue's statistics count it apart: not abandoned, missed or refused.
    stats = staff_client(olga).get("/api/queues/support/stats").json()
    assert (stats["callbacksRequested"], stats["abandoned"], stats["refused"]) == (1, 0, 1)
    assert (stats["joined"], stats["answered"]) == (3, 1)


@pytest.mark.slow
async def test_it_expires_an_open_request_when_its_session_expires(asgi_app: Any) -> None:
    def asked_with_a_short_session() -> str:
        queue = make_queue("support", [make_operator("olga", available=False)])
        session, token = EndUserSession.create(ttl_seconds=2, display_name="Ada")
        return str(ask(token, waiting_call(session, queue)).json()["callbackID"])

    feed = await operator_feed(asgi_app)
    await feed.receive()
    callback_id = await sync_to_async(asked_with_a_short_session)()
    # Nobody reads the list: the deadlines service wakes at the session's expiry.
    expired = await feed.expect("event", "callback.expired", within=15)
    assert expired["data"]["callback"]["callbackID"] == callback_id
    assert (await CallbackRequest.objects.aget(pk=callback_id)).state == "expired"
    await feed.close()
