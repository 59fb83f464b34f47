"""The order a queue offers its free operators a call (calls.routing.strategy), pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from calls.routing.strategy import Candidate, Strategy, offer_order

T0 = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ids(groups: list[tuple[Candidate, ...]]) -> list[list[int]]:
    return [[c.operator_id for c in group] for group in groups]


def test_it_rings_all_at_once_in_one_group():
    pool = [Candidate(3, at(5), None), Candidate(1, None, at(1)), Candidate(2, at(1), at(9))]
    assert ids(offer_order(Strategy.RING_ALL, pool)) == [[1, 2, 3]]


def test_it_offers_nobody_when_nobody_is_free():
    for strategy in Strategy:
        assert offer_order(strategy, []) == []


def test_it_offers_longest_idle_first_and_never_called_before_anybody():
    pool = [
        Candidate(1, at(30), at(0)),
        Candidate(2, at(10), at(50)),
        Candidate(3, None, at(60)),
        Candidate(4, at(20), None),
    ]
    assert ids(offer_order("longest_idle", pool)) == [[3], [2], [4], [1]]


def test_it_breaks_longest_idle_ties_by_operator_id():
    pool = [Candidate(9, at(10), None), Candidate(4, at(10), None), Candidate(7, None, None)]
    pool.append(Candidate(5, None, at(3)))
    assert ids(offer_order(Strategy.LONGEST_IDLE, pool)) == [[5], [7], [4], [9]]


def test_it_offers_round_robin_to_the_least_recently_offered_first():
    pool = [
        Candidate(1, None, at(40)),
        Candidate(2, at(0), at(10)),
        Candidate(3, at(99), None),
        Candidate(4, None, at(20)),
    ]
    assert ids(offer_order(Strategy.ROUND_ROBIN, pool)) == [[3], [2], [4], [1]]


def test_it_rotates_round_robin_through_everybody():
    # Offering to the first of the order and stamping it "now" cycles through all four.
    pool = {i: Candidate(i, None, None) for i in (4, 2, 3, 1)}
    offered = []
    for step in range(8):
        first = offer_order(Strategy.ROUND_ROBIN, pool.values())[0][0]
        offered.append(first.operator_id)
        pool[first.operator_id] = Candidate(first.operator_id, None, at(step))
    assert offered == [1, 2, 3, 4, 1, 2, 3, 4]


def test_it_refuses_an_unknown_strategy():
    with pytest.raises(ValueError):
        offer_order("fewest_calls", [Candidate(1, None, None)])
