"""Call detail records: `GET /api/calls/export` and the admin action, CSV and JSON Lines,
values for known calls, filters, who may, and constant memory at 100,000 calls."""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db.models import QuerySet
from django.test import Client
from django.utils import timezone

from calls import cdr
from calls.models import (
    Call,
    CallEvent,
    CallNotes,
    CallState,
    DispositionCode,
    EndUserSession,
    Queue,
)
from calls.principals import Principal
from tests.support.queues import call_in, make_operator, make_queue, wait_passes
from tests.support.recordings import finished_recording
from tests.support.rest_client import assert_error, bearer_client, streamed_body

pytestmark = pytest.mark.django_db


def shift(call: Call, **fields: Any) -> None:
    """Pin a call's instants (and its events') so durations are known exactly."""
    Call.objects.filter(pk=call.pk).update(**fields)


def backdate(event: CallEvent, at: Any) -> None:
    """Move a record in time (the test's clock; its manager refuses any update)."""
    QuerySet(model=CallEvent).filter(pk=event.pk).update(created_at=at)


@pytest.fixture
def known_calls(
    settings: Any,
    tmp_path: Path,
    operator: Principal,
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> tuple[Call, Call]:
    """A talked call (queued, answered by the token, held, recorded, with a disposition)
    and a missed one, at known instants."""
    settings.MEDIA_ROOT = tmp_path
    queue = make_queue("sales", [make_operator("bob", available=False)], open_answer=True)
    talked = call_in(queue, make_session, "=Ada")  # a name that would be a formula
    talked.answer(operator)
    talked.hold(operator)
    talked.resume(operator)
    talked.hold(operator)
    recording = finished_recording(talked, operator, tmp_path, "talked.wav")
    talked.hang_up(operator)  # ends the second hold too
    t0 = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    shift(talked, created_at=t0, answered_at=t0 + timedelta(seconds=12))
    shift(talked, ended_at=t0 + timedelta(seconds=312))
    holds = CallEvent.objects.filter(call=talked, name__in=cdr.HOLD_EVENTS).order_by("id")
    for event, offset in zip(holds, (20, 50, 290, 312), strict=True):  # 30 s + 22 s held
        backdate(event, t0 + timedelta(seconds=offset))
    code = DispositionCode.objects.create(code="sale", label="Sale")
    CallNotes.objects.create(call=talked, disposition=code, revision=1)

    missed = call_in(queue, make_session, "Bo")
    wait_passes(missed)
    shift(missed, created_at=t0 + timedelta(minutes=10))
    shift(missed, ended_at=t0 + timedelta(minutes=10, seconds=45))
    talked.refresh_from_db()
    missed.refresh_from_db()
    assert missed.state == CallState.MISSED and recording.sha256
    return talked, missed


def test_it_exports_known_calls_as_csv_and_json_lines(
    known_calls: tuple[Call, Call], operator_client: Any, operator: Principal
) -> None:
    talked, missed = known_calls
    recording = talked.recordings.get()
    user_leg = talked.legs.get(role="user")

    lines = streamed_body(operator_client.get("/api/calls/export?format=jsonl")).splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["callID"] == str(talked.pk) and second["callID"] == str(missed.pk)
    assert {key: first[key] for key in ("direction", "mode", "state", "queue", "queueName")} == {
        "direction": "inbound",
        "mode": "bridge",
        "state": "ended",
        "queue": "sales",
        "queueName": "Sales",
    }
    assert (first["ringS"], first["talkS"], first["holdS"]) == (12.0, 300.0, 52.0)
    assert first["endReason"] == "hangup" and first["endedBy"] == operator.label
    assert first["disposition"] == "sale" and first["mos"] is None
    assert first["operator"] == str(operator.api_token) and first["displayName"] == "=Ada"
    assert first["legs"][0]["role"] == "user" and first["legs"][0]["legID"] == str(user_leg.pk)
    assert {leg["role"] for leg in first["legs"]} == {"user", "operator"}
    assert first["recordings"] == [
        {
            "recordingID": str(recording.pk),
            "kind": "call",
            "state": "finished",
            "startedAt": recording.started_at.isoformat(),
            "durationS": recording.duration_s,
            "sha256": recording.sha256,
        }
    ]
    assert (second["ringS"], second["talkS"], second["holdS"]) == (45.0, None, 0.0)
    assert second["endReason"] == "missed" and second["disposition"] is None

    response = operator_client.get("/api/calls/export")  # CSV by default
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="calls-')
    rows = list(csv.DictReader(io.StringIO(streamed_body(response).decode())))
    assert list(rows[0]) == list(cdr.CSV_COLUMNS)
    assert [row["callID"] for row in rows] == [str(talked.pk), str(missed.pk)]
    assert rows[0]["displayName"] == "'=Ada"  # text in a spreadsheet, never a formula
    assert (rows[0]["ringS"], rows[0]["talkS"], rows[0]["holdS"]) == ("12.0", "300.0", "52.0")
    assert rows[0]["recordingSha256"] == recording.sha256
    assert rows[0]["userLegID"] == str(user_leg.pk) and rows[0]["legCount"] == "2"
    assert rows[0]["mos"] == "" and rows[1]["talkS"] == "" and rows[1]["endReason"] == "missed"


def test_it_filters_and_refuses_who_may_not_export(
    known_calls: tuple[Call, Call],
    operator_client: Any,
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    talked, missed = known_calls

    def exported(query: str) -> list[str]:
        body = streamed_body(operator_client.get(f"/api/calls/export?format=jsonl&{query}"))
        return [json.loads(line)["callID"] for line in body.splitlines()]

    since = (talked.created_at + timedelta(minutes=5)).isoformat()
    assert exported(f"from={since.replace('+', '%2B')}") == [str(missed.pk)]
    until = (talked.created_at + timedelta(minutes=5)).isoformat().replace("+", "%2B")
    start = talked.created_at.isoformat().replace("+", "%2B")
    assert exported(f"from={start}&to={until}") == [str(talked.pk)]
    assert exported("endReason=missed") == [str(missed.pk)]
    assert exported("queue=nowhere") == []
    empty = streamed_body(operator_client.get("/api/calls/export?queue=nowhere"))
    assert empty.decode().splitlines() == [",".join(cdr.CSV_COLUMNS)]

    assert_error(operator_client.get("/api/calls/export?format=xml"), 400, "INVALID_ARGUMENT")
    assert_error(operator_client.get("/api/calls/export?from=soon"), 400, "INVALID_ARGUMENT")
    _, user_token = make_session()
    assert_error(bearer_client(user_token).get("/api/calls/export"), 403, "FORBIDDEN")
    assert Client().get("/api/calls/export").status_code == 401


def test_it_exports_selected_calls_from_the_admin(
    known_calls: tuple[Call, Call], superuser: Any
) -> None:
    _, missed = known_calls
    admin = Client()
    admin.force_login(superuser)
    response = admin.post(
        "/admin/calls/call/",
        {"action": "export_jsonl", "_selected_action": [str(missed.pk)]},
    )
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    records = [json.loads(line) for line in streamed_body(response).splitlines()]
    assert [r["callID"] for r in records] == [str(missed.pk)]
    every = admin.post(
        "/admin/calls/call/",
        {"action": "export_csv", "select_across": "1", "_selected_action": [str(missed.pk)]},
    )
    assert len(streamed_body(every).decode().splitlines()) == 3  # the header and both calls


def many_calls(count: int, start: Any, queue: Queue) -> None:
    """`count` ended calls, a second apart from `start`, inserted in bulk (ids in order:
    appended to the primary key's index, not scattered through it)."""
    base = uuid.uuid4().int & ~0xFFFFFFFF
    for first in range(0, count, 10_000):
        Call.objects.bulk_create(
            Call(
                id=uuid.UUID(int=base + n),
                state=CallState.ENDED,
                mode="bridge",
                direction="inbound",
                created_by="bulk",
                created_at=start + timedelta(seconds=n),
                answered_at=start + timedelta(seconds=n, milliseconds=500),
                ended_at=start + timedelta(seconds=n + 1),
                end_reason="hangup",
                queue=queue,
                caller=f"+4930{n:07d}",
            )
            for n in range(first, min(first + 10_000, count))
        )


def memory_in_use() -> tuple[int, int]:
    """Python's small-object blocks in use, and the process's resident bytes now (big
    buffers live outside those blocks)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return sys.getallocatedblocks(), resident_pages * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.bulk
def test_it_exports_100000_calls_in_constant_memory(operator_client: Any) -> None:
    start = timezone.now().replace(microsecond=0) - timedelta(days=3)
    many_calls(100_000, start, Queue.objects.default())

    def growth_of(query: str) -> tuple[int, int, int]:
        """Rows exported, and the most the memory in use grew beyond where it was, sampled
        as each chunk arrives (tracemalloc would make this minute a six-minute one)."""
        response = operator_client.get(f"/api/calls/export?format=jsonl&{query}")

        async def read() -> tuple[int, int, int]:
            gc.collect()
            blocks_before, resident_before = memory_in_use()
            lines = blocks = resident = 0
            async for chunk in response.streaming_content:  # as a server sends them
                lines += chunk.count(b"\n")
                blocks_now, resident_now = memory_in_use()
                blocks = max(blocks, blocks_now - blocks_before)
                resident = max(resident, resident_now - resident_before)
            return lines, blocks, resident

        return async_to_sync(read)()

    ten_thousand = (start + timedelta(seconds=10_000)).isoformat().replace("+", "%2B")
    small_lines, small_blocks, small_resident = growth_of(f"to={ten_thousand}&from=2000-01-01")
    all_lines, all_blocks, all_resident = growth_of("")
    assert (small_lines, all_lines) == (10_000, 100_000)
    # Ten times the rows (a ~50 MB body), the same memory: one chunk's worth.
    assert all_blocks < small_blocks * 1.5 + 5_000, (small_blocks, all_blocks)
    assert all_resident < small_resident + 8_000_000, (small_resident, all_resident)
    assert all_resident < 20_000_000, all_resident
