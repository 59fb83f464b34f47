"""Server-side call quality, the pure part (calls/media/quality.py): the E-model against
known points, the warning window's 3-of-5 rule with its hysteresis, summaries."""

from __future__ import annotations

import pytest

from calls.media import quality
from calls.media.aiortc_internals import Received, ReceiverReport
from calls.media.leg_quality import LegQuality
from calls.media.quality import (
    Direction,
    LossCounter,
    QualityWindow,
    Summary,
    Tally,
    Verdict,
    leg_sample,
)


@pytest.mark.parametrize(
    ("r", "mos"),
    [
        (-5, 1.0),
        (0, 1.0),
        (50, 2.575),  # 1 + 1.75 + 50·(-10)·50·7e-6
        (60, 3.1),  # the cubic term vanishes at 60 and 100
        (70, 3.597),
        (80, 4.024),
        (93.2, 4.41),  # G.107's default connection: "best possible" narrowband
        (100, 4.5),
        (120, 4.5),
    ],
)
def test_it_maps_r_to_mos_as_g107_annex_b(r: float, mos: float) -> None:
    assert quality.mos_from_r(r) == pytest.approx(mos, abs=0.005)


@pytest.mark.parametrize(
    ("one_way_ms", "idd"),
    [(0, 0.0), (100, 0.0), (150, 0.16), (200, 3.04), (400, 24.07), (800, 40.84)],
)
def test_it_impairs_delay_as_g107_idd(one_way_ms: float, idd: float) -> None:
    assert quality.delay_impairment(one_way_ms) == pytest.approx(idd, abs=0.1)


def test_it_impairs_loss_as_g107_ie_eff_with_opus_assumptions() -> None:
    assert quality.loss_impairment(0) == 0
    assert quality.loss_impairment(5) == pytest.approx(95 * 5 / 30.1)
    assert quality.loss_impairment(100) == pytest.approx(95 * 100 / 125.1)
    assert quality.loss_impairment(-3) == 0  # a duplicate-heavy interval is no gain
    assert quality.loss_impairment(250) == quality.loss_impairment(100)


@pytest.mark.parametrize(
    ("loss", "jitter", "rtt", "mos_range"),
    [
        (0.0, 0.0, None, (4.40, 4.42)),  # a perfect LAN
        (0.0, 5.0, 40.0, (4.40, 4.42)),  # good broadband: delay under 100 ms costs nothing
        (1.0, 10.0, 100.0, (4.3, 4.36)),
        (5.0, 20.0, 150.0, (3.8, 3.95)),
        (10.0, 20.0, 150.0, (3.3, 3.45)),  # poor: below the 3.5 warning
        (20.0, 30.0, 200.0, (2.5, 2.7)),
        (0.0, 50.0, 800.0, (3.1, 3.2)),  # no loss, but a satellite-like delay
    ],
)
def test_it_estimates_known_network_conditions(
    loss: float, jitter: float, rtt: float | None, mos_range: tuple[float, float]
) -> None:
    sample = quality.estimate(loss, jitter, rtt)
    low, high = mos_range
    assert low <= sample.mos <= high, sample
    assert (sample.loss_percent, sample.jitter_ms, sample.rtt_ms) == (loss, jitter, rtt)


def test_it_judges_a_leg_by_its_worse_direction() -> None:
    good, bad = Direction(0.0, 2.0), Direction(20.0, 30.0)
    assert leg_sample(good, bad, 10.0) == leg_sample(bad, good, 10.0)
    assert leg_sample(good, bad, 10.0) == quality.estimate(20.0, 30.0, 10.0)
    # One direction silent (nothing sent to a held party): the other decides alone.
    assert leg_sample(Direction(None, None), good, None) == quality.estimate(0.0, 2.0, None)
    # Neither: nothing to say about the network.
    assert leg_sample(Direction(None, None), Direction(None, None), 5.0) is None


def test_it_counts_loss_per_interval_from_cumulative_counts() -> None:
    counter = LossCounter()
    assert counter.interval(expected=50, received=50) == 0
    assert counter.interval(expected=100, received=90) == 20  # 10 of the next 50 lost
    assert counter.interval(expected=100, received=90) is None  # nothing expected since
    assert counter.interval(expected=150, received=145) == 0  # late packets: no gain below 0


def window_verdicts(moses: list[float]) -> list[str | None]:
    window = QualityWindow()
    return [(v.value if (v := window.push(m)) else None) for m in moses]


GOOD, POOR = 4.3, 3.0


def test_it_warns_on_three_poor_samples_of_the_last_five() -> None:
    assert window_verdicts([POOR, GOOD, POOR, GOOD, POOR]) == [None] * 4 + ["quality.warning"]
    assert window_verdicts([POOR, POOR, POOR]) == [None, None, "quality.warning"]
    # Two poor samples in any five never warn.
    assert window_verdicts([POOR, POOR, GOOD, GOOD, GOOD, POOR, POOR, GOOD]) == [None] * 8
    # The threshold itself is not poor.
    assert window_verdicts([3.5] * 6) == [None] * 6
    assert window_verdicts([3.49] * 3) == [None, None, "quality.warning"]


