"""Token buckets for signaling rate limits. Pure: no Django, no clock of its own.

A rate "n/period" lets a key spend n messages at once and refills n per period, so a
client's burst (register, offer, a dozen trickled candidates) passes while a flood is cut
to the steady rate. The caller passes `now` (a monotonic clock) so tests need not sleep.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PERIODS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PRUNE_EVERY = 1024  # checks between sweeps of idle keys (memory stays bounded)


@dataclass(frozen=True)
class Rate:
    count: int
    period_s: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """'600/min' → Rate(600, 60). The same format as the REST throttles' rates."""
        number, _, period = text.partition("/")
        count = int(number)
        if count < 1 or not period or period[0] not in PERIODS_S:
            raise ValueError(f"not a rate like 600/min: {text!r}")
        return cls(count, float(PERIODS_S[period[0]]))

    @property
    def per_second(self) -> float:
        return self.count / self.period_s


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class TokenBuckets:
    """One bucket per key (a socket, a principal, a client IP), all at the same rate."""

    rate: Rate
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _checks: int = 0

    def allow(self, key: str, now: float) -> bool:
        """Spend one token of `key`'s bucket; False (nothing spent) when it is empty."""
        self._checks += 1
        if self._checks % PRUNE_EVERY == 0:
            self._prune(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.rate.count), now)
        else:
            refill = (now - bucket.updated) * self.rate.per_second
            bucket.tokens = min(float(self.rate.count), bucket.tokens + refill)
            bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may send one more message."""
        bucket = self._buckets.get(key)
        if bucket is None or bucket.tokens >= 1.0:
            return 0.0
        return (1.0 - bucket.tokens) / self.rate.per_second

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        """Drop buckets that have refilled completely: they hold no information."""
        full_after = self.rate.period_s
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
