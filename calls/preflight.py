"""Preflight reports: an end user's page says what it measured before calling; this checks
the report's shape and size, judges it in plain language, and keeps it with the session.

Only the session's own credential may file one (the page's token: one party, never an
operator speaking for it), at most PREFLIGHT_MAX_PER_SESSION of them (counted under the
session's row lock, so concurrent posts cannot pass the cap together).
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.db import transaction
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from calls.errors import CallbridgeError, ErrorCode
from calls.models import Call, EndUserSession, PreflightReport, PreflightVerdict
from calls.principals import Principal

MAX_REPORT_BYTES = 4096
PREFLIGHT_MAX_PER_SESSION = 20
PROBLEM_MAX_CHARS = 200
# The dashboard's call-quality warnings (docs/pages.md): the same thresholds.
RTT_WARNING_MS = 300
JITTER_WARNING_MS = 30
LOSS_WARNING_PERCENT = 3
QUIET_LEVEL = 0.01
# The problems the page's own checks name (frontend/js/preflight.js): shown translated.
PAGE_PROBLEMS = (
    gettext_noop("no sound came back from the service"),
    gettext_noop("no relay address from the TURN server"),
)
TRIGGERS = ("before_call", "on_demand")

# section -> field -> (kind, bound): numbers are 0..bound; strings up to bound characters.
SCHEMA: dict[str, dict[str, tuple[str, float]]] = {
    "microphone": {"ok": ("bool", 0), "level": ("number", 1), "problem": ("text", 200)},
    "echo": {
        "ok": ("bool", 0),
        "rttMs": ("number?", 60_000),
        "jitterMs": ("number?", 60_000),
        "lossPercent": ("number?", 100),
        "packetsReceived": ("integer", 10_000_000),
        "packetsLost": ("integer", 10_000_000),
        "problem": ("text", PROBLEM_MAX_CHARS),
    },
    "turn": {
        "configured": ("bool", 0),
        "reachable": ("bool?", 0),
        "problem": ("text", PROBLEM_MAX_CHARS),
    },
}
REQUIRED = {"microphone": ("ok",), "echo": ("ok",), "turn": ("configured",)}


def _invalid(message: str) -> CallbridgeError:
    return CallbridgeError(ErrorCode.INVALID_ARGUMENT, message)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False


def _valid_value(path: str, kind: str, bound: float, value: Any) -> Any:
    if kind.endswith("?") and value is None:
        return None
    kind = kind.rstrip("?")
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "text" and isinstance(value, str):
        if len(value) > bound:
            raise _invalid(f"`{path}` is longer than {int(bound)} characters")
        return value
    number = isinstance(value, int | float) and not isinstance(value, bool) and _finite(value)
    if kind == "integer" and number and float(value).is_integer():
        value = int(value)
    elif kind != "number" or not number:
        article = "an" if kind == "integer" else "a"
        raise _invalid(f"`{path}` must be {article} {'boolean' if kind == 'bool' else kind}")
    if not 0 <= value <= bound:
        raise _invalid(f"`{path}` must be between 0 and {bound:g}")
    return value


def validate(body: Any) -> dict[str, Any]:
    """The report as stored: known sections and fields only, typed, bounded; else
    INVALID_ARGUMENT (a body too large, a field unknown, missing or out of range)."""
    if not isinstance(body, dict):
        raise CallbridgeError(ErrorCode.INVALID_MESSAGE, "The report must be a JSON object")
    if len(json.dumps(body, separators=(",", ":"))) > MAX_REPORT_BYTES:
        raise _invalid(f"The report is larger than {MAX_REPORT_BYTES} bytes")
    unknown = set(body) - set(SCHEMA) - {"trigger"}
    if unknown:
        raise _invalid(f"Unknown field `{sorted(unknown)[0]}`")
    trigger = body.get("trigger", "before_call")
    if trigger not in TRIGGERS:
        raise _invalid(f"`trigger` must be one of {', '.join(TRIGGERS)}")
    report: dict[str, Any] = {"trigger": trigger}
    for section, fields in SCHEMA.items():
        given = body.get(section)
        if not isinstance(given, dict):
            raise _invalid(f"`{section}` (an object) is required")
        unknown = set(given) - set(fields)
        if unknown:
            raise _invalid(f"Unknown field `{section}.{sorted(unknown)[0]}`")
        missing = [name for name in REQUIRED[section] if name not in given]
        if missing:
            raise _invalid(f"`{section}.{missing[0]}` is required")
        report[section] = {
            name: _valid_value(f"{section}.{name}", *fields[name], value)
            for name, value in given.items()
        }
    return report


def _problem(text: str) -> str:
    return _(text) if text in PAGE_PROBLEMS else text


def assess(report: dict[str, Any]) -> tuple[str, list[str]]:
    """A validated report's verdict and its findings in plain language, worst first, in the
    active language (stored in English: `file_report`; shown translated: `findings`)."""
    problems: list[str] = []
    warnings: list[str] = []
    microphone, echo, turn = report["microphone"], report["echo"], report["turn"]
    if not microphone["ok"]:
        problems.append(
            _("The microphone does not work: %(problem)s") % {"problem": microphone["problem"]}
            if microphone.get("problem")
            else _("The microphone does not work.")
        )
    elif microphone.get("level", 1) < QUIET_LEVEL:
        warnings.append(_("The microphone is very quiet or muted: the operator may not hear you."))
    if not echo["ok"]:
        problems.append(
            _(
                "Sound could not travel to the service and back: "
                "a call would not connect (%(problem)s)."
            )
            % {"problem": _problem(echo["problem"])}
            if echo.get("problem")
            else _("Sound could not travel to the service and back: a call would not connect.")
        )
    else:
        if (echo.get("rttMs") or 0) > RTT_WARNING_MS:
            warnings.append(
                _("The connection is slow (round trip %(ms)s ms): you may talk over each other.")
                % {"ms": f"{echo['rttMs']:.0f}"}
            )
        if (echo.get("jitterMs") or 0) > JITTER_WARNING_MS:
            warnings.append(
                _("The connection is unsteady (jitter %(ms)s ms): sound may break up.")
                % {"ms": f"{echo['jitterMs']:.0f}"}
            )
        if (echo.get("lossPercent") or 0) > LOSS_WARNING_PERCENT:
            warnings.append(
                _("Some sound was lost on the way (%(percent)s%% of packets): sound may break up.")
                % {"percent": f"{echo['lossPercent']:.1f}"}
            )
    if turn["configured"] and turn.get("reachable") is False:
        warnings.append(
            _("The relay server could not be reached: calls from some networks may fail.")
        )
    if problems:
        return PreflightVerdict.PROBLEM, problems + warnings
    if warnings:
        return PreflightVerdict.WARNING, warnings
    return PreflightVerdict.GOOD, [_("Everything works: your microphone and the connection.")]


def findings(report: PreflightReport) -> list[str]:
    """A stored report's findings in the active language (they are stored in English)."""
    return assess(report.report)[1]


def file_report(principal: Principal, body: Any, user_agent: str) -> PreflightReport:
    """The end user's own report, kept with their session."""
    if principal.kind != "end_user" or principal.session is None:
        raise CallbridgeError(
            ErrorCode.FORBIDDEN, "Only the end user's own page may file a preflight report"
        )
    report = validate(body)
    with translation.override("en"):  # stored in English; translated when shown
        verdict, found = assess(report)
    with transaction.atomic():
        session = EndUserSession.objects.select_for_update().get(pk=principal.session.pk)
        if session.preflight_reports.count() >= PREFLIGHT_MAX_PER_SESSION:
            raise CallbridgeError(
                ErrorCode.RATE_LIMITED,
                f"This session already has {PREFLIGHT_MAX_PER_SESSION} preflight reports",
                recoverable=False,
            )
        return PreflightReport.objects.create(
            session=session,
            verdict=verdict,
            findings=found,
            report=report,
            user_agent=user_agent[:300],
        )


def latest_for_call(call: Call) -> PreflightReport | None:
    """The caller's most recent report (their session's), if their page made one."""
    if call.session_id is None:
        return None
    return PreflightReport.objects.filter(session_id=call.session_id).first()
