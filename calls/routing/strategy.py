"""In which order a queue offers its free operators a call. Pure: no Django.

- `ring_all`: everybody at once (one group).
- `longest_idle`: the operator whose last call ended longest ago first; one who never had
  a call before anybody (Asterisk `leastrecent`: metric 0 for `lastcall == 0`, else the
  older `lastcall` — the last hang-up — wins). FreeSWITCH's `longest-idle-agent` orders
  by the last *offer* instead; an offer that rang out is not a call, so we follow
  Asterisk: idle means "since the last call ended".
- `round_robin`: the operator offered a call least recently first, never-offered first
  (FreeSWITCH mod_callcenter orders by `agents.last_offered_call`; Asterisk `rrmemory`
  remembers a position in the member list instead). The offer time needs no member
  order and survives members joining and leaving, and an operator who let an offer ring
  out still takes their turn: the rotation is over offers.
Ties (equal times, or several never-called / never-offered) break by operator id, so the
order is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Strategy(StrEnum):
    RING_ALL = "ring_all"
    LONGEST_IDLE = "longest_idle"
    ROUND_ROBIN = "round_robin"


@dataclass(frozen=True)
class Candidate:
    """A free member of the queue, as the engine saw them under the queue's lock."""

    operator_id: int
    last_call_ended_at: datetime | None
    last_offered_at: datetime | None


def _oldest_first(when: datetime | None, operator_id: int) -> tuple[bool, float, int]:
    # Never (None) sorts before any time.
    return (when is not None, when.timestamp() if when is not None else 0.0, operator_id)


def offer_order(
    strategy: Strategy | str, candidates: Iterable[Candidate]
) -> list[tuple[Candidate, ...]]:
    """The groups to offer, in turn: each group is rung at once, the next group only
    after the previous rang out. `ring_all` is one group; the others one operator each.
    A call is offered to the first group; the rest are the fallbacks in order."""
    strategy = Strategy(strategy)
    pool: Sequence[Candidate] = sorted(candidates, key=lambda c: c.operator_id)
    if not pool:
        return []
    if strategy == Strategy.RING_ALL:
        return [tuple(pool)]
    if strategy == Strategy.LONGEST_IDLE:
        ordered = sorted(pool, key=lambda c: _oldest_first(c.last_call_ended_at, c.operator_id))
    else:
        ordered = sorted(pool, key=lambda c: _oldest_first(c.last_offered_at, c.operator_id))
    return [(candidate,) for candidate in ordered]
