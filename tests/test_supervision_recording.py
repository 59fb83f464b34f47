"""Without media: whom each party hears per supervisor mode and on which track (the pure
ears functions), a barging supervisor's voice rendered into a recording's operator
channel, and the consent a barging supervisor owes a recording in both orders — barge
then record, record then barge — raced in threads under the call's lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calls import consent, supervision
from calls.consent import ConsentMissing, consents_relied_on
from calls.errors import CallbridgeError
from calls.media.capture import MAGIC, RECORD
from calls.media.recorder import mixed
from calls.media.render import render
from calls.media.worker import held_ears, supervised_ears, tracks_heard
from calls.models import ApiToken, Call, EndUserSession, Recording
from calls.principals import Principal
from tests.support.media_peers import opus_tone
from tests.support.queues import in_threads
from tests.support.wav import read_wav, strength

PARTIES = {"user": ("operator",), "operator": ("user",)}


def test_it_lets_each_mode_decide_who_hears_whom() -> None:
    assert supervised_ears(PARTIES, None) == {**PARTIES, "supervisor": ()}
    both = ("user", "operator")
    assert supervised_ears(PARTIES, "monitor") == {**PARTIES, "supervisor": both}
    assert supervised_ears(PARTIES, "whisper") == {
        "user": ("operator",),
        "operator": ("user", "supervisor"),
        "supervisor": both,
    }
    barge = supervised_ears(PARTIES, "barge")
    assert barge == {
        "user": ("operator", "supervisor"),
        "operator": ("user", "supervisor"),
        "supervisor": both,
    }
    # Held: the caller hears nobody; the supervisor and the operator only each other,
    # and only where the mode lets the operator hear the supervisor.
    assert held_ears(barge) == {
        "user": (),
        "operator": ("supervisor",),
        "supervisor": ("operator",),
    }
    assert held_ears(supervised_ears(PARTIES, "monitor")) == {
        "user": (),
        "operator": (),
        "supervisor": ("operator",),
    }


def test_it_puts_each_party_on_its_own_track_of_a_two_track_ear() -> None:
    # One track: everyone heard on it (mixed when several).
    assert tracks_heard(("user", "operator"), 1) == [("user", "operator")]
    assert tracks_heard((), 1) == [()]
    # Two: the user on the first, the operator on the second, in every mode; a party
    # not heard (held) leaves its track empty rather than moving the other onto it.
    assert tracks_heard(("user", "operator"), 2) == [("user",), ("operator",)]
    assert tracks_heard(("operator",), 2) == [(), ("operator",)]
    assert tracks_heard((), 2) == [(), ()]


def record(channel: int, at_s: float, payload: bytes) -> bytes:
    return RECORD.pack(channel, int(at_s * 1_000_000), len(payload)) + payload


def test_it_renders_a_barging_supervisor_into_the_operators_channel(tmp_path: Path) -> None:
    user, operator, supervisor = opus_tone(440, 2.0), opus_tone(880, 2.0), opus_tone(1250, 2.0)
    capture = bytearray(MAGIC)
    for index in range(100):  # 2 s; the supervisor barges in the second one only
        at = index * 0.02 + 0.005
        capture += record(0, at, user[index]) + record(1, at + 0.001, operator[index])
        if at >= 1.0:
            capture += record(2, at + 0.002, supervisor[index])
    capture_file, wav_file = tmp_path / "call.wav.capture", tmp_path / "call.wav"
    capture_file.write_bytes(bytes(capture))
    render(capture_file, wav_file, 2.0)
    left, right, seconds = read_wav(wav_file)  # still the stereo every player reads
    assert seconds == 2.0
    before, barging = slice(4800, 48000), slice(52800, 96000)
    assert strength(right[before], 1250) < 0.02 and strength(right[before], 880) > 0.5
    assert strength(right[barging], 1250) > 0.5 and strength(right[barging], 880) > 0.5
    for period in (before, barging):
        assert strength(left[period], 440) > 0.5 and strength(left[period], 1250) < 0.02
    # Mixing saturates instead of wrapping round.
    loud = np.full(4, 30000, dtype=np.int16)
    assert mixed(loud, loud).tolist() == [32767] * 4


def a_call_whose_parties_consented(supervisor: Principal) -> tuple[Call, Principal]:
    """An answered call (no media worker: nothing is told one), both parties' consents on
    file, a supervisor monitoring it."""
    session, _ = EndUserSession.create(ttl_seconds=600, display_name="Ada")
    token, _ = ApiToken.create("desk")
    call = Call.start(by=Principal.end_user(session), mode="bridge", media_worker="")
    call.answer(Principal.for_api_token(token))
    for party, method in (
        (Principal.end_user(session), "page"),
        (Principal.for_api_token(token), "api"),
    ):
        consent.record_answer(
            party, call, granted=True, policy_version="1", method=method, ip=None, user_agent=""
        )
    supervision.supervise(supervisor, call, "monitor")
    return call, Principal.for_api_token(token)


def barge_or_record(supervisor: Principal, operator: Principal, call: Call) -> list[Any]:
    """The supervisor barges and the operator starts recording, at the same instant."""

    def act(which: str) -> Any:
        fresh = Call.objects.get(pk=call.pk)
        if which == "barge":
            return supervision.supervise(supervisor, fresh, "barge")
        return Recording.begin(fresh, operator, f"{call.pk}.wav", consents=consents_relied_on)

    return in_threads(act, ["barge", "record"])


@pytest.mark.django_db(transaction=True)
def test_it_never_records_a_barging_supervisor_without_consent_whichever_comes_first(
    supervisor_user: Any,
) -> None:
    sam = Principal.staff(supervisor_user)
    firsts = set()
    for _ in range(12):
        call, operator = a_call_whose_parties_consented(sam)
        barged, recorded = barge_or_record(sam, operator, call)
        # Exactly one: a barge into a recording needs the supervisor's consent, and so
        # does a recording of a barge; whichever took the call's lock first decides.
        failures = [r for r in (barged, recorded) if isinstance(r, Exception)]
        assert len(failures) == 1, (barged, recorded)
        (failure,) = failures
        if failure is barged:
            assert isinstance(failure, CallbridgeError) and failure.code == "CONSENT_REQUIRED"
            assert failure.details["missing"] == ["supervisor"]
        else:
            assert isinstance(failure, ConsentMissing), failure
            assert failure.status.missing == ["supervisor"]
        firsts.add("barge" if failure is recorded else "record")
        running = Recording.objects.filter(call=call, state="recording").count()
        mode = supervision.current_mode(Call.objects.get(pk=call.pk))
        assert (running, mode) == ((0, "barge") if failure is recorded else (1, "monitor"))
    assert firsts  # (which wins each time is the scheduler's)

    # With the supervisor's consent on file, both happen, and a recording that began after
    # the barge relies on it (the supervisor is a party it needs).
    for _ in range(6):
        call, operator = a_call_whose_parties_consented(sam)
        consent.record_answer(
            sam, call, granted=True, policy_version="1", method="dashboard", ip=None, user_agent=""
        )
        barged, recorded = barge_or_record(sam, operator, call)
        assert not isinstance(barged, Exception) and isinstance(recorded, Recording)
        relied_on = set(recorded.consents.values_list("role", flat=True))
        events = list(call.events.order_by("id").values_list("name", flat=True))
        barge_first = events.index("supervisor.mode_changed") < events.index("recording.started")
        assert relied_on == (
            {"user", "operator", "supervisor"} if barge_first else {"user", "operator"}
        )
