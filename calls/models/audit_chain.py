"""The audit hash chains: one per audit table, each row linked to the one before it.

A row is written once (AppendOnlyModel) and sealed after its transaction commits — at
once, or by the serving process's background sealer, which seals a batch of commits at a
time (calls/audit_sealer.py) — in a short transaction of its own: under the chain head's
row lock, it gets the next position (`chain_seq`), the previous row's hash and its own
hash (calls/audit_format.py). Sealing after the commit, not inside the inserting
transaction, is deliberate: a call's transaction holds call, leg and operator locks;
holding the one global head lock from its first event to its commit would serialize every
transition and could deadlock with a transaction holding those rows. The sealer holds
nothing but the head, so it neither waits on nor blocks a call. `chain_seq` is unique:
two sealers can never fork a chain."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from django.db import connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from calls.audit_format import GENESIS, canonical, link
from calls.models.append_only import AppendOnlyModel

logger = logging.getLogger(__name__)

SEAL_BATCH = 500


class AuditChainHead(models.Model):
    """Where each chain ends: the row every sealer locks, and what `verify_audit` compares
    the chain's last row with (a deleted tail shows as a head past the last row)."""

    chain = models.CharField(max_length=64, primary_key=True)
    seq = models.PositiveBigIntegerField("rows sealed", default=0)
    hash = models.CharField("last row's hash", max_length=64, default=GENESIS)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "audit chain"

    def __str__(self) -> str:
        return f"{self.chain} @ {self.seq}"


class ChainedModel(AppendOnlyModel):
    """An append-only audit row in its table's hash chain. Subclasses name the fields the
    hash covers (CHAIN_FIELDS, by attribute name) and why any other field is left out
    (CHAIN_UNHASHED): tests/test_audit_chain.py holds every field to one or the other."""

    CHAIN_FIELDS: ClassVar[tuple[str, ...]] = ()
    CHAIN_UNHASHED: ClassVar[dict[str, str]] = {}
    CHAIN_WRITTEN_AT: ClassVar[str] = "created_at"  # when the row was written

    chain_seq = models.PositiveBigIntegerField(
        "chain position", null=True, blank=True, unique=True, editable=False
    )
    chain_prev = models.CharField("previous hash", max_length=64, blank=True, editable=False)
    chain_hash = models.CharField("hash", max_length=64, blank=True, editable=False)

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        _seal_on_commit(type(self), self._state.db or router.db_for_write(type(self)))


class _Sealer:
    """The on-commit callback sealing one model's rows: one per transaction, however many
    rows it wrote (recognised in the connection's pending callbacks)."""

    def __init__(self, model: type[ChainedModel]) -> None:
        self.model = model

    def __call__(self) -> None:
        if not _seal_later(self.model):
            seal(self.model)  # looked up at commit: the benchmark times it


# A background sealer that takes the seals of this process's commits (calls/audit_sealer.py
# registers itself while it runs): it returns False when it cannot (then seal in place).
_background_sealer: Callable[[type[ChainedModel]], bool] | None = None


def seal_in_background(request: Callable[[type[ChainedModel]], bool] | None) -> None:
    global _background_sealer
    _background_sealer = request


def _seal_later(model: type[ChainedModel]) -> bool:
    request = _background_sealer
    return request is not None and request(model)


def _seal_on_commit(model: type[ChainedModel], using: str) -> None:
    connection = connections[using]
    if connection.in_atomic_block and any(
        isinstance(pending[1], _Sealer) and pending[1].model is model
        for pending in connection.run_on_commit  # (savepoints, callback, robust)
    ):
        return
    # robust: the row is committed whatever happens here; a row left unsealed is sealed
    # by the next one (or by verify_audit --seal).
    transaction.on_commit(_Sealer(model), using=using, robust=True)


def seal(model: type[ChainedModel]) -> int:
    """Chain every committed row of `model` not yet in its chain; how many were sealed."""
    return seal_rows(model, AuditChainHead, model.CHAIN_FIELDS)


def seal_rows(model: Any, head_model: Any, fields: tuple[str, ...]) -> int:
    """`seal` for a model and head model given (the migration passes historical ones)."""
    unsealed: models.QuerySet[Any] = models.QuerySet(model).filter(chain_seq=None)
    chain = model._meta.label_lower
    sealed = 0
    using = router.db_for_write(model)
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        _without_waiting_for_the_disk(connection, cursor)
        seq, previous = _locked_head(model, head_model, chain, cursor)
        # Plain SQL for the writes: this runs after every event's commit, and the ORM's
        # query building was most of its cost. Values are read through the ORM (below) so
        # the hash sees them exactly as verify_audit will.
        seal_row = _seal_row_sql(model, connection)
        while True:
            batch = list(unsealed.order_by("pk").values_list("pk", *fields)[:SEAL_BATCH])
            for pk, *values in batch:
                seq += 1
                row = dict(zip(fields, values, strict=True))
                digest = link(previous, canonical(chain, seq, row))
                cursor.execute(seal_row, [seq, previous, digest, pk])
                previous = digest
            sealed += len(batch)
            if len(batch) < SEAL_BATCH:  # the last one: no query to learn that
                break
        if sealed:  # else a concurrent sealer took them
            now = connection.ops.adapt_datetimefield_value(timezone.now())
            cursor.execute(
                f"UPDATE {_table(head_model, connection)} SET seq = %s, hash = %s,"  # noqa: S608
                " updated_at = %s WHERE chain = %s",
                [seq, previous, now, chain],
            )
    return sealed


def _table(model: Any, connection: BaseDatabaseWrapper) -> str:
    """The model's table, quoted (names from the models, never from input; values go as
    parameters)."""
    return str(connection.ops.quote_name(model._meta.db_table))


def _seal_row_sql(model: Any, connection: BaseDatabaseWrapper) -> str:
    """The chain columns, written once: never over a sealed row (the append-only guard
    stands for every other column)."""
    return (
        f"UPDATE {_table(model, connection)} SET chain_seq = %s, chain_prev = %s,"  # noqa: S608
        f" chain_hash = %s WHERE {connection.ops.quote_name(model._meta.pk.column)} = %s"
        " AND chain_seq IS NULL"
    )


def _without_waiting_for_the_disk(connection: BaseDatabaseWrapper, cursor: Any) -> None:
    """A seal's commit need not wait for the WAL flush (PostgreSQL): the rows it seals are
    already durable, and a seal lost in a crash leaves them unsealed for the next sealer
    (WAL order: nothing committed after it survives without it)."""
    if connection.vendor == "postgresql":
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _locked_head(model: Any, head_model: Any, chain: str, cursor: Any) -> tuple[int, str]:
    """The chain's last position and hash, its head row locked until the commit."""
    connection = cursor.db
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    select = f"SELECT seq, hash FROM {_table(head_model, connection)} WHERE chain = %s{lock}"  # noqa: S608
    cursor.execute(select, [chain])
    found = cursor.fetchone()
    if found is not None:
        return int(found[0]), str(found[1])
    # No head (a fresh database, or one flushed): it starts where the chain's rows end.
    tail = (
        models.QuerySet(model)
        .exclude(chain_seq=None)
        .order_by("-chain_seq")
        .values_list("chain_seq", "chain_hash")
        .first()
    )
    seq, digest = tail if tail is not None else (0, GENESIS)
    if tail is not None:
        logger.warning("audit chain %s had no head: restarted from its row %s", chain, seq)
    head, _ = head_model.objects.select_for_update().get_or_create(
        chain=chain, defaults={"seq": seq, "hash": digest}
    )
    return head.seq, head.hash
