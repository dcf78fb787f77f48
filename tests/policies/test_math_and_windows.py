"""Saturating arithmetic against the plain formulas, and the two windows."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from policies import LatencyWindow, Percentiles, SlidingWindow
from policies._math import grow, shrink

# Past factor ** exponent >= e ** 709 (near the float range) both functions saturate: grow
# returns the cap and shrink the floor, whatever start or value is (policies/_math.py).
SATURATED = 709.0


@given(
    start=st.floats(0, 100),
    factor=st.floats(1, 10),
    exponent=st.integers(-3, 3000),
    cap=st.floats(0, 1e6),
)
@example(start=0.0, factor=2.0, exponent=3, cap=10.0)
@example(start=2.0, factor=2.0, exponent=3, cap=0.0)
@example(start=1.0, factor=2.0, exponent=3, cap=8.0)
@example(start=1.0, factor=1.0, exponent=10**6, cap=5.0)
@example(start=3.0, factor=2.0, exponent=0, cap=2.0)
@example(start=1.0, factor=2.0, exponent=-3, cap=10.0)
@example(start=100.0, factor=2.0, exponent=3, cap=5e-324)  # cap / start underflows to 0.0
@example(start=4.0, factor=2.0, exponent=3, cap=4.0)
@example(start=1e-300, factor=2.0, exponent=1024, cap=1e10)
@example(start=1e-300, factor=2.0, exponent=1022, cap=1e10)
def test_grow_is_min_cap_start_times_power(
    start: float, factor: float, exponent: int, cap: float
) -> None:
    """grow == min(cap, start * factor ** exponent), saturating instead of overflowing."""
    if start == 0.0 or cap == 0.0:
        expected = 0.0
    elif exponent <= 0:
        expected = min(cap, start)
    elif exponent * math.log(factor) >= SATURATED:
        expected = cap
    else:
        expected = min(cap, start * factor**exponent)
    assert expected == pytest.approx(grow(start, factor, exponent, cap), rel=1e-9)


@given(
    value=st.floats(0, 1e6),
    factor=st.floats(1, 10),
    exponent=st.integers(-3, 3000),
    floor=st.floats(0, 100),
)
@example(value=100.0, factor=2.0, exponent=2, floor=0.0)
@example(value=100.0, factor=2.0, exponent=2, floor=25.0)
@example(value=100.0, factor=2.0, exponent=3, floor=25.0)
@example(value=100.0, factor=2.0, exponent=1, floor=1.0)
@example(value=5.0, factor=2.0, exponent=2, floor=5.0)
@example(value=3.0, factor=2.0, exponent=0, floor=1.0)
@example(value=3.0, factor=2.0, exponent=-2, floor=1.0)
@example(value=100.0, factor=1.0, exponent=5, floor=1.0)
@example(value=1e300, factor=10.0, exponent=307, floor=0.0)
@example(value=1e300, factor=10.0, exponent=308, floor=0.0)
@example(value=1e300, factor=10.0, exponent=400, floor=2.0)
@example(value=0.0, factor=2.0, exponent=3, floor=0.0)
def test_shrink_is_max_floor_value_over_power(
    value: float, factor: float, exponent: int, floor: float
) -> None:
    """shrink == max(floor, value / factor ** exponent), saturating instead of overflowing."""
    if exponent <= 0:
        expected = max(floor, value)
    elif exponent * math.log(factor) >= SATURATED:
        expected = floor
    else:
        expected = max(floor, value / factor**exponent)
    assert expected == pytest.approx(shrink(value, factor, exponent, floor), rel=1e-9, abs=1e-300)


def test_sliding_window_keeps_whole_slices() -> None:
    """10 s in 10 slices: a call at 0.5 counts until 11.0 (its slice [0, 1) ends at 1)."""
    window = SlidingWindow(10.0)
    window.record(0.5, failed=True)
    window.record(0.99, failed=False)
    window.record(1.0, failed=True)  # a new slice
    assert (3, 2) == window.counts(10.99)
    assert (1, 1) == window.counts(11.0)
    assert (1, 1) == window.counts(11.99)
    assert (0, 0) == window.counts(12.0)
    window.record(25.0, failed=False)
    window.record(25.5, failed=True)
    assert (2, 1) == window.counts(25.9)
    window.clear()
    assert (0, 0) == window.counts(25.9)
    window.record(26.0, failed=True)
    assert (1, 1) == window.counts(26.0)


def test_sliding_window_slices_start_on_the_grid() -> None:
    """A slice opened at 7.3 (1 s slices) covers [7, 8), not [7.3, 8.3)."""
    window = SlidingWindow(10.0)
    window.record(7.3, failed=True)
    window.record(7.9, failed=True)
    window.record(8.0, failed=False)
    assert (3, 2) == window.counts(17.99)
    assert (1, 0) == window.counts(18.0)


def test_sliding_window_bucket_count() -> None:
    """buckets=2 over 10 s: 5 s slices."""
    window = SlidingWindow(10.0, buckets=2)
    window.record(0.0, failed=True)
    window.record(4.9, failed=True)
    assert (2, 2) == window.counts(14.99)
    assert (0, 0) == window.counts(15.0)


@pytest.mark.parametrize("sampling", [0, -1.0, math.nan, math.inf])
def test_sliding_window_rejects_bad_sampling(sampling: float) -> None:
    """sampling must be finite and > 0."""
    message = f"'sampling' must be a finite number > 0, got {sampling!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        SlidingWindow(sampling)
    assert (0, 0) == SlidingWindow(0.5).counts(0.0)


def test_latency_window_percentiles_are_nearest_rank() -> None:
    """p50/p95/p99 by nearest rank over what the ring holds; empty: all None."""
    assert Percentiles() == LatencyWindow(4).percentiles()
    assert Percentiles(p50=None, p95=None, p99=None, samples=0) == Percentiles()
    window = LatencyWindow(128)
    for ms in range(100, 0, -1):
        window.record(ms / 1000)
    assert Percentiles(p50=0.05, p95=0.095, p99=0.099, samples=100) == window.percentiles()
    assert 100 == window.count
    one = LatencyWindow(1)
    one.record(3.0)
    assert Percentiles(p50=3.0, p95=3.0, p99=3.0, samples=1) == one.percentiles()


def test_latency_window_keeps_the_latest_size() -> None:
    """A ring of 4 holds the latest 4; the mask is size - 1 for inlined writers."""
    window = LatencyWindow(4)
    assert (3, 0, [math.isnan(x) for x in window.ring]) == (window.mask, 0, [True] * 4)
    assert window.latest() is None
    latest = []
    for seconds in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        window.record(seconds)
        latest.append(window.latest())
    assert (6, [5.0, 6.0, 3.0, 4.0]) == (window.count, window.ring)
    assert [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] == latest  # (across the wrap too)
    assert Percentiles(p50=4.0, p95=6.0, p99=6.0, samples=4) == window.percentiles()
    assert 1024 == len(LatencyWindow().ring)


@pytest.mark.parametrize("size", [0, -2, 3, 6, 12])
def test_latency_window_size_is_a_power_of_two(size: int) -> None:
    """Other sizes are rejected (the mask trick needs a power of two)."""
    message = f"'size' must be a power of two >= 1, got {size!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        LatencyWindow(size)
    assert [1, 2, 8] == [len(LatencyWindow(n).ring) for n in (1, 2, 8)]
