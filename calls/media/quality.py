"""Call quality from what the server measures of a leg: loss, jitter, RTT → R-factor → MOS.

Pure (no aiortc, no Django). The estimate is ITU-T G.107's E-model with its default
values and the two impairments a network changes, on the narrowband scale (MOS ≤ 4.5):

    R   = R0 - Is - Id - Ie,eff + A        with the defaults R0 - Is = 93.2, A = 0
    Id  = Idd(Ta) (talker/listener echo taken as well controlled: Idte = Idle = 0)
    Idd = 0 for Ta ≤ 100 ms, else 25·{(1 + X⁶)^⅙ - 3·(1 + (X/3)⁶)^⅙ + 2},
          X = log₂(Ta / 100 ms)                                   (G.107 §7.3, mT = 100)
    Ie,eff = Ie + (95 - Ie) · Ppl / (Ppl / BurstR + Bpl)          (G.107 §7.4, BurstR = 1)
    MOS = 1 (R < 0); 4.5 (R > 100); else 1 + 0.035·R + R·(R - 60)·(100 - R)·7·10⁻⁶

Opus has no entry in G.113's tables, so its codec values are assumptions, chosen on the
safe side: Ie = 0 (Opus at voice bitrates is at least toll quality on this scale) and
Bpl = 25.1 (G.711 with packet loss concealment, G.113 Appendix I; Opus' own concealment
is better, so loss is, if anything, judged too harshly).

The one-way delay Ta is half the RTCP round trip plus what the receiver adds: a jitter
buffer of twice the jitter and a fixed 30 ms (a 20 ms frame and codec/processing).

A leg has two directions (what the server receives from its client: the server's own
count; what the client receives: its RTCP receiver reports); a leg's sample is the worse
of the two, which is what a listener on either end can suffer from that network.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

R_DEFAULT = 93.2  # R0 - Is with G.107's default values
OPUS_IE = 0.0  # equipment impairment (assumed, see above)
OPUS_BPL = 25.1  # packet-loss robustness (assumed, see above)
FIXED_DELAY_MS = 30.0  # one frame (20 ms) and codec/processing
JITTER_BUFFER_FACTOR = 2.0  # a jitter buffer holds about twice the jitter

MOS_WARNING = 3.5  # a sample below this is poor
WINDOW = 5  # the last samples judged
WARN_AT = 3  # poor samples among the last WINDOW that raise a warning
CLEAR_AT = 1  # …and at most this many poor ones clear it (hysteresis: no flapping at 2)


def delay_impairment(one_way_ms: float) -> float:
    """Idd of G.107 §7.3 (mT = 100 ms, no echo impairments)."""
    if one_way_ms <= 100:
        return 0.0
    x = math.log2(one_way_ms / 100)
    return 25 * (math.pow(1 + x**6, 1 / 6) - 3 * math.pow(1 + (x / 3) ** 6, 1 / 6) + 2)


def loss_impairment(loss_percent: float, ie: float = OPUS_IE, bpl: float = OPUS_BPL) -> float:
    """Ie,eff of G.107 §7.4 for random loss (BurstR = 1)."""
    ppl = min(max(loss_percent, 0.0), 100.0)
    return ie + (95 - ie) * ppl / (ppl + bpl)


def one_way_delay_ms(rtt_ms: float | None, jitter_ms: float) -> float:
    """Mouth-to-ear delay: half the round trip (0 if not measured yet) plus the receiver's."""
    return (rtt_ms or 0.0) / 2 + JITTER_BUFFER_FACTOR * jitter_ms + FIXED_DELAY_MS


def r_factor(loss_percent: float, one_way_ms: float) -> float:
    return R_DEFAULT - delay_impairment(one_way_ms) - loss_impairment(loss_percent)


def mos_from_r(r: float) -> float:
    """G.107 Annex B: the estimated mean opinion score (conversational quality)."""
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


@dataclass(frozen=True)
class QualitySample:
    """One leg over one sampling interval."""

    loss_percent: float
    jitter_ms: float
    rtt_ms: float | None  # None until a receiver report allowed a measurement
    r: float
    mos: float


def estimate(loss_percent: float, jitter_ms: float, rtt_ms: float | None) -> QualitySample:
    r = r_factor(loss_percent, one_way_delay_ms(rtt_ms, jitter_ms))
    return QualitySample(loss_percent, jitter_ms, rtt_ms, round(r, 1), round(mos_from_r(r), 2))


@dataclass(frozen=True)
class Direction:
    """What one direction of a leg measured over an interval (None: nothing measured)."""

    loss_percent: float | None
    jitter_ms: float | None


