"""Hedge: the delay decision (fixed or a latency quantile, clamped) and its checks (issue 19)."""

from __future__ import annotations

import datetime
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import Hedge, LatencyWindow, Quantile
from policies.hedge import MIN_SAMPLES, REFRESH


def _window(latencies: list[float], size: int = 1024) -> LatencyWindow:
    window = LatencyWindow(size)
    for latency in latencies:
        window.record(latency)
    return window


def test_defaults() -> None:
    """Hedge() waits half a second and starts one hedge."""
    assert (0.5, 1) == (Hedge().delay, Hedge().max_hedges)


def test_fixed_delay_ignores_the_window() -> None:
    """A fixed delay is the delay whatever was measured."""
    hedge = Hedge(delay=0.05, max_hedges=2)
    assert 0.05 == hedge.delay_for(_window([1.0] * 100))
    assert 0.05 == hedge.machine().delay(_window([]))


def test_timedelta_is_seconds() -> None:
    """A timedelta delay is stored as its seconds, equal to the number's Hedge."""
    hedge = Hedge(delay=datetime.timedelta(milliseconds=250))
    assert (0.25, Hedge(delay=0.25)) == (hedge.delay, hedge)
    quantile = Hedge.quantile(0.9, floor=datetime.timedelta(milliseconds=5), cap=2)
    assert Quantile(q=0.9, floor=0.005, cap=2) == quantile


def test_quantile_reads_the_window() -> None:
    """The nearest-rank quantile of the measured latencies: 95th of 1..100 ms is 95 ms."""
    hedge = Hedge(delay=Hedge.quantile(0.95))
    window = _window([i / 1000 for i in range(1, 101)])
    assert 0.095 == hedge.delay_for(window)


def test_quantile_is_clamped() -> None:
    """Below floor: floor; above cap: cap."""
    fast = _window([0.0001] * 100)
    slow = _window([50.0] * 100)
    hedge = Hedge(delay=Hedge.quantile(0.5, floor=0.01, cap=1.0))
    assert (0.01, 1.0) == (hedge.delay_for(fast), hedge.delay_for(slow))


def test_quantile_waits_cap_until_measured() -> None:
    """With fewer than MIN_SAMPLES latencies the delay is cap; from MIN_SAMPLES the quantile."""
    hedge = Hedge(delay=Hedge.quantile(0.5, cap=3.0))
    window = _window([0.02] * (MIN_SAMPLES - 1))
    assert 3.0 == hedge.delay_for(window)
    window.record(0.02)
    assert 0.02 == hedge.delay_for(window)


def test_machine_reads_the_window_once_per_refresh() -> None:
    """The cache sorts again only after REFRESH new latencies (and always while too few)."""
    machine = Hedge(delay=Hedge.quantile(0.5, cap=3.0)).machine()
    window = _window([0.01] * (MIN_SAMPLES - 1))
    assert 3.0 == machine.delay(window)
    window.record(0.01)
    assert 0.01 == machine.delay(window)  # enough now: read at once, not after REFRESH
    for _ in range(REFRESH - 1):
        window.record(1.0)
    assert 0.01 == machine.delay(window)  # still the cached value
    window.record(1.0)
    assert 1.0 == machine.delay(window)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"delay": 0}, ValueError, "'delay' must be a number > 0, got 0"),
        ({"delay": -1.0}, ValueError, "'delay' must be a number > 0, got -1.0"),
        ({"delay": math.nan}, ValueError, "'delay' must be a finite number > 0, got nan"),
        ({"delay": math.inf}, ValueError, "'delay' must be a finite number > 0, got inf"),
        (
            {"delay": datetime.timedelta(0)},
            ValueError,
            "'delay' must be a number > 0, got 0.0",
        ),
        ({"delay": "1s"}, TypeError, "'delay' must be seconds (a number > 0 or a timedelta)"),
        ({"delay": True}, TypeError, "got True of type bool"),
        ({"max_hedges": 0}, ValueError, "'max_hedges' must be an int >= 1, got 0"),
        ({"max_hedges": 1.0}, TypeError, "'max_hedges' must be an int >= 1, got 1.0"),
    ],
)
def test_bad_hedge(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    """A bad argument is refused at construction, naming the argument and the value."""
    with pytest.raises(error) as caught:
        Hedge(**kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0,), {}, "'q' must be a number > 0, got 0"),
        ((1,), {}, "'q' must be a number > 0 and < 1, got 1"),
        ((1.5,), {}, "'q' must be a number > 0 and < 1, got 1.5"),
        ((math.nan,), {}, "'q' must be a finite number > 0, got nan"),
        ((0.5,), {"floor": 0}, "'floor' must be a number > 0, got 0"),
        ((0.5,), {"cap": math.inf}, "'cap' must be a finite number > 0, got inf"),
        ((0.5,), {"floor": 2.0, "cap": 1.0}, "'floor' must be <= 'cap', got floor=2.0 > cap=1.0"),
    ],
)
def test_bad_quantile(args: tuple[float], kwargs: dict[str, float], message: str) -> None:
    """q outside (0, 1), a bad floor or cap, floor > cap: ValueError naming them."""
    with pytest.raises(ValueError) as caught:
        Hedge.quantile(*args, **kwargs)
    assert message == str(caught.value)


@settings(max_examples=300, deadline=None)
@given(
    latencies=st.lists(
        st.floats(min_value=1e-6, max_value=1e3, allow_nan=False), min_size=0, max_size=300
    ),
    q=st.floats(min_value=0.001, max_value=0.999),
    floor=st.floats(min_value=1e-4, max_value=1.0),
    span=st.floats(min_value=0.0, max_value=100.0),
)
def test_quantile_delay_is_clamped_and_is_a_measured_latency(
    latencies: list[float], q: float, floor: float, span: float
) -> None:
    """
    Always within [floor, cap]; with enough latencies it is one of them (or a bound), and the
    share of latencies at or below it is at least q (nearest rank).
    """
    cap = floor + span
    hedge = Hedge(delay=Hedge.quantile(q, floor=floor, cap=cap))
    window = _window(latencies)
    delay = hedge.delay_for(window)
    assert floor <= delay <= cap
    if len(latencies) < MIN_SAMPLES:
        assert cap == delay
        return
    assert delay in {*latencies, floor, cap}
    measured = window.quantile(q)
    assert measured is not None
    assert sum(x <= measured for x in latencies) >= q * len(latencies)
    assert hedge.machine().delay(window) == delay


@settings(max_examples=200, deadline=None)
@given(
    delay=st.floats(min_value=1e-9, max_value=1e9, allow_nan=False),
    max_hedges=st.integers(min_value=1, max_value=100),
)
def test_any_valid_fixed_delay_is_kept(delay: float, max_hedges: int) -> None:
    """Every finite positive delay and count is accepted and returned unchanged."""
    hedge = Hedge(delay=delay, max_hedges=max_hedges)
    assert (delay, max_hedges) == (hedge.delay_for(LatencyWindow(8)), hedge.max_hedges)
