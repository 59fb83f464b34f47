"""Tamper-evident audit (issue 17 item 6): call events, recording consents and recording
accesses in one hash chain per table; `manage.py verify_audit` names the first altered,
missing or inserted row of each; rows chained under concurrency without a fork."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, models
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from calls import audit_format
from calls.audit_sealer import AuditSealer
from calls.consent import record_answer
from calls.models import (
    AuditChainHead,
    Call,
    CallEvent,
    EndUserSession,
    Recording,
    RecordingAccess,
    RecordingConsent,
)
from calls.models.audit_chain import ChainedModel, _Sealer, seal
from calls.principals import Principal
from calls.recording_files import log_access
from tests.support.queues import in_threads
from tests.support.recordings import finished_recording

CHAINED: list[type[ChainedModel]] = [CallEvent, RecordingConsent, RecordingAccess]
CHAIN_COLUMNS = {"id", "chain_seq", "chain_prev", "chain_hash"}


def verify_audit(*args: str) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of `manage.py verify_audit`."""
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=err)
    except CommandError as error:
        return error.returncode, out.getvalue(), err.getvalue() + str(error)
    return 0, out.getvalue(), err.getvalue()


def sql(statement: str, *params: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def in_chain(model: type[ChainedModel]) -> list[Any]:
    return list(models.QuerySet(model).order_by("chain_seq"))


def placed_and_recorded(
    make_session: Callable[..., tuple[EndUserSession, str]],
    operator: Principal,
    media_root: Path,
    name: str = "ada.wav",
) -> Call:
    """A call answered, consented to (and withdrawn, and again), recorded, listened to
    three times and hung up: rows in all three chains."""
    session, _ = make_session()
    user = Principal.end_user(session)
    call = Call.start(by=user, mode="bridge", media_worker="embedded")
    call.answer(operator)
    for granted in (True, False, True):
        record_answer(
            user,
            call,
            granted=granted,
            policy_version="2026-10",
            method="page",
            ip="127.0.0.1",
            user_agent="test browser",
        )
    recording = finished_recording(call, operator, media_root, name)
    for download in (False, True, False):
        log_access(recording, user=None, username="auditor", download=download, ip="127.0.0.1")
    call.hang_up(user)
    return call


@pytest.fixture
def chained(
    settings: Any,
    tmp_path: Path,
    operator: Principal,
    make_session: Callable[..., tuple[EndUserSession, str]],
    django_capture_on_commit_callbacks: Any,
) -> Call:
    settings.MEDIA_ROOT = tmp_path
    settings.CALLBRIDGE_CONSENT_POLICY_VERSION = "2026-10"
    with django_capture_on_commit_callbacks(execute=True):
        return placed_and_recorded(make_session, operator, tmp_path)


def forge_event(call: Call, seq: int | None, previous_hash: str, created_at: Any) -> int:
    """An event row inserted with raw SQL, as a forger who knows the hash format would:
    its hash computed over its content and linked to the chain's last row."""
    fields = {
        "call_id": call.pk,
        "leg_id": None,
        "name": "call.answered",
        "actor": "mallory",
        "actor_role": "operator",
        "data": {},
        "created_at": created_at,
    }
    digest = ""
    if seq is not None:
        row = audit_format.canonical("calls.callevent", seq, fields)
        digest = audit_format.link(previous_hash, row)
    sql(
        "INSERT INTO calls_callevent (call_id, name, actor, actor_role, data, created_at,"
        " chain_seq, chain_prev, chain_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        call.pk.hex,
        "call.answered",
        "mallory",
        "operator",
        "{}",
        created_at,
        seq,
        previous_hash if seq is not None else "",
        digest,
    )
    return models.QuerySet(CallEvent).filter(actor="mallory").get().pk


pytestmark = pytest.mark.django_db


def test_it_chains_every_audit_row_and_verifies_an_intact_chain(chained: Call) -> None:
    for model in CHAINED:
        rows = in_chain(model)
        assert len(rows) >= 3
        assert [row.chain_seq for row in rows] == list(range(1, len(rows) + 1))
        previous = audit_format.GENESIS
        for row in rows:
            assert row.chain_prev == previous and len(row.chain_hash) == 64
            previous = row.chain_hash
        head = AuditChainHead.objects.get(chain=model._meta.label_lower)
        assert (head.seq, head.hash) == (len(rows), rows[-1].chain_hash)
    code, out, err = verify_audit()
    assert (code, err) == (0, "")
    for model in CHAINED:
        rows = in_chain(model)
        anchor = f"{model._meta.label_lower}:{len(rows)}:{rows[-1].chain_hash}"
        assert f"{model._meta.label_lower}: intact, {len(rows)} rows; anchor {anchor}" in out
    assert out.endswith("Every audit chain is intact.\n")
    # The ORM still refuses to change an audit row, chained or not.
    with pytest.raises(PermissionError):
        CallEvent.objects.filter(call=chained).update(actor="mallory")


def _event(position: int) -> CallEvent:
    return models.QuerySet(CallEvent).get(chain_seq=position)


def _alter_event(call: Call) -> str:
    row = _event(3)
    sql("UPDATE calls_callevent SET actor = %s WHERE id = %s", "mallory", row.pk)
    return f"calls.callevent: row id {row.pk} (position 3): altered"


def _alter_consent(call: Call) -> str:
    row = models.QuerySet(RecordingConsent).get(chain_seq=2)
    sql("UPDATE calls_recordingconsent SET granted = %s WHERE id = %s", True, row.pk)
    return f"calls.recordingconsent: row id {row.pk} (position 2): altered"


def _alter_access(call: Call) -> str:
    row = models.QuerySet(RecordingAccess).get(chain_seq=1)
    sql("UPDATE calls_recordingaccess SET at = %s WHERE id = %s", timezone.now(), row.pk)
    return f"calls.recordingaccess: row id {row.pk} (position 1): altered"


def _delete_event(call: Call) -> str:
    before, after = _event(2), _event(4)
    sql("DELETE FROM calls_callevent WHERE id = %s", _event(3).pk)
    return (
        f"calls.callevent: row id {after.pk} (position 4): missing before it: positions "
        f"3..3 (after row id {before.pk}) are gone"
    )


def _delete_last_event(call: Call) -> str:
    rows = in_chain(CallEvent)
    sql("DELETE FROM calls_callevent WHERE id = %s", rows[-1].pk)
    n = len(rows)
    return f"calls.callevent: the chain: missing: positions {n}..{n} after row id {rows[-2].pk}"


def _rewrite_event_and_its_hash(call: Call) -> str:
    row, following = _event(3), _event(4)
    fields = {name: getattr(row, name) for name in CallEvent.CHAIN_FIELDS}
    fields["actor"] = "mallory"
    digest = audit_format.link(row.chain_prev, audit_format.canonical("calls.callevent", 3, fields))
    sql(
        "UPDATE calls_callevent SET actor = %s, chain_hash = %s WHERE id = %s",
        "mallory",
        digest,
        row.pk,
    )
    return f"calls.callevent: row id {following.pk} (position 4): does not follow row id {row.pk}"


def _forge_event_in_the_chain(call: Call) -> str:
    last = in_chain(CallEvent)[-1]
    seq = last.chain_seq + 1
    forged = forge_event(call, seq, last.chain_hash, timezone.now())
    return f"calls.callevent: row id {forged} (position {seq}): inserted: it lies past"


def _forge_event_outside_the_chain(call: Call) -> str:
    forged = forge_event(call, None, "", timezone.now() - timedelta(hours=2))
    return f"calls.callevent: row id {forged}: not in the chain"


@pytest.mark.parametrize(
    "tamper",
    [
        _alter_event,
        _alter_consent,
        _alter_access,
        _delete_event,
        _delete_last_event,
        _rewrite_event_and_its_hash,
        _forge_event_in_the_chain,
        _forge_event_outside_the_chain,
    ],
    ids=lambda tamper: tamper.__name__.strip("_"),
)
def test_it_names_the_first_altered_missing_or_inserted_row(
    chained: Call, tamper: Callable[[Call], str]
) -> None:
    expected = tamper(chained)
    code, out, err = verify_audit()
    assert code == 1
    assert expected in err, err
    assert "1 audit chain(s) broken" in err
    broken = expected.split(":")[0]
    for model in CHAINED:  # the other chains are still reported intact
        if model._meta.label_lower != broken:
            assert f"{model._meta.label_lower}: intact" in out


def test_it_checks_an_anchor_kept_from_an_earlier_run(chained: Call) -> None:
    """Whoever may write the database can rewrite a whole chain, hashes and head included:
    only an anchor kept elsewhere shows it."""
    _, out, _ = verify_audit()
    anchors = [line.rsplit("anchor ", 1)[1] for line in out.splitlines() if "anchor " in line]
    assert len(anchors) == 3
    event = _event(2)
    sql("UPDATE calls_callevent SET actor = %s WHERE id = %s", "mallory", event.pk)
    for row in in_chain(CallEvent)[1:]:  # rewrite from position 2 on, and the head
        models.QuerySet(CallEvent).filter(pk=row.pk).update(chain_seq=None)
    AuditChainHead.objects.filter(chain="calls.callevent").update(seq=1, hash=_event(1).chain_hash)
    assert seal(CallEvent) > 0
    assert verify_audit()[0] == 0  # self-consistent again
    code, _, err = verify_audit(*(arg for anchor in anchors for arg in ("--anchor", anchor)))
    assert code == 1
    last = in_chain(CallEvent)[-1]
    assert (
        f"calls.callevent: row id {last.pk} (position {last.chain_seq}): differs from your anchor"
        in err
    )
    assert verify_audit("--anchor", "calls.callevent:1:" + "f" * 64)[0] == 1
    assert verify_audit("--anchor", "nonsense")[0] == 1


def test_it_seals_rows_left_unsealed_and_names_them_when_old(
    settings: Any, tmp_path: Path, operator: Principal, make_session: Any
) -> None:
    """A process that stops between its commit and the seal leaves its rows out of the
    chain (here: the test's transaction never commits, so nothing is sealed)."""
    settings.MEDIA_ROOT = tmp_path
    settings.CALLBRIDGE_CONSENT_POLICY_VERSION = "2026-10"
    placed_and_recorded(make_session, operator, tmp_path)
    pending = models.QuerySet(CallEvent).filter(chain_seq=None).count()
    assert pending >= 3
    code, out, _ = verify_audit()
    assert code == 0
    assert f"calls.callevent: intact, 0 rows, {pending} being sealed" in out
    oldest = models.QuerySet(CallEvent).order_by("pk").first()
    assert oldest is not None
    sql(
        "UPDATE calls_callevent SET created_at = %s WHERE id = %s",
        timezone.now() - timedelta(minutes=5),
        oldest.pk,
    )
    code, _, err = verify_audit()
    assert code == 1
    assert f"calls.callevent: row id {oldest.pk}: not in the chain" in err
    code, out, _ = verify_audit("--seal")
    assert code == 0
    assert f"calls.callevent: sealed {pending} row(s)" in out
    assert not models.QuerySet(CallEvent).filter(chain_seq=None).exists()


def test_it_seals_once_per_transaction_and_table(
    operator: Principal,
    make_session: Callable[..., tuple[EndUserSession, str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        caller = Principal.end_user(make_session()[0])
        call = Call.start(by=caller, mode="bridge", media_worker="embedded")
        call.answer(operator)
        call.hang_up(caller)
    sealers = [callback for callback in callbacks if isinstance(callback, _Sealer)]
    assert [sealer.model for sealer in sealers] == [CallEvent]
    assert call.events.count() >= 3
    assert not models.QuerySet(CallEvent).filter(chain_seq=None).exists()


def test_it_shows_each_rows_place_in_the_chain_and_each_head_in_the_admin(
    chained: Call, admin_client: Any
) -> None:
    heads = admin_client.get("/admin/calls/auditchainhead/")
    assert heads.status_code == 200
    for model in CHAINED:
        last = in_chain(model)[-1]
        assert model._meta.label_lower in heads.text and last.chain_hash in heads.text
    call_page = admin_client.get(f"/admin/calls/call/{chained.pk}/change/")
    assert call_page.status_code == 200
    for row in [*in_chain(CallEvent), *in_chain(RecordingConsent)]:
        assert row.chain_hash in call_page.text
    assert admin_client.get("/admin/calls/auditchainhead/add/").status_code == 403
    head = AuditChainHead.objects.get(chain="calls.callevent")
    assert admin_client.post(f"/admin/calls/auditchainhead/{head.pk}/delete/").status_code == 403


def test_it_hashes_every_field_of_an_audit_row_or_says_why_not() -> None:
    for model in CHAINED:
        columns = {field.attname for field in model._meta.concrete_fields}
        covered = CHAIN_COLUMNS | set(model.CHAIN_FIELDS) | set(model.CHAIN_UNHASHED)
        assert columns == covered, model
        for name in model.CHAIN_UNHASHED:  # only links the database itself clears
            field = model._meta.get_field(name.removesuffix("_id"))
            assert field.remote_field.on_delete is models.SET_NULL, name


def test_it_keeps_the_chain_when_recordings_are_purged(
    chained: Call, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CALLBRIDGE_RECORDING_RETENTION_DAYS = 1
    Recording.objects.filter(call=chained).update(ended_at=timezone.now() - timedelta(days=2))
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_recordings", stdout=StringIO())
    assert Recording.objects.filter(call=chained).exclude(purged_at=None).count() == 1
    assert verify_audit()[0] == 0


def append_chained_events(call: Call, count: int) -> None:
    """`count` events sealed as the sealer would, inserted in bulk (sealing them one by
    one would take most of this test's time)."""
    head = AuditChainHead.objects.get(chain="calls.callevent")
    seq, previous = head.seq, head.hash
    for first in range(0, count, 10_000):
        batch = []
        for n in range(first, min(first + 10_000, count)):
            seq += 1
            event = CallEvent(
                call=call,
                name="media.stats",
                actor="system",
                actor_role="system",
                data={"n": n},
                chain_seq=seq,
                chain_prev=previous,
            )
            fields = {name: getattr(event, name) for name in CallEvent.CHAIN_FIELDS}
            row = audit_format.canonical("calls.callevent", seq, fields)
            event.chain_hash = previous = audit_format.link(previous, row)
            batch.append(event)
        models.QuerySet(CallEvent).bulk_create(batch)
    AuditChainHead.objects.filter(pk=head.pk).update(seq=seq, hash=previous)


def peak_growth(work: Callable[[], Any]) -> tuple[Any, int]:
    """work()'s result, and the most Python's allocated blocks grew while it ran (sampled
    from another thread: tracemalloc would triple the time)."""
    gc.collect()
    base, peak, done = sys.getallocatedblocks(), 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.002):
            peak = max(peak, sys.getallocatedblocks() - base)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        return work(), peak
    finally:
        done.set()
        sampler.join(timeout=5)


@pytest.mark.bulk
def test_it_walks_100000_rows_in_constant_memory(chained: Call) -> None:
    append_chained_events(chained, 10_000)
    (small_code, small_out, _), small_peak = peak_growth(verify_audit)
    append_chained_events(chained, 90_000)
    (code, out, _), peak = peak_growth(verify_audit)
    assert (small_code, code) == (0, 0)
    assert "calls.callevent: intact, 1000" in small_out and "intact, 1000" in out
    assert peak < small_peak * 1.5 + 5_000, (small_peak, peak)  # a page, never the chain


@pytest.mark.django_db(transaction=True)
def test_it_keeps_one_chain_when_many_threads_record_at_once(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    callers = [Principal.end_user(make_session(f"Caller {n}")[0]) for n in range(12)]

    def call_and_hang_up(caller: Principal) -> int:
        call = Call.start(by=caller, mode="bridge", media_worker="embedded")
        call.hang_up(caller)
        return call.events.count()

    results = in_threads(call_and_hang_up, callers)
    assert all(isinstance(count, int) for count in results), results
    rows = in_chain(CallEvent)
    assert len(rows) == sum(results)
    assert [row.chain_seq for row in rows] == list(range(1, len(rows) + 1))
    assert verify_audit()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_it_chains_rows_written_before_the_chains_in_id_order(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    caller = Principal.end_user(make_session()[0])
    for _ in range(3):
        Call.start(by=caller, mode="bridge", media_worker="embedded").hang_up(caller)
    # As before the upgrade: no chain columns filled, no heads.
    models.QuerySet(CallEvent).update(chain_seq=None, chain_prev="", chain_hash="")
    AuditChainHead.objects.all().delete()
    executor = MigrationExecutor(connection)
    executor.migrate([("calls", "0029_audit_hash_chains")])
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes("calls"))
    rows = list(models.QuerySet(CallEvent).order_by("pk"))
    assert [row.chain_seq for row in rows] == list(range(1, len(rows) + 1))
    code, out, _ = verify_audit()
    assert code == 0 and f"calls.callevent: intact, {len(rows)} rows" in out


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_it_seals_a_serving_processs_commits_in_batches_in_the_background(
    make_session: Callable[..., tuple[EndUserSession, str]],
) -> None:
    """While the background sealer runs, a commit only asks it to seal: the rows wait for
    its batch (here held for 2 s) and are then chained in commit order; a stopping sealer
    seals what was asked for last."""
    sealer = AuditSealer(batch_delay_s=2.0)
    running = asyncio.ensure_future(sealer.run())
    session, _ = await database_sync_to_async(make_session)("Caller")
    caller = Principal.end_user(session)

    def call_and_hang_up() -> int:
        call = Call.start(by=caller, mode="bridge", media_worker="embedded")
        call.hang_up(caller)
        return call.events.count()

    def unsealed() -> int:
        return CallEvent.objects.filter(chain_seq=None).count()

    try:
        async with asyncio.timeout(30):
            await asyncio.sleep(0)  # the sealer starts (and registers) at its first step
            assert AuditSealer.active is sealer
            events = sum([await database_sync_to_async(call_and_hang_up)() for _ in range(3)])
            assert await database_sync_to_async(unsealed)() == events  # none sealed in place
            while await database_sync_to_async(unsealed)():  # noqa: ASYNC110 (the database)
                await asyncio.sleep(0.1)  # one batch seals them all
            more = await database_sync_to_async(call_and_hang_up)()
    finally:
        running.cancel()
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 30)
    assert await database_sync_to_async(unsealed)() == 0  # the last ones, sealed at the stop
    rows = await database_sync_to_async(in_chain)(CallEvent)
    assert [row.chain_seq for row in rows] == list(range(1, events + more + 1))
    assert (await database_sync_to_async(verify_audit)())[0] == 0
    assert AuditSealer.active is None
