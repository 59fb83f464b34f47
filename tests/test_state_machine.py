"""The call state machine: every legal and illegal move, driven through the model verbs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from calls.errors import CallbridgeError, CallStateError, ErrorCode
from calls.models import Call, CallEvent, CallState, EndReason, EndUserSession, Queue
from calls.models.call import TRANSITIONS, CallAction
from calls.principals import SYSTEM, Principal

pytestmark = pytest.mark.django_db

Parties = tuple[Principal, Principal]  # (end user, operator)


@pytest.fixture
def parties(
    make_session: Callable[..., tuple[EndUserSession, str]], operator: Principal
) -> Parties:
    session, _ = make_session()
    return Principal.end_user(session), operator


def call_in(state: CallState, parties: Parties) -> Call:
    """An inbound bridge call brought to `state` through legal moves only."""
    user, operator = parties
    call = Call.start(by=user, mode="bridge", media_worker="embedded")
    if state == CallState.ACTIVE:
        call.answer(operator)
    elif state == CallState.ENDED:
        call.answer(operator)
        call.hang_up(user)
    elif state == CallState.MISSED:
        call.miss()
    elif state == CallState.REJECTED:
        call.reject(operator)
    elif state == CallState.CANCELLED:
        call.hang_up(user)
    elif state == CallState.VOICEMAIL:
        call.offer_voicemail(None, {})
    assert call.state == state
    return call


# Who performs each action in the table test (the end user is the caller here).
ACTORS: dict[CallAction, Callable[[Parties], Principal]] = {
    CallAction.ANSWER: lambda p: p[1],
    CallAction.REJECT: lambda p: p[1],
    CallAction.CANCEL: lambda p: p[0],
    CallAction.MISS: lambda p: SYSTEM,
    CallAction.REFUSE: lambda p: SYSTEM,
    CallAction.REQUEST_CALLBACK: lambda p: p[0],
    CallAction.HANG_UP: lambda p: p[0],
    CallAction.TERMINATE: lambda p: SYSTEM,
    CallAction.OFFER_VOICEMAIL: lambda p: SYSTEM,
    CallAction.LEAVE_MESSAGE: lambda p: p[0],
    CallAction.TRANSFER: lambda p: p[1],
}
EXPECTED_REASONS = {
    CallAction.REJECT: "rejected",
    CallAction.CANCEL: "cancelled",
    CallAction.MISS: "missed",
    CallAction.REFUSE: "no_operator",
    CallAction.REQUEST_CALLBACK: "callback_requested",
    CallAction.HANG_UP: "hangup",
    CallAction.TERMINATE: "media_failure",
    CallAction.LEAVE_MESSAGE: "voicemail",
}
CASES = [(action, state) for action in CallAction for state in CallState]


def test_it_lists_exactly_the_documented_moves() -> None:
    assert {(a.value, s.value, t.value) for (a, s), t in TRANSITIONS.items()} == {
        ("answer", "ringing", "active"),
        ("reject", "ringing", "rejected"),
        ("cancel", "ringing", "cancelled"),
        ("miss", "ringing", "missed"),
        ("refuse", "ringing", "missed"),
        ("request callback", "ringing", "cancelled"),
        ("hang up", "active", "ended"),
        # A blind transfer (Call.transfer): the call rings again, the caller on the line;
        # ending it then is a hang-up.
        ("transfer", "active", "ringing"),
        ("hang up", "ringing", "ended"),
        ("terminate", "ringing", "cancelled"),
        ("terminate", "active", "ended"),
        # The voicemail stage (calls/voicemail.py): out of the line, nobody answers it.
        ("offer voicemail", "ringing", "voicemail"),
        ("cancel", "voicemail", "cancelled"),
        ("refuse", "voicemail", "missed"),
        ("leave message", "voicemail", "ended"),
        ("request callback", "voicemail", "cancelled"),  # before a message starts
        ("terminate", "voicemail", "ended"),
    }


@pytest.mark.parametrize(("action", "state"), CASES, ids=[f"{a}-from-{s}" for a, s in CASES])
def test_it_applies_legal_moves_and_refuses_illegal_ones(
    action: CallAction, state: CallState, parties: Parties
) -> None:
    call = call_in(state, parties)
    events_before = list(CallEvent.objects.filter(call=call).values_list("id", flat=True))
    actor = ACTORS[action](parties)
    reason = EndReason.MEDIA_FAILURE if action is CallAction.TERMINATE else None
    target = TRANSITIONS.get((action, state))

    def move() -> CallEvent:
        if action is CallAction.TRANSFER:
            return call.transfer(actor, to_queue=Queue.objects.default())
        return call._transition(lambda _: action, actor, reason=reason)

    if target is None:
        with pytest.raises(CallStateError) as raised:
            move()
        assert raised.value.code is ErrorCode.CALL_STATE
        assert Call.objects.get(pk=call.pk).state == state
        assert list(CallEvent.objects.filter(call=call).values_list("id", flat=True)) == (
            events_before
        )
        return

    event = move()
    stored = Call.objects.get(pk=call.pk)
    assert stored.state == target == call.state
    assert event.data["from"] == state and event.data["state"] == target
    if target == CallState.RINGING:  # then the line it rings in: queue.joined
        assert event.name == "call.transfer_started" and stored.ring_deadline is not None
        assert stored.answered_at is not None and stored.operator_token is None
        return
    assert list(CallEvent.objects.filter(call=call).order_by("id"))[-1] == event
    assert (event.actor, event.actor_role) == (actor.label, actor.role)
    assert stored.ring_deadline is None
    if target == CallState.ACTIVE:
        assert event.name == "call.answered"
        assert stored.answered_at is not None and stored.ended_at is None
    elif target == CallState.VOICEMAIL:
        assert event.name == "queue.voicemail_offered"
        assert stored.answered_at is None and stored.ended_at is None
    else:
        assert event.name == "call.ended"
        assert stored.end_reason == EXPECTED_REASONS[action] == event.data["reason"]
        assert stored.ended_at is not None
        assert (stored.ended_by, stored.ended_by_role) == (actor.label, actor.role)


@pytest.mark.parametrize(
    ("state", "who", "expected"),
    [
        ("ringing", "caller", ("cancelled", "cancelled")),
        ("ringing", "callee", ("rejected", "rejected")),
        ("active", "caller", ("ended", "hangup")),
        ("active", "callee", ("ended", "hangup")),
        ("voicemail", "caller", ("cancelled", "cancelled")),  # no message: gave up
    ],
)
def test_it_maps_hang_up_to_the_right_move(
    state: CallState, who: str, expected: tuple[str, str], parties: Parties
) -> None:
    call = call_in(state, parties)
    user, operator = parties
    call.hang_up(user if who == "caller" else operator)
    assert (call.state, call.end_reason) == expected


def test_it_rejects_when_the_callee_hangs_up_a_ringing_call(parties: Parties) -> None:
    _user, operator = parties
    call = call_in(CallState.RINGING, parties)
    call.hang_up(operator)
    assert (call.state, call.end_reason, call.ended_by_role) == ("rejected", "rejected", "operator")


def test_it_cancels_an_outbound_call_its_operator_hangs_up(parties: Parties) -> None:
    user, operator = parties
    call = Call.start(by=operator, mode="bridge", media_worker="embedded", session=user.session)
    assert (call.state, call.direction, call.caller_role) == ("ringing", "outbound", "operator")
    call.hang_up(operator)
    assert (call.state, call.end_reason) == ("cancelled", "cancelled")


def test_it_records_who_answered_and_their_leg(parties: Parties) -> None:
    user, operator = parties
    call = call_in(CallState.RINGING, parties)
    event = call.answer(operator)
    stored = Call.objects.get(pk=call.pk)
    assert stored.operator_token == operator.api_token
    legs = {leg.role: leg for leg in stored.legs.all()}
    assert set(legs) == {"user", "operator"}
    assert event.data["legID"] == str(legs["operator"].pk)
    assert legs["operator"].party == operator.label
    assert legs["user"].session == user.session


def test_it_starts_echo_calls_active_with_one_leg(parties: Parties) -> None:
    user, _ = parties
    call = Call.start(by=user, mode="echo", media_worker="embedded")
    assert call.state == CallState.ACTIVE and call.answered_at == call.created_at
    assert call.ring_deadline is None
    assert [leg.role for leg in call.legs.all()] == ["user"]
    names = list(call.events.values_list("name", flat=True))
    assert names == ["call.created"]


def test_it_keeps_a_complete_timeline(parties: Parties) -> None:
    _user, _operator = parties
    call = call_in(CallState.ENDED, parties)
    timeline = [(e.name, e.actor_role, e.data.get("state")) for e in call.events.all()]
    assert timeline == [
        ("call.created", "user", "ringing"),
        ("queue.joined", "user", None),
        ("call.answered", "operator", "active"),
        ("call.ended", "user", "ended"),
    ]


def test_it_refuses_unknown_modes_and_modes_without_a_callee(parties: Parties) -> None:
    user, operator = parties
    with pytest.raises(CallbridgeError) as unknown:
        Call.start(by=user, mode="conference", media_worker="embedded")
    assert unknown.value.code is ErrorCode.INVALID_ARGUMENT
    with pytest.raises(CallbridgeError) as no_callee:
        Call.start(by=operator, mode="bridge", media_worker="embedded")
    assert no_callee.value.code is ErrorCode.INVALID_ARGUMENT
    assert Call.objects.count() == 0


def test_it_refuses_a_second_bridge_call_for_a_busy_session(parties: Parties) -> None:
    user, operator = parties
    Call.start(by=user, mode="bridge", media_worker="embedded")
    with pytest.raises(CallStateError):
        Call.start(by=operator, mode="bridge", media_worker="embedded", session=user.session)
    Call.start(by=user, mode="echo", media_worker="embedded")  # a microphone test is still allowed
    assert Call.objects.filter(mode="bridge").count() == 1


def test_it_refuses_to_ring_an_expired_or_revoked_session(
    make_session: Callable[..., tuple[EndUserSession, str]], operator: Principal
) -> None:
    expired, _ = make_session(ttl_seconds=0)
    revoked, _ = make_session()
    revoked.revoke()
    for session in (expired, revoked):
        with pytest.raises(CallbridgeError) as raised:
            Call.start(by=operator, mode="bridge", media_worker="embedded", session=session)
        assert raised.value.code is ErrorCode.INVALID_ARGUMENT
    assert Call.objects.count() == 0


def test_it_only_lets_the_system_terminate_with_system_reasons(parties: Parties) -> None:
    call = call_in(CallState.ACTIVE, parties)
    with pytest.raises(ValueError):
        call.terminate(EndReason.HANGUP)
    call.terminate(EndReason.SERVER_RESTART)
    assert (call.state, call.end_reason, call.ended_by) == ("ended", "server_restart", "system")
    assert call.ended_by_role == SYSTEM.role


def test_it_keeps_call_events_append_only(parties: Parties) -> None:
    call = call_in(CallState.ACTIVE, parties)
    event = call.events.first()
    event.name = "tampered"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        CallEvent.objects.filter(call=call).update(name="tampered")
    with pytest.raises(PermissionError):
        CallEvent.objects.filter(call=call).delete()
    assert not CallEvent.objects.filter(name="tampered").exists()
    assert call.events.count() == 3  # created, queue.joined, answered


def test_it_marks_only_overdue_ringing_calls_missed(parties: Parties, settings: Any) -> None:
    user, _operator = parties
    settings.CALLBRIDGE_RING_TIMEOUT_S = 1
    overdue = Call.start(by=user, mode="bridge", media_worker="embedded")
    Call.objects.filter(pk=overdue.pk).update(ring_deadline=overdue.created_at)
    settings.CALLBRIDGE_RING_TIMEOUT_S = 3600
    other_session = EndUserSession.create(ttl_seconds=600)[0]
    fresh = Call.start(by=Principal.end_user(other_session), mode="bridge", media_worker="embedded")
    assert Call.expire_overdue() == [overdue.pk]
    assert Call.objects.get(pk=overdue.pk).state == "missed"
    assert Call.objects.get(pk=fresh.pk).state == "ringing"
