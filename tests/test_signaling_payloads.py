"""What each socket is told of a call event (calls.signaling.payloads), without Django."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from calls.errors import ErrorCode
from calls.signaling import payloads

USERNAME = "alice.staff"
TOKEN_LABEL = "api token console (cbk_1a2b)"

CALL = payloads.CallSnapshot(
    call_id="0b7e1c1e-0000-4000-8000-000000000001",
    state="active",
    mode="bridge",
    direction="inbound",
    caller_role="user",
    session_id="0b7e1c1e-0000-4000-8000-000000000002",
    display_name="Ada",
    operator=USERNAME,
    created_at="2026-11-30T21:00:00+00:00",
    answered_at="2026-11-30T21:00:05+00:00",
    ended_at=None,
    end_reason=None,
    ring_deadline=None,
    legs=(
        payloads.LegSnapshot("leg-user", "user", "connected"),
        payloads.LegSnapshot("leg-operator", "operator", "failed"),
    ),
    consent_missing=("operator",),
    recording=payloads.RecordingSnapshot("rec-1", "recording", ""),
)


def recorded(name: str, data: dict[str, Any], call: payloads.CallSnapshot = CALL) -> Any:
    return payloads.CallEventSnapshot(event_id=7, name=name, data=data, call=call)


def test_it_never_tells_an_end_user_the_operators_account() -> None:
    for operator in (USERNAME, TOKEN_LABEL):
        event = recorded("call.answered", {"state": "active"}, replace(CALL, operator=operator))
        seen_by_user = json.dumps(payloads.party_event(event, "user", "leg-user"))
        assert operator not in seen_by_user
        assert operator in json.dumps(payloads.feed_event(event))


def test_it_gives_the_feed_the_whole_call_and_the_record_name() -> None:
    shaped = payloads.feed_event(recorded("media.closed", {"legID": "leg-user", "role": "user"}))
    assert (shaped["sessionId"], shaped["callSid"]) == ("", CALL.call_id)
    assert shaped["data"]["name"] == "media.disconnected"
    assert shaped["data"]["record"] == "media.closed"
    assert shaped["data"]["call"] == payloads.call_summary(CALL)
    assert shaped["data"]["call"]["operator"] == USERNAME


def test_it_gives_both_sockets_the_same_event_details() -> None:
    events = [
        recorded("media.failed", {"legID": "leg-operator", "role": "operator", "state": "failed"}),
        recorded("call.ended", {"reason": "hangup", "state": "ended"}),
        recorded("recording.started", {"recordingID": "rec-1", "consents": [1, 2]}),
        recorded("consent.withdrawn", {"missing": ["user"], "role": "user"}),
    ]
    for event in events:
        party = payloads.party_event(event, "operator", "leg-operator")
        assert party is not None
        feed = payloads.feed_event(event)["data"]
        assert {key: feed[key] for key in party["data"]} == party["data"]


def test_it_tells_each_side_of_a_ringing_call_its_own_name() -> None:
    ringing = replace(CALL, state="ringing", legs=CALL.legs[:1])
    event = recorded("call.created", {"state": "ringing"}, ringing)
    assert payloads.party_event(event, "user", "leg-user")["data"]["name"] == "call.ringing"
    assert payloads.party_event(event, "operator", "")["data"]["name"] == "call.incoming"


def test_it_tells_parties_nothing_of_what_they_need_not_know() -> None:
    echo = recorded("call.created", {"state": "active"}, replace(CALL, mode="echo"))
    assert payloads.party_event(echo, "user", "leg-user") is None
    assert payloads.feed_event(echo)["data"]["name"] == "call.created"  # the feed sees all


def test_it_tells_only_the_owner_of_a_failed_leg_about_the_failure() -> None:
    event = recorded("media.failed", {"legID": "leg-operator", "role": "operator"})
    failure = payloads.leg_failure(event, "leg-operator")
    assert failure is not None
    assert (failure["type"], failure["sessionId"], failure["callSid"]) == (
        "error",
        "leg-operator",
        CALL.call_id,
    )
    assert failure["data"]["code"] == "MEDIA_BRIDGE_FAILURE"
    assert payloads.leg_failure(event, "leg-user") is None


def test_it_round_trips_an_event_through_the_channel_layer() -> None:
    event = recorded("recording.started", {"recordingID": "rec-1", "consents": [1]})
    # What a Redis channel layer does to a message (msgpack): tuples come back as lists.
    carried = json.loads(json.dumps(payloads.to_message(event)))
    assert payloads.call_event_from_message(carried) == event
    session = payloads.SessionSnapshot("s-1", "Ada", True, {"ticket": 42})
    carried = json.loads(json.dumps(payloads.to_message(session)))
    assert payloads.session_from_message(carried) == session


def test_it_sends_the_same_presence_to_both_sockets_with_both_shapes() -> None:
    shaped = payloads.presence_event(payloads.SessionSnapshot("s-1", "Ada", False, {}))
    assert shaped["data"]["name"] == "presence.offline"
    assert shaped["data"]["session"] == {
        "sessionId": "s-1",
        "displayName": "Ada",
        "online": False,
        "metadata": {},
    }
    assert shaped["data"]["sessionId"] == "s-1"  # the flat form /ws/signal always sent


def test_it_tells_the_feed_who_is_offered_a_queued_call_and_the_caller_nothing() -> None:
    ringing = replace(CALL, state="ringing", operator="")
    offered = recorded(
        "queue.offered",
        {
            "queue": "sales",
            "operator": USERNAME,
            "operatorID": 3,
            "deadline": "2026-11-30T21:00:20",
        },
        ringing,
    )
    shown = payloads.feed_event(offered)["data"]
    assert (shown["name"], shown["record"]) == ("queue.offered", "queue.offered")
    assert (shown["operator"], shown["deadline"], shown["queue"]) == (
        USERNAME,
        "2026-11-30T21:00:20",
        "sales",
    )
    missed = payloads.feed_event(
        recorded("queue.offer_missed", {"operator": USERNAME, "outcome": "missed"}, ringing)
    )["data"]
    assert (missed["name"], missed["record"], missed["outcome"]) == (
        "queue.offer_ended",
        "queue.offer_missed",
        "missed",
    )
    for name in ("queue.offered", "queue.offer_missed", "queue.offer_ended"):
        assert (
            payloads.party_event(recorded(name, {"operator": USERNAME}, ringing), "user", "")
            is None
        )


def test_it_tells_a_waiting_caller_its_place_and_nothing_of_operators() -> None:
    message = {
        "type": "queue.waiting",
        "call_id": CALL.call_id,
        "queue": "billing",
        "queue_name": "Billing",
        "position": 2,
        "waited_s": 12.5,
        "callback": True,
    }
    shaped = payloads.queue_waiting_event(json.loads(json.dumps(message)), "leg-user")
    assert shaped == {
        "type": "event",
        "sessionId": "leg-user",
        "callSid": CALL.call_id,
        "data": {
            "name": "queue.waiting",
            "queue": "billing",
            "queueName": "Billing",
            "position": 2,
            "waitedS": 12.5,
            "callback": True,
        },
    }


def test_it_tells_a_gateway_caller_agent_failure_when_nobody_takes_its_call() -> None:
    ringing = replace(CALL, state="missed", legs=CALL.legs[:1])
    for reason, message in (
        ("no_operator", "no operator could take the call"),
        ("missed", "no operator answered the call in time"),
    ):
        ended = recorded("call.ended", {"reason": reason}, ringing)
        refused = payloads.no_operator(ended, "leg-user", ErrorCode.AGENT_FAILURE)
        assert refused == {
            "type": "error",
            "sessionId": "leg-user",
            "callSid": CALL.call_id,
            "data": {"code": "AGENT_FAILURE", "message": message, "recoverable": True},
        }
        assert payloads.no_operator(ended, "", ErrorCode.AGENT_FAILURE) is None
    # Only its caller, only when nobody took it.
    outbound = replace(ringing, direction="outbound", caller_role="operator")
    missed_outbound = recorded("call.ended", {"reason": "missed"}, outbound)
    assert payloads.no_operator(missed_outbound, "leg-user", ErrorCode.AGENT_FAILURE) is None
    hung_up = recorded("call.ended", {"reason": "hangup"})
    assert payloads.no_operator(hung_up, "leg-user", ErrorCode.AGENT_FAILURE) is None


def test_it_shows_operators_what_a_gateway_client_said_of_its_call() -> None:
    told = replace(CALL, external_id="call-unique-id", caller="+14155551234", callee="support")
    summary = payloads.call_summary(told)
    assert (summary["externalId"], summary["caller"], summary["callee"]) == (
        "call-unique-id",
        "+14155551234",
        "support",
    )
    event = recorded("call.answered", {"state": "active"}, told)
    assert "call-unique-id" not in json.dumps(payloads.party_event(event, "user", "leg-user"))


def test_it_tells_the_feed_the_disposition_and_the_end_user_nothing_of_notes() -> None:
    call = replace(CALL, disposition="resolved")
    events = [
        recorded(
            "call.disposition_set",
            {"disposition": "resolved", "previous": None, "revision": 1},
            call,
        ),
        recorded("call.notes_updated", {"revision": 1, "length": 12}, call),
    ]
    for event in events:
        assert payloads.party_event(event, "user", "leg-user") is None
        assert payloads.party_event(event, "operator", "leg-operator") is None
    shaped = [payloads.feed_event(event)["data"] for event in events]
    assert (shaped[0]["name"], shaped[0]["disposition"], shaped[0]["revision"]) == (
        "call.disposition_set",
        "resolved",
        1,
    )
    assert (shaped[1]["name"], shaped[1]["length"]) == ("call.notes_updated", 12)
    assert shaped[1]["call"]["disposition"] == "resolved"
    # Through the channel layer and back, as a Redis layer carries it.
    message = json.loads(json.dumps(payloads.to_message(events[0])))
    assert payloads.call_event_from_message(message) == events[0]


def test_it_confirms_a_callback_to_its_caller_and_shows_operators_the_request() -> None:
    request = payloads.callback_summary(
        payloads.CallbackSnapshot(
            callback_id="cb-1",
            state="calling",
            call_id=CALL.call_id,
            queue="billing",
            queue_name="Billing",
            session_id=CALL.session_id,
            display_name="Ada",
            note="after 5pm",
            requested_at="2026-11-30T21:00:00+00:00",
            attempts=1,
            handled_by=USERNAME,
            handled_at="2026-11-30T21:05:00+00:00",
            callback_call_id="call-2",
            online=True,
        )
    )
    ended = replace(CALL, state="cancelled", end_reason="callback_requested")
    asked = recorded("callback.requested", {"callback": request}, ended)
    told = payloads.party_event(asked, "user", "")
    assert told is not None
    assert told["data"] == {
        "name": "callback.requested",
        "state": "cancelled",
        "mode": "bridge",
        "callbackID": "cb-1",
    }
    assert USERNAME not in json.dumps(told)
    assert payloads.party_event(asked, "operator", "") is None  # an API token's socket
    for name in ("callback.calling", "callback.done", "callback.reopened", "callback.expired"):
        assert (
            payloads.party_event(recorded(name, {"callback": request}, ended), "user", "") is None
        )
        shown = payloads.feed_event(recorded(name, {"callback": request}, ended))["data"]
        assert (shown["name"], shown["callback"], shown["callbackID"]) == (name, request, "cb-1")


def test_it_tells_operators_a_transcript_is_ready_and_the_parties_nothing() -> None:
    ready = recorded("transcript.ready", {"recordingID": "rec-1", "utterances": 11})
    assert payloads.party_event(ready, "user", "leg-user") is None
    assert payloads.party_event(ready, "operator", "leg-operator") is None
    shown = payloads.feed_event(ready)["data"]
    assert (shown["name"], shown["recordingID"], shown["utterances"]) == (
        "transcript.ready",
        "rec-1",
        11,
    )
