"""Call detail records (CDRs): one row per call, as CSV or JSON Lines, streamed.

Read in keyset chunks (created_at, id) with each chunk's related rows (legs, recordings,
hold events) fetched for that chunk only, so an export of any size holds one chunk in
memory. The stream is an async iterator that reads each chunk in a thread: Django under
ASGI would buffer a sync iterator whole (StreamingHttpResponse consumes it with
`sync_to_async(list)`), and a chunk's fresh query needs no cursor held across awaits.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from calls.models import Call, CallEvent, Leg, LegRole, Recording

CHUNK_SIZE = 1000
FORMATS = ("csv", "jsonl")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}

# The CSV's columns, in order (JSON Lines has the same keys, with `legs` and `recordings`
# as lists instead of the flattened leg and recording columns).
CALL_COLUMNS = (
    "callID",
    "externalId",
    "direction",
    "mode",
    "state",
    "createdAt",
    "answeredAt",
    "endedAt",
    "endReason",
    "endedBy",
    "queue",
    "queueName",
    "caller",
    "callee",
    "sessionId",
    "displayName",
    "operator",
    "ringS",
    "talkS",
    "holdS",
    "disposition",
    "mos",
)
CSV_COLUMNS = (
    *CALL_COLUMNS,
    "userLegID",
    "userParty",
    "userMediaConnectedAt",
    "operatorLegID",
    "operatorParty",
    "operatorMediaConnectedAt",
    "legCount",
    "recordingIDs",
    "recordingSha256",
)
HOLD_EVENTS = ("call.held", "call.resumed", "call.ended")
# A spreadsheet runs a cell starting with these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


CALL_FIELDS = (
    "id",
    "external_id",
    "direction",
    "mode",
    "state",
    "created_at",
    "answered_at",
    "ended_at",
    "end_reason",
    "ended_by",
    "queue__public_id",
    "queue__name",
    "caller",
    "callee",
    "session_id",
    "session__display_name",
    "operator_user__username",
    "operator_token__name",
    "operator_token__prefix",
    "call_notes__disposition__code",
)
LEG_FIELDS = (
    "call_id",
    "id",
    "role",
    "party",
    "media_state",
    "created_at",
    "media_connected_at",
    "media_ended_at",
    "mos_avg",
    "mos_min",
)
RECORDING_FIELDS = ("call_id", "id", "kind", "state", "started_at", "duration_s", "sha256")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def hold_seconds(events: Iterable[tuple[str, datetime]]) -> float:
    """Held time from a call's `call.held` / `call.resumed` records, in order (its end
    ends a hold too)."""
    total = 0.0
    held_since: datetime | None = None
    for name, at in events:
        if name == "call.held" and held_since is None:
            held_since = at
        elif name != "call.held" and held_since is not None:
            total += (at - held_since).total_seconds()
            held_since = None
    return round(total, 3)


def _grouped(rows: Iterable[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["call_id"]].append(row)
    return groups


def records(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of one chunk of calls (`CALL_FIELDS` values): three more queries, for
    the chunk's legs, recordings and hold events. Plain values, no model instances: an
    export reads many."""
    ids = [call["id"] for call in calls]
    legs = _grouped(Leg.objects.filter(call__in=ids).order_by("created_at").values(*LEG_FIELDS))
    recordings = _grouped(
        Recording.objects.filter(call__in=ids).order_by("started_at").values(*RECORDING_FIELDS)
    )
    holds: dict[Any, list[tuple[str, datetime]]] = defaultdict(list)
    for call_id, name, at in (
        CallEvent.objects.filter(call__in=ids, name__in=HOLD_EVENTS)
        .order_by("created_at", "id")
        .values_list("call_id", "name", "created_at")
    ):
        holds[call_id].append((name, at))
    return [
        record(call, legs.get(call["id"], []), recordings.get(call["id"], []), holds[call["id"]])
        for call in calls
    ]