def leg_sample(received: Direction, sent: Direction, rtt_ms: float | None) -> QualitySample | None:
    """The leg's sample: its worse direction. None when neither direction measured
    anything (no packets either way: a muted client on hold says nothing of the network)."""
    losses = [d.loss_percent for d in (received, sent) if d.loss_percent is not None]
    if not losses:
        return None
    jitters = [d.jitter_ms for d in (received, sent) if d.jitter_ms is not None]
    return estimate(max(losses), max(jitters, default=0.0), rtt_ms)


class LossCounter:
    """Loss over each interval from cumulative counts (packets expected and received so
    far): a counter's own history, so reading it changes nothing elsewhere. With
    `from_first`, counts start at the first reading (a receiver report's extended highest
    sequence number starts wherever the stream's numbering did)."""

    def __init__(self, from_first: bool = False) -> None:
        self._expected = 0
        self._received = 0
        self._waiting_for_first = from_first

    def interval(self, expected: int, received: int) -> float | None:
        """Loss % since the last call; None if no packet was expected meanwhile."""
        if self._waiting_for_first:
            self._waiting_for_first = False
            self._expected, self._received = expected, received
            return None
        expected_now = expected - self._expected
        received_now = received - self._received
        self._expected, self._received = expected, received
        if expected_now <= 0:
            return None
        return 100 * max(expected_now - received_now, 0) / expected_now


class Verdict(StrEnum):
    WARNING = "quality.warning"
    CLEARED = "quality.cleared"


class QualityWindow:
    """The last WINDOW samples' MOS: a warning when WARN_AT of them are below
    MOS_WARNING, cleared once at most CLEAR_AT are (the counts differ, so a leg hovering
    at the threshold does not flap)."""

    def __init__(self) -> None:
        self._poor: deque[bool] = deque(maxlen=WINDOW)
        self.warning = False

    def push(self, mos: float) -> Verdict | None:
        """Add a sample; the change it makes, if any."""
        self._poor.append(mos < MOS_WARNING)
        poor = sum(self._poor)
        if not self.warning and poor >= WARN_AT:
            self.warning = True
            return Verdict.WARNING
        if self.warning and poor <= CLEAR_AT:
            self.warning = False
            return Verdict.CLEARED
        return None


@dataclass(frozen=True)
class Summary:
    """A leg's quality over its life: what is stored when it ends."""

    samples: int
    mos_min: float
    mos_avg: float
    loss_percent: float  # averaged over the samples
    jitter_ms: float  # averaged
    rtt_ms: float | None  # averaged over the samples that had one
    warnings: int


class Tally:
    """Sums of a leg's samples (constant memory, however long the call)."""

    def __init__(self) -> None:
        self.samples = 0
        self.warnings = 0
        self._mos_min = 5.0
        self._mos = self._loss = self._jitter = self._rtt = 0.0
        self._rtt_samples = 0

    def add(self, sample: QualitySample) -> None:
        self.samples += 1
        self._mos_min = min(self._mos_min, sample.mos)
        self._mos += sample.mos
        self._loss += sample.loss_percent
        self._jitter += sample.jitter_ms
        if sample.rtt_ms is not None:
            self._rtt += sample.rtt_ms
            self._rtt_samples += 1

    def summary(self) -> Summary | None:
        if not self.samples:
            return None
        n = self.samples
        return Summary(
            samples=n,
            mos_min=round(self._mos_min, 2),
            mos_avg=round(self._mos / n, 2),
            loss_percent=round(self._loss / n, 2),
            jitter_ms=round(self._jitter / n, 1),
            rtt_ms=round(self._rtt / self._rtt_samples, 1) if self._rtt_samples else None,
            warnings=self.warnings,
        )


def merged(first: Summary, second: Summary) -> Summary:
    """Two summaries of one leg (its media reconnected) as one, weighted by samples."""
    n = first.samples + second.samples

    def avg(a: float, b: float) -> float:
        return (a * first.samples + b * second.samples) / n

    rtts = [(s.rtt_ms, s.samples) for s in (first, second) if s.rtt_ms is not None]
    rtt = sum(r * k for r, k in rtts) / sum(k for _, k in rtts) if rtts else None
    return Summary(
        samples=n,
        mos_min=min(first.mos_min, second.mos_min),
        mos_avg=round(avg(first.mos_avg, second.mos_avg), 2),
        loss_percent=round(avg(first.loss_percent, second.loss_percent), 2),
        jitter_ms=round(avg(first.jitter_ms, second.jitter_ms), 1),
        rtt_ms=round(rtt, 1) if rtt is not None else None,
        warnings=first.warnings + second.warnings,
    )
