"""The adaptive concurrency limit (policies.concurrency): pure, on explicit times."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import AdaptiveLimit, Bulkhead, GradientLimit


def feed(machine: GradientLimit, now: float, rtt: float, in_flight: int, n: int) -> float:
    """*n* samples of *rtt*, one per millisecond from *now*; returns the time after them."""
    for _ in range(n):
        now += 0.001
        machine.on_sample(now, rtt, in_flight, False)
    return now


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"min": 5, "max": 2}, ValueError, "'min' must be <= 'max', got min=5 and max=2"),
        (
            {"initial": 300},
            ValueError,
            "'initial' must be within ['min', 'max'] = [1, 200], got 300",
        ),
        ({"initial": 0}, ValueError, "'initial' must be an int >= 1, got 0"),
        ({"min": 0}, ValueError, "'min' must be an int >= 1, got 0"),
        ({"max": 2.5}, TypeError, "'max' must be an int >= 1, got 2.5 of type float"),
        ({"tolerance": math.nan}, ValueError, "'tolerance' must be a finite number >= 1, got nan"),
        ({"smoothing": 0}, ValueError, "'smoothing' must be a number > 0 and <= 1, got 0"),
        ({"window": math.inf}, ValueError, "'window' must be a finite number > 0, got inf"),
        ({"queue": 1.0}, ValueError, "'queue' must be a number >= 0 and < 1, got 1.0"),
        ({"probe_every": 1}, ValueError, "'probe_every' must be an int >= 2, got 1"),
        (
            {"backoff": True},
            TypeError,
            "'backoff' must be a number > 0 and <= 1, got True of type bool",
        ),
    ],
)
def test_bad_settings_name_the_argument_and_value(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        AdaptiveLimit(**kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_a_bulkhead_takes_a_number_or_an_adaptive_limit() -> None:
    assert Bulkhead(max_concurrent=AdaptiveLimit()).max_concurrent == AdaptiveLimit()
    with pytest.raises(
        TypeError, match=r"'max_concurrent' must be an int >= 1, got '20' of type str"
    ):
        Bulkhead(max_concurrent="20")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'max_concurrent' must be an int >= 1, got 0"):
        Bulkhead(max_concurrent=0)


def test_steady_latency_at_full_use_grows_the_limit() -> None:
    machine = AdaptiveLimit(initial=10, probe_every=10_000).machine()
    feed(machine, 0.0, 0.02, 10, 2000)
    assert machine.limit > 10


def test_light_use_does_not_grow_it() -> None:
    """App-limited: a window whose busiest moment used under half the limit says nothing."""
    machine = AdaptiveLimit(initial=10, probe_every=10_000).machine()
    feed(machine, 0.0, 0.02, 4, 2000)
    assert machine.limit == 10


def test_a_drop_shrinks_it_by_backoff() -> None:
    machine = AdaptiveLimit(initial=100, window_samples=1, window=0.001).machine()
    assert machine.on_sample(1.0, 0.5, 100, True) == 90
    assert machine.limit == 90


def test_it_settles_above_the_knee_of_a_queueing_dependency() -> None:
    """Latency 20 ms up to 16 in flight, then proportional: the limit settles at 16 / 0.9,
    from above or below, and the probes find the unloaded latency when it starts above."""
    for initial in (4, 20, 100):
        machine = AdaptiveLimit(initial=initial).machine()
        now = 0.0
        seen = []
        for _ in range(6000):
            limit = machine.limit
            now = feed(machine, now, 0.02 * max(1.0, limit / 16), limit, 1)
            seen.append(machine.limit)
        tail = sorted(seen[-2000:])
        assert 16 <= tail[len(tail) // 2] <= 19, (initial, tail[len(tail) // 2])


def test_it_reports_only_changes() -> None:
    machine = AdaptiveLimit(initial=10, window_samples=1, window=0.001).machine()
    answers = [machine.on_sample(0.001 * i, 0.02, 10, False) for i in range(1, 400)]
    changes = [a for a in answers if a is not None]
    assert changes
    assert all(isinstance(a, int) for a in changes)
    assert machine.limit == next(a for a in reversed(answers) if a is not None)


samples = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=10),  # time step
        st.floats(allow_nan=True, allow_infinity=True),  # rtt, anything
        st.integers(min_value=0, max_value=10_000),  # in flight
        st.booleans(),  # dropped
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=50),
    st.integers(min_value=0, max_value=300),
    st.integers(min_value=0, max_value=300),
    samples,
)
def test_the_limit_stays_within_min_and_max(
    low: int, span: int, offset: int, sequence: list[tuple[float, float, int, bool]]
) -> None:
    """Whatever latencies arrive (negative, nan, inf included), in [min, max], an int."""
    config = AdaptiveLimit(
        min=low, max=low + span, initial=low + min(offset, span), window_samples=1, window=1e-6
    )
    machine = config.machine()
    now = 0.0
    for step, rtt, in_flight, dropped in sequence:
        now += step
        answer = machine.on_sample(now, rtt, in_flight, dropped)
        assert config.min <= machine.limit <= config.max
        assert isinstance(machine.limit, int)
        assert answer is None or answer == machine.limit