def test_it_clears_only_when_at_most_one_of_the_last_five_is_poor() -> None:
    window = QualityWindow()
    for mos in (POOR, POOR, POOR):
        window.push(mos)
    assert window.warning
    # Two poor left in the window: still a warning (no flapping around the threshold).
    assert [window.push(GOOD) for _ in range(3)] == [None, None, None]
    assert window.warning
    assert window.push(GOOD) is Verdict.CLEARED  # window: POOR GOOD GOOD GOOD GOOD
    assert not window.warning
    assert window.push(GOOD) is None
    # Hovering: poor, good, poor … warns once, at the third poor of five, and clears once.
    verdicts = window_verdicts([POOR, GOOD, POOR, GOOD, POOR, GOOD, POOR, GOOD, GOOD, GOOD])
    assert verdicts == [None] * 4 + ["quality.warning"] + [None] * 4 + ["quality.cleared"]


def test_it_summarises_a_leg_and_merges_a_reconnect() -> None:
    tally = Tally()
    assert tally.summary() is None
    for sample in (
        quality.estimate(0.0, 2.0, None),
        quality.estimate(20.0, 10.0, 50.0),
        quality.estimate(0.0, 6.0, 30.0),
    ):
        tally.add(sample)
    tally.warnings = 1
    summary = tally.summary()
    assert summary is not None
    assert summary.samples == 3
    assert summary.mos_min == quality.estimate(20.0, 10.0, 50.0).mos
    assert summary.loss_percent == pytest.approx(6.67, abs=0.01)
    assert summary.jitter_ms == 6.0
    assert summary.rtt_ms == 40.0  # over the samples that had one
    assert summary.warnings == 1
    later = Summary(
        samples=1, mos_min=4.4, mos_avg=4.4, loss_percent=0, jitter_ms=2, rtt_ms=None, warnings=0
    )
    both = quality.merged(summary, later)
    assert both.samples == 4 and both.mos_min == summary.mos_min and both.warnings == 1
    assert both.mos_avg == pytest.approx((summary.mos_avg * 3 + 4.4) / 4, abs=0.01)
    assert both.rtt_ms == 40.0


class ScriptedProbe:
    """What QualityProbe reads off aiortc, scripted: cumulative counts and reports."""

    def __init__(self) -> None:
        self.counted = Received(expected=0, received=0, jitter=0)
        self.reports: list[ReceiverReport] = []
        self.upstream_gaps = lambda: 0

    def received(self) -> Received:
        return self.counted

    def take_reports(self) -> list[ReceiverReport]:
        reports, self.reports = self.reports, []
        return reports


def report(highest: int, lost: int, gaps: int = 0, rtt_s: float | None = 0.02) -> ReceiverReport:
    return ReceiverReport(
        fraction_lost=0,
        packets_lost=lost,
        highest_sequence=highest,
        upstream_gaps=gaps,
        jitter=96,  # 2 ms at 48 kHz
        rtt_s=rtt_s,
    )


def test_a_legs_meter_blames_it_only_for_its_own_loss() -> None:
    probe = ScriptedProbe()
    meter = LegQuality(probe)  # type: ignore[arg-type]  # scripted: the two reads it makes
    assert meter.sample() is None  # nothing flowed yet
    probe.counted = Received(expected=50, received=50, jitter=96)
    probe.reports = [report(highest=70_000, lost=0)]  # the first report is the baseline
    measured = meter.sample()
    assert measured is not None and measured[0].loss_percent == 0
    assert measured[0].rtt_ms == 20 and measured[0].jitter_ms == 2
    # 50 more sent; the client lost 20, but the server forwarded 15 gaps from the other
    # leg: 5 are this leg's (10 %); the server received all the client sent.
    probe.counted = Received(expected=100, received=100, jitter=96)
    probe.reports = [report(highest=70_050, lost=20, gaps=15, rtt_s=None)]
    measured = meter.sample()
    assert measured is not None and measured[0].loss_percent == 10
    assert measured[0].rtt_ms == 20  # the last measured round trip stands
    # Now the client's own sending loses 30 % (the server's count), reports say nothing.
    for _ in range(2):
        probe.counted = Received(
            expected=probe.counted.expected + 50, received=probe.counted.received + 35, jitter=96
        )
        measured = meter.sample()
    assert measured is not None and measured[0].loss_percent == 30
    assert measured[1] is not None and measured[1].verdict is Verdict.WARNING  # 3 of 3 poor

    # A reconnect: the new connection's meter clears the warning the old one raised.
    reconnected = ScriptedProbe()
    after = LegQuality(reconnected)  # type: ignore[arg-type]
    after.carry_on_from(meter)
    verdicts = []
    for n in range(1, 6):
        reconnected.counted = Received(expected=50 * n, received=50 * n, jitter=96)
        measured = after.sample()
        assert measured is not None
        verdicts.append(measured[1].verdict if measured[1] else None)
    assert verdicts == [None, None, None, Verdict.CLEARED, None]
    summary = meter.summary()
    assert summary is not None and summary.samples == 4 and summary.warnings == 1
