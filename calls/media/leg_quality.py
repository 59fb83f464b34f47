"""One leg's quality meter: every interval, what the probe measured → a sample (quality.py),
the warning window, the leg's tally. Cheap: a few integer reads per leg per interval."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from calls.media.aiortc_internals import QualityProbe
from calls.media.forwarding import CLOCK_RATE
from calls.media.quality import (
    Direction,
    LossCounter,
    QualitySample,
    QualityWindow,
    Summary,
    Tally,
    Verdict,
    leg_sample,
)

_TICKS_PER_MS = CLOCK_RATE / 1000  # Opus' RTP clock, whatever the sampling rate


@dataclass(frozen=True)
class QualityChange:
    """A warning raised or cleared, with the sample that decided it."""

    verdict: Verdict
    sample: QualitySample


# Where every sample goes besides the leg's own judgement (e.g. a metrics histogram).
SampleHook = Callable[[QualitySample], None]


class LegQuality:
    def __init__(self, probe: QualityProbe, on_sample: SampleHook | None = None) -> None:
        self.probe = probe
        self._received_loss = LossCounter()
        self._sent_loss = LossCounter(from_first=True)
        self._rtt_ms: float | None = None  # the latest measured (reports may carry none)
        self._window = QualityWindow()
        self._tally = Tally()
        self._on_sample = on_sample

    @property
    def warning(self) -> bool:
        return self._window.warning

    def sample(self) -> tuple[QualitySample, QualityChange | None] | None:
        """Measure the interval since the last call; None if nothing flowed either way."""
        counted = self.probe.received()
        received = Direction(
            self._received_loss.interval(counted.expected, counted.received),
            counted.jitter / _TICKS_PER_MS,
        )
        reports = self.probe.take_reports()
        sent = Direction(None, None)
        if reports:
            # Cumulative counts, less the gaps the server forwarded from the other leg: what
            # this leg's own network lost (fraction_lost would blame it for the other's).
            last = reports[-1]
            lost_here = last.packets_lost - last.upstream_gaps
            loss = self._sent_loss.interval(
                last.highest_sequence, last.highest_sequence - lost_here
            )
            sent = Direction(loss, last.jitter / _TICKS_PER_MS if loss is not None else None)
            rtts = [r.rtt_s for r in reports if r.rtt_s is not None]
            if rtts:
                self._rtt_ms = 1000 * rtts[-1]
        if received.loss_percent is None:
            received = Direction(None, None)  # no packets: its jitter is an old figure
        measured = leg_sample(received, sent, self._rtt_ms)
        if measured is None:
            return None
        self._tally.add(measured)
        if self._on_sample is not None:
            self._on_sample(measured)
        verdict = self._window.push(measured.mos)
        if verdict is Verdict.WARNING:
            self._tally.warnings += 1
        return measured, QualityChange(verdict, measured) if verdict else None

    def carry_on_from(self, previous: LegQuality) -> None:
        """The same leg's new connection (a reconnect) goes on judging where the old one
        stopped: a warning raised before is cleared by this one, not forgotten."""
        self._window = previous._window

    def summary(self) -> Summary | None:
        return self._tally.summary()
