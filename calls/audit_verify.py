"""Walking the audit hash chains: the first altered, missing or inserted row of each.

Streams in keyset pages of `chain_seq` (constant memory, no long transaction), so it runs
beside live calls; rows sealed while it walks are walked too."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.db import models
from django.utils import timezone

from calls.audit_format import GENESIS, canonical, link
from calls.models.audit_chain import AuditChainHead, ChainedModel

PAGE = 1000
# A row is sealed within milliseconds of its commit; one unsealed for longer was written
# outside callbridge, or its process died in between (the next row's sealer takes it).
SEAL_GRACE = timedelta(seconds=60)


@dataclass(frozen=True)
class Problem:
    row_id: Any
    seq: int | None
    what: str

    def describe(self, chain: str) -> str:
        where = f"row id {self.row_id}" if self.row_id is not None else "the chain"
        at = f" (position {self.seq})" if self.seq is not None and self.row_id is not None else ""
        return f"{chain}: {where}{at}: {self.what}"


@dataclass(frozen=True)
class ChainReport:
    chain: str
    rows: int
    last_hash: str
    pending: int  # committed rows not sealed yet (within the grace)
    problem: Problem | None

    @property
    def anchor(self) -> str:
        """Keep this outside the database; `verify_audit --anchor` checks it later."""
        return f"{self.chain}:{self.rows}:{self.last_hash}"


def chained_models() -> list[type[ChainedModel]]:
    return [model for model in apps.get_models() if issubclass(model, ChainedModel)]


def verify(model: type[ChainedModel], anchors: dict[int, str] | None = None) -> ChainReport:
    chain = model._meta.label_lower
    walk = _Walk(model, chain, dict(anchors or {}))
    problem = next(walk.problems(), None)
    return ChainReport(chain, walk.seq, walk.previous_hash, walk.pending, problem)


class _Walk:
    def __init__(self, model: type[ChainedModel], chain: str, anchors: dict[int, str]) -> None:
        self.model, self.chain, self.anchors = model, chain, anchors
        self.rows: models.QuerySet[Any] = models.QuerySet(model)
        self.seq, self.previous_hash, self.previous_id = 0, GENESIS, None
        self.pending = 0

    def problems(self) -> Iterator[Problem]:
        yield from self._unsealed()
        while True:
            yield from self._walk_from(self.seq)
            head = AuditChainHead.objects.filter(chain=self.chain).first()
            if head is None:
                if self.seq:
                    yield Problem(None, None, f"its head row is missing ({self.seq} rows)")
                break
            if head.seq < self.seq:
                beyond = self.rows.filter(chain_seq__gt=head.seq).order_by("chain_seq")
                first = beyond.values_list("pk", "chain_seq").first()
                assert first is not None
                yield Problem(
                    first[0],
                    first[1],
                    f"inserted: it lies past the chain's head (position {head.seq}), "
                    "so callbridge never sealed it",
                )
            if head.seq == self.seq:
                if head.hash != self.previous_hash:
                    yield Problem(None, None, "its head does not match its last row")
                break
            if not self.rows.filter(chain_seq__gt=self.seq).exists():
                yield Problem(
                    None,
                    None,
                    f"missing: positions {self.seq + 1}..{head.seq} after row id "
                    f"{self.previous_id} are gone (the head says {head.seq} rows)",
                )
                break
            # else: rows were sealed while we walked; walk them too.
        for seq in sorted(seq for seq in self.anchors if not 0 < seq <= self.seq):
            yield Problem(None, seq, f"anchor position {seq} is not in the chain")

    def _walk_from(self, after: int) -> Iterator[Problem]:
        fields = self.model.CHAIN_FIELDS
        columns = ("pk", "chain_seq", "chain_prev", "chain_hash", *fields)
        while page := list(
            self.rows.filter(chain_seq__gt=after).order_by("chain_seq").values_list(*columns)[:PAGE]
        ):
            for pk, seq, stored_prev, stored_hash, *values in page:
                row = dict(zip(fields, values, strict=True))
                yield from self._check(pk, seq, stored_prev, stored_hash, row)
                self.seq, self.previous_hash, self.previous_id = seq, stored_hash, pk
            after = page[-1][1]

    def _check(
        self, pk: Any, seq: int, stored_prev: str, stored_hash: str, values: dict[str, Any]
    ) -> Iterator[Problem]:
        if seq != self.seq + 1:
            before = f"row id {self.previous_id}" if self.previous_id else "the chain's start"
            yield Problem(
                pk,
                seq,
                f"missing before it: positions {self.seq + 1}..{seq - 1} (after {before}) are gone",
            )
        elif link(stored_prev, canonical(self.chain, seq, values)) != stored_hash:
            yield Problem(pk, seq, "altered: its content no longer matches its hash")
        elif stored_prev != self.previous_hash:
            before = f"row id {self.previous_id}" if self.previous_id else "the chain's start"
            yield Problem(
                pk,
                seq,
                f"does not follow {before}: that row was rewritten with a new hash, "
                "or this one was put in the place of the real one",
            )
        elif seq in self.anchors and self.anchors[seq] != stored_hash:
            yield Problem(pk, seq, "differs from your anchor: the chain was rewritten up to here")

    def _unsealed(self) -> Iterator[Problem]:
        unsealed = self.rows.filter(chain_seq=None)
        written_at = self.model.CHAIN_WRITTEN_AT
        old = unsealed.filter(**{f"{written_at}__lt": timezone.now() - SEAL_GRACE})
        stale = old.order_by("pk").values_list("pk", flat=True).first()
        if stale is not None:
            yield Problem(
                stale,
                None,
                "not in the chain: written outside callbridge, or its process stopped "
                "between commit and seal (check it, then run `verify_audit --seal`)",
            )
        self.pending = unsealed.count()
