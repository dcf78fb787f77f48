"""
Rolling windows: failure counts over time buckets, and a latency reservoir.

:class:`SlidingWindow` follows Polly's ``RollingHealthMetrics``: the sampling duration is cut
into *buckets* time slices; a call lands in the slice of ``now``; slices older than the
sampling duration are dropped whole. Totals are kept incrementally, so recording and reading
are O(1) amortised. The window is therefore granular: a failure leaves it up to one slice
(``sampling / buckets``) later than exactly ``sampling`` seconds — the price of O(1).

:class:`LatencyWindow` keeps the latest *size* latencies in a ring and sorts only when asked
for percentiles (status reads, never the call path).
"""

from __future__ import annotations

import math
from collections import deque
from typing import final

import attrs

from ._validators import check_derived

__all__ = ("SlidingWindow", "LatencyWindow", "Percentiles")


@final
class SlidingWindow:
    """
    Calls and failures seen during the last *sampling* seconds, in *buckets* time slices.

    Mutable; owned by one breaker machine. ``now`` must not go backwards.
    """

    __slots__ = ("_buckets", "_calls", "_failures", "_sampling", "_slice")

    def __init__(self, sampling: float, buckets: int = 10) -> None:
        if not sampling > 0 or math.isinf(sampling):
            msg = f"'sampling' must be a finite number > 0, got {sampling!r}"
            raise ValueError(msg)
        if buckets < 1:
            msg = f"'buckets' must be an int >= 1, got {buckets!r}"
            raise ValueError(msg)
        # A subnormal sampling gives slices 0.0 wide, and `now % 0.0` raises.
        check_derived(
            "'sampling' / 'buckets' (the width of a time slice)",
            sampling / buckets,
            f"{sampling!r} / {buckets!r}",
        )
        self._sampling = sampling
        self._slice = sampling / buckets
        # Each entry: [slice_start, calls, failures]; oldest first.
        self._buckets: deque[list[float]] = deque()
        self._calls = 0
        self._failures = 0

    def _expire(self, now: float) -> None:
        horizon = now - self._sampling
        buckets = self._buckets
        while buckets and buckets[0][0] + self._slice <= horizon:
            _, calls, failures = buckets.popleft()
            self._calls -= int(calls)
            self._failures -= int(failures)

    def record(self, now: float, *, failed: bool) -> None:
        """Count one call that ended at *now*."""
        buckets = self._buckets
        if buckets and now < buckets[-1][0] + self._slice:
            bucket = buckets[-1]
        else:
            self._expire(now)
            bucket = [now - (now % self._slice), 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        self._calls += 1
        if failed:
            bucket[2] += 1
            self._failures += 1

    def counts(self, now: float) -> tuple[int, int]:
        """``(calls, failures)`` within the window ending at *now*."""
        self._expire(now)
        return self._calls, self._failures

    def clear(self) -> None:
        """Forget everything (the breaker closed or was reset)."""
        self._buckets.clear()
        self._calls = 0
        self._failures = 0


@final
@attrs.frozen(kw_only=True)
class Percentiles:
    """Latency percentiles in seconds (``None`` when nothing was measured yet)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    samples: int = 0


@final
class LatencyWindow:
    """
    The latest *size* latencies (seconds) in a ring; percentiles on demand.

    *size* is a power of two so a writer may inline :meth:`record` on a hot path as
    ``window.ring[window.count & window.mask] = seconds; window.count += 1``.
    """

    __slots__ = ("count", "mask", "ring")

    def __init__(self, size: int = 1024) -> None:
        if size < 1 or size & (size - 1):
            msg = f"'size' must be a power of two >= 1, got {size!r}"
            raise ValueError(msg)
        self.ring: list[float] = [math.nan] * size
        self.mask = size - 1
        #: latencies recorded so far (the ring holds the latest ``min(count, size)``).
        self.count = 0

    def record(self, seconds: float) -> None:
        """Add one latency; the oldest falls out once the ring is full."""
        self.ring[self.count & self.mask] = seconds
        self.count += 1

    def latest(self) -> float | None:
        """The latest latency recorded, if any."""
        return self.ring[(self.count - 1) & self.mask] if self.count else None

    def percentiles(self) -> Percentiles:
        """Nearest-rank p50, p95 and p99 of the latencies in the ring."""
        ordered = sorted(x for x in self.ring if not math.isnan(x))
        n = len(ordered)
        if not n:
            return Percentiles()

        def rank(q: float) -> float:
            return ordered[max(0, math.ceil(q * n) - 1)]

        return Percentiles(p50=rank(0.50), p95=rank(0.95), p99=rank(0.99), samples=n)

    def quantile(self, q: float) -> float | None:
        """The nearest-rank *q*-quantile (``0 < q < 1``) of the ring; ``None`` when empty."""
        ordered = sorted(x for x in self.ring if not math.isnan(x))
        if not ordered:
            return None
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