def record(
    call: dict[str, Any],
    legs: list[dict[str, Any]],
    recordings: list[dict[str, Any]],
    holds: list[tuple[str, datetime]],
) -> dict[str, Any]:
    ring_end = call["answered_at"] or call["ended_at"]
    token = call["operator_token__name"]
    operator = call["operator_user__username"] or (
        f"{token} ({call['operator_token__prefix']}…)" if token is not None else ""
    )
    return {
        "callID": str(call["id"]),
        "externalId": call["external_id"] or "",
        "direction": call["direction"],
        "mode": call["mode"],
        "state": call["state"],
        "createdAt": _iso(call["created_at"]),
        "answeredAt": _iso(call["answered_at"]),
        "endedAt": _iso(call["ended_at"]),
        "endReason": call["end_reason"] or None,
        "endedBy": call["ended_by"],
        "queue": call["queue__public_id"],
        "queueName": call["queue__name"] or "",
        "caller": call["caller"],
        "callee": call["callee"],
        "sessionId": str(call["session_id"]) if call["session_id"] else None,
        "displayName": call["session__display_name"] or "",
        "operator": operator,
        # Ringing (or waiting in its queue) until answered or given up on; talk until the
        # end (None while it lasts: an export is a record of what is over).
        "ringS": _seconds(call["created_at"], ring_end),
        "talkS": _seconds(call["answered_at"], call["ended_at"]),
        "holdS": hold_seconds(holds),
        "disposition": call["call_notes__disposition__code"],
        "mos": call_mos(legs),
        "legs": [
            {
                "legID": str(leg["id"]),
                "role": leg["role"],
                "party": leg["party"],
                "mediaState": leg["media_state"],
                "createdAt": _iso(leg["created_at"]),
                "mediaConnectedAt": _iso(leg["media_connected_at"]),
                "mediaEndedAt": _iso(leg["media_ended_at"]),
                "mosAvg": leg["mos_avg"],
                "mosMin": leg["mos_min"],
            }
            for leg in legs
        ],
        "recordings": [
            {
                "recordingID": str(rec["id"]),
                "kind": rec["kind"],
                "state": rec["state"],
                "startedAt": _iso(rec["started_at"]),
                "durationS": rec["duration_s"],
                "sha256": rec["sha256"] or None,
            }
            for rec in recordings
        ],
    }


def call_mos(legs: list[dict[str, Any]]) -> float | None:
    """The call's MOS: its worse party's (the lower average of the user's and operator's
    legs; a supervisor's own line is not the call's). None: no leg was measured."""
    parties = [
        leg["mos_avg"]
        for leg in legs
        if leg["role"] in (LegRole.USER, LegRole.OPERATOR) and leg["mos_avg"] is not None
    ]
    return min(parties, default=None)


def csv_row(record: dict[str, Any]) -> list[str]:
    legs = {leg["role"]: leg for leg in record["legs"] if leg["role"] != LegRole.SYSTEM}
    flat: dict[str, Any] = {key: record[key] for key in CALL_COLUMNS}
    for role in (LegRole.USER, LegRole.OPERATOR):
        leg = legs.get(role, {})
        flat[f"{role}LegID"] = leg.get("legID")
        flat[f"{role}Party"] = leg.get("party")
        flat[f"{role}MediaConnectedAt"] = leg.get("mediaConnectedAt")
    flat["legCount"] = len(record["legs"])
    flat["recordingIDs"] = " ".join(r["recordingID"] for r in record["recordings"])
    flat["recordingSha256"] = " ".join(r["sha256"] for r in record["recordings"] if r["sha256"])
    return [_cell(flat[column]) for column in CSV_COLUMNS]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text  # shown as text, never run
    return text


def encode(records: Iterable[dict[str, Any]], fmt: str, *, header: bool) -> bytes:
    if fmt == "jsonl":
        return b"".join(
            json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            for record in records
        )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_row(record) for record in records)
    return out.getvalue().encode()


def chunk_after(calls: QuerySet[Call], after: tuple[datetime, Any] | None) -> list[dict[str, Any]]:
    """The next chunk of `calls` (ordered by created_at, id) after the key `after`."""
    if after is not None:
        created_at, pk = after
        # A range on the created_at index (an OR here would scan every call each chunk).
        calls = calls.filter(created_at__gte=created_at).exclude(created_at=created_at, pk__lte=pk)
    return list(calls.order_by("created_at", "id").values(*CALL_FIELDS)[:CHUNK_SIZE])


def _encoded_chunk(
    calls: QuerySet[Call], after: tuple[datetime, Any] | None, fmt: str
) -> tuple[bytes, tuple[datetime, Any] | None]:
    chunk = chunk_after(calls, after)
    if not chunk:
        return b"", None
    data = encode(records(chunk), fmt, header=after is None)
    return data, (chunk[-1]["created_at"], chunk[-1]["id"])


async def stream(calls: QuerySet[Call], fmt: str) -> AsyncIterator[bytes]:
    """The CDRs of `calls`, chunk by chunk (a CSV starts with its header even if empty)."""
    read = sync_to_async(_encoded_chunk)
    after: tuple[datetime, Any] | None = None
    first = True
    while True:
        data, after = await read(calls, after, fmt)
        if first and not data and fmt == "csv":
            data = encode((), fmt, header=True)
        first = False
        if data:
            yield data
        if after is None:
            return


def response(calls: QuerySet[Call], fmt: str) -> StreamingHttpResponse:
    """The CDRs of `calls` streamed as an attachment (the API's and the admin's)."""
    streamed = StreamingHttpResponse(stream(calls, fmt), content_type=CONTENT_TYPES[fmt])
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    streamed["Content-Disposition"] = f'attachment; filename="calls-{stamp}.{fmt}"'
    streamed["Cache-Control"] = "no-store"
    return streamed
