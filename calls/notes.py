"""Call notes and disposition: who may write them, until when, what is valid, and how the
calls list finds them.

- The operator who handled the call (its operator party: the staff user or API token that
  placed or answered it) writes them during the call and after it, until the later of
  `CALLBRIDGE_NOTES_EDITABLE_S` and the call's queue's wrap-up has passed since it ended.
- Supervisors (staff operators holding `calls.change_callnotes`) write any call's, any time.
- Everyone else is refused FORBIDDEN, end users included; they never read them either
  (calls.api.serializers hides them, the /ws/signal view never passes their events on).
A window that has passed is FORBIDDEN too, not CALL_STATE: the call's state allows notes
(an ended call is where wrap-up happens); this operator's right to change them expired.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from calls import policy
from calls.errors import CallbridgeError, ErrorCode
from calls.models import Call, CallNotes, CallNotesRevision, DispositionCode
from calls.principals import Principal

SUPERVISOR_PERMISSION = "calls.change_callnotes"
SEARCH_MAX_CHARS = 200
SEARCH_MAX_WORDS = 10
# Plain text: printable characters, newlines and tabs (no other control characters, which
# would hide text in the admin and in exports).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Unset:
    """A field the request left out (it keeps its value)."""


UNSET = Unset()


def is_supervisor(principal: Principal) -> bool:
    user = principal.user
    return user is not None and user.is_active and user.has_perm(SUPERVISOR_PERMISSION)


def editable_until(call: Call) -> datetime | None:
    """Until when the call's own operator may change its notes (None: while it is open)."""
    if call.is_open or call.ended_at is None:
        return None
    wrap_up_s = call.queue.wrap_up_s if call.queue is not None else 0
    window = max(int(settings.CALLBRIDGE_NOTES_EDITABLE_S), wrap_up_s)
    return call.ended_at + timedelta(seconds=window)


def require_may_read(principal: Principal) -> None:
    if not principal.is_operator:
        raise CallbridgeError(ErrorCode.FORBIDDEN, "Call notes are for operators only")


def require_may_edit(principal: Principal, call: Call, now: datetime | None = None) -> None:
    require_may_read(principal)
    if is_supervisor(principal):
        return
    if not policy.is_party(principal, call):
        raise CallbridgeError(
            ErrorCode.FORBIDDEN,
            "Only the operator who handled this call, or a supervisor, may write its notes",
        )
    until = editable_until(call)
    if until is not None and (now or timezone.now()) > until:
        raise CallbridgeError(
            ErrorCode.FORBIDDEN,
            f"This call's notes could be changed until {until.isoformat()}; "
            "ask a supervisor to change them now",
        )


def _disposition(code: str | None, call: Call, current: CallNotes | None) -> DispositionCode | None:
    if code is None:
        return None
    found = DispositionCode.objects.filter(code=code).first()
    if found is None:
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, f"code: no disposition code {code!r}")
    if current is not None and current.disposition_id == found.pk:
        return found  # kept as it is, even if it was retired meanwhile
    if not found.active:
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, f"code: {code!r} is no longer in use")
    if not DispositionCode.objects.pickable_for(call).filter(pk=found.pk).exists():
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, f"code: {code!r} is not for this call's queue"
        )
    return found


def clean_notes(notes: str) -> str:
    text = notes.replace("\r\n", "\n").replace("\r", "\n")
    limit = int(settings.CALLBRIDGE_NOTES_MAX_CHARS)
    if len(text) > limit:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, f"notes: at most {limit} characters (got {len(text)})"
        )
    if _CONTROL.search(text):
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, "notes: plain text only (no control characters)"
        )
    return text


def save(
    principal: Principal,
    call: Call,
    *,
    code: str | Unset | None = UNSET,
    notes: str | Unset = UNSET,
    revision: int | None = None,
) -> CallNotes:
    """Set the call's disposition (`code`; None clears it) and/or notes; what is left
    out keeps its value. `revision`: the one the writer edited (CALL_STATE if the notes
    moved on since; None: last save wins). Refusals change nothing."""
    require_may_edit(principal, call)
    if isinstance(code, Unset) and isinstance(notes, Unset):
        raise CallbridgeError(ErrorCode.INVALID_MESSAGE, "Send code, notes or both")
    changes: dict[str, Any] = {}
    if not isinstance(code, Unset):
        changes["disposition"] = _disposition(code, call, CallNotes.of(call))
    if not isinstance(notes, Unset):
        changes["notes"] = clean_notes(notes)
    # Checked again under the call's lock: the call may have ended, or changed hands.
    return CallNotes.save_revision(
        call,
        principal,
        changes=changes,
        check=lambda locked: require_may_edit(principal, locked),
        expected_revision=revision,
    )


def current(call: Call) -> CallNotes | None:
    return CallNotes.objects.select_related("disposition").filter(call=call).first()


def history(call: Call) -> QuerySet[CallNotesRevision]:
    return CallNotesRevision.objects.filter(call=call).select_related("disposition")


# --- the calls list ----------------------------------------------------------------------------
def matching(calls: QuerySet[Call], text: str) -> QuerySet[Call]:
    """Calls whose notes hold every word of `text` (case-insensitive substrings).

    The one place the search is decided, on SQLite and PostgreSQL alike (`icontains`: LIKE
    / ILIKE-style matching, no stemming); a PostgreSQL full-text index could replace it
    here without any caller changing."""
    if len(text) > SEARCH_MAX_CHARS:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, f"q: at most {SEARCH_MAX_CHARS} characters"
        )
    words = text.split()
    if len(words) > SEARCH_MAX_WORDS:
        raise CallbridgeError(ErrorCode.INVALID_ARGUMENT, f"q: at most {SEARCH_MAX_WORDS} words")
    for word in words:
        calls = calls.filter(call_notes__notes__icontains=word)
    return calls


def with_dispositions(calls: QuerySet[Call], codes: list[str]) -> QuerySet[Call]:
    """Calls whose current disposition is one of `codes` (retired codes included)."""
    known = set(DispositionCode.objects.filter(code__in=codes).values_list("code", flat=True))
    unknown = [code for code in codes if code not in known]
    if unknown:
        raise CallbridgeError(
            ErrorCode.INVALID_ARGUMENT, f"disposition: no disposition code {unknown[0]!r}"
        )
    return calls.filter(call_notes__disposition__code__in=codes)
