"""The caller's side of a queue: `queue.waiting` on /ws/signal, REST `queuePosition`, and
the queue's waiting audio heard by a real aiortc caller until an operator answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from calls.models import AudioFile, Availability, Call, EndUserSession, OperatorStatus, Queue
from calls.principals import Principal
from tests.support.live_call import add_to_library
from tests.support.media_peers import ClientPeer, hear_each_other
from tests.support.queues import (
    answer,
    in_threads,
    make_operator,
    make_queue,
    pending_of,
    wait_passes,
)
from tests.support.rest_client import bearer_client
from tests.support.signal_client import SignalClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]


async def waiting_caller(asgi_app: Any, name: str) -> tuple[SignalClient, str, EndUserSession]:
    session, token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name=name)
    client = SignalClient(asgi_app)
    await client.connect()
    await client.send({"type": "register", "sessionId": "", "authToken": token})
    await client.expect("event", "registered")
    return client, token, session


def start_call(session: EndUserSession, queue: Queue) -> str:
    call = Call.start(
        by=Principal.end_user(session), mode="bridge", media_worker="embedded", queue=queue
    )
    return str(call.pk)


def set_available(user: Any) -> None:
    OperatorStatus.set_availability(user, Availability.AVAILABLE, Principal.staff(user))


def queue_position(token: str, call_id: str) -> Any:
    response = bearer_client(token).get(f"/api/calls/{call_id}")
    assert response.status_code == 200, response.content[:300]
    return response.json()["queuePosition"]


async def test_it_tells_waiting_callers_their_place_as_the_line_moves(asgi_app: Any) -> None:
    operator = await sync_to_async(make_operator)("olga", available=False)
    queue = await sync_to_async(make_queue)("support", [operator], strategy="longest_idle")
    callers = [await waiting_caller(asgi_app, name) for name in ("Ada", "Bob", "Cy")]
    calls = []
    for client, _, session in callers:
        calls.append(await sync_to_async(start_call)(session, queue))
        told = await client.expect("event", "queue.waiting")
        assert told["callSid"] == calls[-1]
        assert told["data"]["queue"] == "support" and told["data"]["queueName"] == "Support"
        assert told["data"]["waitedS"] >= 0
    places = [c.received[-1]["data"]["position"] for c, _, _ in callers]
    assert places == [1, 2, 3]
    tokens = [token for _, token, _ in callers]
    every = zip(tokens, calls, strict=True)
    assert [await sync_to_async(queue_position)(t, c) for t, c in every] == [1, 2, 3]
    # Ada is answered: Bob and Cy move up; Ada hears her answer, not a place.
    await sync_to_async(set_available)(operator)
    response = await sync_to_async(answer)(operator, calls[0])
    assert response.status_code == 200, response.json()
    await callers[0][0].expect("event", "call.answered")
    for (client, _, _), place in zip(callers[1:], (1, 2), strict=True):
        moved = await client.expect("event", "queue.waiting")
        assert moved["data"]["position"] == place
    assert await sync_to_async(queue_position)(tokens[0], calls[0]) is None
    behind = zip(tokens[1:], calls[1:], strict=True)
    assert [await sync_to_async(queue_position)(t, c) for t, c in behind] == [1, 2]
    # Cy gives up: nobody is behind her, nobody is told anything.
    hung_up = await sync_to_async(bearer_client(tokens[2]).post)(f"/api/calls/{calls[2]}/hangup")
    assert hung_up.status_code == 200
    await callers[2][0].expect("event", "call.ended")
    await callers[1][0].nothing_more()
    for client, _, _ in callers:
        await client.close()


async def test_it_tells_no_place_in_the_default_queue(asgi_app: Any) -> None:
    client, token, session = await waiting_caller(asgi_app, "Ada")
    default = await sync_to_async(Queue.objects.default)()
    call_id = await sync_to_async(start_call)(session, default)
    await client.expect("event", "call.ringing")
    await client.nothing_more()
    assert await sync_to_async(queue_position)(token, call_id) is None
    await client.close()


WAITING_TONE, USER_TONE, OPERATOR_TONE = 600, 440, 880


@pytest.mark.media
async def test_it_plays_the_waiting_audio_looped_until_an_operator_answers(
    asgi_app: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path
    await add_to_library(tmp_path, "hold", WAITING_TONE, 1.0)  # shorter than the wait: loops
    operator = await sync_to_async(make_operator)("olga", available=False)

    def queue_with_audio() -> None:
        queue = make_queue("support", [operator])
        queue.waiting_audio = AudioFile.objects.get(name="hold")
        queue.save()

    await sync_to_async(queue_with_audio)()
    _, token = await sync_to_async(EndUserSession.create)(ttl_seconds=600, display_name="Ada")
    caller = SignalClient(asgi_app)
    await caller.connect()
    user_peer, operator_peer = ClientPeer(USER_TONE), ClientPeer(OPERATOR_TONE)
    try:
        answered = await caller.offer(token, await user_peer.offer(), queue="support")
        call_id = answered["callSid"]
        await user_peer.accept(answered["data"]["sdp"])
        await user_peer.wait_connected()
        await user_peer.hears(WAITING_TONE)
        await asyncio.sleep(1.5)  # past the file's end: still heard, so it loops
        assert user_peer.sink.strength(WAITING_TONE) > 0.2
        # An operator answers with their media (the dashboard's way).
        await sync_to_async(set_available)(operator)
        staff = AsyncClient()
        await staff.aforce_login(operator)
        reply = await staff.post(
            f"/api/calls/{call_id}/webrtc/offer",
            {"type": "offer", "sdp": await operator_peer.offer()},
            content_type="application/json",
        )
        assert reply.status_code in (200, 201), reply.json()
        await operator_peer.accept(reply.json()["sdp"])
        await operator_peer.wait_connected()
        await hear_each_other((operator_peer, USER_TONE), (user_peer, OPERATOR_TONE))
        await asyncio.sleep(1.2)  # a second of audio after the answer
        assert user_peer.sink.strength(OPERATOR_TONE) > 0.2
        assert user_peer.sink.strength(WAITING_TONE) < 0.02
        assert operator_peer.sink.strength(WAITING_TONE) < 0.02
    finally:
        await user_peer.close()
        await operator_peer.close()
        await caller.close()


async def test_it_tells_an_overflowing_caller_its_place_in_the_new_line(asgi_app: Any) -> None:
    def queues() -> tuple[Queue, Queue]:
        nobody = make_operator("nobody", available=False)
        backup = make_queue("backup", [nobody])
        front = make_queue("front", [nobody], overflow="queue", overflow_queue=backup)
        return front, backup

    front, backup = await sync_to_async(queues)()
    (ada, _, ada_session), (bob, _, bob_session), (cy, _, cy_session) = [
        await waiting_caller(asgi_app, name) for name in ("Ada", "Bob", "Cy")
    ]
    await sync_to_async(start_call)(cy_session, backup)
    assert (await cy.expect("event", "queue.waiting"))["data"]["position"] == 1
    ada_call = await sync_to_async(start_call)(ada_session, front)
    await sync_to_async(start_call)(bob_session, front)
    assert (await ada.expect("event", "queue.waiting"))["data"]["position"] == 1
    assert (await bob.expect("event", "queue.waiting"))["data"]["position"] == 2
    # Ada waited too long in front: she is second in backup, Bob first in front.
    await sync_to_async(wait_passes)(await sync_to_async(Call.objects.get)(pk=ada_call))
    moved = await ada.expect("event", "queue.waiting")
    assert (moved["data"]["queue"], moved["data"]["position"]) == ("backup", 2)
    up = await bob.expect("event", "queue.waiting")
    assert (up["data"]["queue"], up["data"]["position"]) == ("front", 1)
    await cy.nothing_more()  # ahead of Ada: her place did not change
    for client in (ada, bob, cy):
        await client.close()


async def test_it_tells_a_caller_moved_to_the_default_queue_it_has_no_place(
    asgi_app: Any,
) -> None:
    def front_queue() -> Queue:
        nobody = make_operator("nobody", available=False)
        default = Queue.objects.default()
        return make_queue("front", [nobody], overflow="queue", overflow_queue=default)

    front = await sync_to_async(front_queue)()
    ada, _, session = await waiting_caller(asgi_app, "Ada")
    call_id = await sync_to_async(start_call)(session, front)
    assert (await ada.expect("event", "queue.waiting"))["data"]["position"] == 1
    await sync_to_async(wait_passes)(await sync_to_async(Call.objects.get)(pk=call_id))
    moved = await ada.expect("event", "queue.waiting")
    assert (moved["data"]["queue"], moved["data"]["position"]) == ("default", None)
    await ada.close()


async def test_it_tells_a_caller_who_registers_again_its_place(asgi_app: Any) -> None:
    def support() -> Queue:
        return make_queue("support", [make_operator("nobody", available=False)])

    queue = await sync_to_async(support)()
    first, token, session = await waiting_caller(asgi_app, "Ada")
    call_id = await sync_to_async(start_call)(session, queue)
    await first.expect("event", "queue.waiting")
    await first.close()
    # The page reloads (or its socket comes back): it missed nothing it is not told again.
    again = SignalClient(asgi_app)
    await again.connect()
    await again.send({"type": "register", "sessionId": "", "authToken": token})
    registered = await again.expect("event", "registered")
    assert [c["callSid"] for c in registered["data"]["calls"]] == [call_id]
    told = await again.expect("event", "queue.waiting")
    assert (told["callSid"], told["data"]["position"]) == (call_id, 1)
    await again.close()


async def test_it_leaves_the_last_caller_first_when_two_ahead_are_answered_at_once(
    asgi_app: Any,
) -> None:
    """Two answers commit at the same instant; each tells the line what it read. Whatever
    order those reach the caller in, the smallest place it was told (what a client keeps:
    in one queue a place only goes down) is its true place, and REST agrees."""

    def setup() -> tuple[Queue, list[Any]]:
        both = [make_operator("left"), make_operator("right")]
        return make_queue("hotline", both, strategy="longest_idle"), both

    queue, operators = await sync_to_async(setup)()
    callers = [await waiting_caller(asgi_app, name) for name in ("Ada", "Bob", "Cy")]
    calls = [await sync_to_async(start_call)(session, queue) for _, _, session in callers]
    offered = {}
    for user in operators:
        offer = await sync_to_async(lambda u=user: pending_of(u))()
        offered[str(offer.call_id)] = user
    assert sorted(offered) == sorted(calls[:2])  # one offer each, the two oldest calls

    def answer_at_once() -> list[Any]:
        return in_threads(lambda pair: answer(pair[1], pair[0]), list(offered.items()))

    responses = await asyncio.to_thread(answer_at_once)
    assert [r.status_code for r in responses] == [200, 200], responses
    cy, cy_token, _ = callers[2]
    await callers[0][0].expect("event", "call.answered")
    await callers[1][0].expect("event", "call.answered")
    # The answer committed last read a line with both gone: place 1 is always told.
    while (await cy.expect("event", "queue.waiting"))["data"]["position"] != 1:
        pass
    places = [
        m["data"]["position"]
        for m in cy.received
        if m["type"] == "event" and m["data"]["name"] == "queue.waiting"
    ]
    assert places[0] == 3 and all(1 <= p <= 3 for p in places), places
    assert await sync_to_async(queue_position)(cy_token, calls[2]) == 1
    for client, _, _ in callers:
        await client.close()
