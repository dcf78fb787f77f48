"""Backoff schedules, break durations and Retry's delay rules."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from policies import BreakHistory, Retry, backoff, break_duration


@pytest.fixture
def rng() -> random.Random:
    """A seeded generator, as the supervisor injects one."""
    return random.Random(42)


def test_deterministic_schedules(rng: random.Random) -> None:
    """constant, linear and exponential follow their formulas and saturate at cap."""
    assert [1.5, 1.5] == [backoff.constant(1.5)(n, rng) for n in (1, 9)]
    assert [1.0, 1.5, 2.0, 2.2] == [backoff.linear(1.0, 0.5, cap=2.2)(n, rng) for n in (1, 2, 3, 9)]
    assert [0.2, 0.4, 0.8, 10.0] == [
        backoff.exponential(0.2, 2.0, 10.0)(n, rng) for n in (1, 2, 3, 10)
    ]


SCHEDULES: list[Any] = [
    backoff.constant(3.0),
    backoff.linear(1, 1, cap=60),
    backoff.exponential(0.2, 2.0, 10.0),
    backoff.exponential(1.0, 1000.0, 5.0),
    backoff.full(backoff.exponential()),
    backoff.proportional(backoff.exponential(), ratio=0.5),
    backoff.decorrelated(1.0, cap=30.0),
]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_attempt_ten_thousand_saturates(schedule: Any, rng: random.Random) -> None:
    """Retry 10,000 gives a finite wait within the cap, never OverflowError."""
    delay = schedule(10_000, rng)
    assert math.isfinite(delay)
    assert 0 <= delay <= 90


def test_jitter_stays_in_its_range(rng: random.Random) -> None:
    """full in [0, inner]; proportional in inner*(1±ratio); decorrelated in (0, cap]."""
    full = backoff.full(backoff.constant(2.0))
    prop = backoff.proportional(backoff.constant(2.0), ratio=0.25)
    dec = backoff.decorrelated(median=1.0, cap=8.0)
    for n in range(1, 200):
        assert 0.0 <= full(n, rng) <= 2.0
        assert 1.5 <= prop(n, rng) <= 2.5
        assert 0.0 < dec(n % 12 + 1, rng) <= 8.0


def test_jitter_is_reproducible_for_a_seed() -> None:
    """The same seed gives the same jittered schedule; no global random involved."""
    schedule = backoff.decorrelated()
    first = [schedule(n, random.Random(7)) for n in range(1, 6)]
    random.seed(0)  # the global generator must not matter
    assert first == [schedule(n, random.Random(7)) for n in range(1, 6)]


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (5, 5.0),
        (0.5, 1.0),
        (300, 300.0),
        (300.5, 300.0),
        (1e9, 300.0),
        (10**400, 300.0),  # an int too large for float()
        (math.inf, 300.0),
        (True, 1.0),
        (math.nan, 1.0),
        (-3, 1.0),
        (-math.inf, 1.0),
        (0, 1.0),
        ("7", 1.0),
        (None, 1.0),
    ],
)
def test_retry_after_is_a_minimum_delay_capped_at_300s(
    hint: object, expected: float, rng: random.Random
) -> None:
    """A numeric retry_after > 0 raises the wait to at least min(hint, 300); others are ignored."""

    class Throttled(Exception):
        retry_after = hint

    retry = Retry(backoff=backoff.constant(1.0))
    assert 300.0 == retry.max_retry_after
    assert expected == retry.delay(1, rng, Throttled())


@pytest.mark.parametrize(
    ("hint", "expected"), [(10, 10.0), (20, 20.0), (30, 20.0), (math.inf, 20.0), (-1, 2.0)]
)
def test_max_retry_after_caps_the_hint_not_the_backoff(
    hint: float, expected: float, rng: random.Random
) -> None:
    """max_retry_after=20 caps the hint; a backoff longer than the cap still waits in full."""

    class Throttled(Exception):
        retry_after = hint

    assert expected == Retry(backoff=backoff.constant(2.0), max_retry_after=20).delay(
        1, rng, Throttled()
    )
    assert 50.0 == Retry(backoff=backoff.constant(50.0), max_retry_after=20).delay(
        1, rng, Throttled()
    )


def test_broken_user_backoff_waits_zero(rng: random.Random) -> None:
    """A user backoff returning NaN or a negative number waits 0 rather than misbehaving."""
    assert 0.0 == Retry(backoff=lambda n, r: math.nan).delay(1, rng)
    assert 0.0 == Retry(backoff=lambda n, r: -1.0).delay(1, rng)


@pytest.fixture(params=["type", "tuple", "predicate"])
def retry_on(request: pytest.FixtureRequest) -> Any:
    """retry_on in its three forms, each meaning ConnectionError."""
    return {
        "type": ConnectionError,
        "tuple": (ConnectionError,),
        "predicate": lambda exc: isinstance(exc, ConnectionError),
    }[request.param]


def test_retry_on_forms_agree(retry_on: Any) -> None:
    """A type, a tuple and a predicate all decide the same way."""
    retry = Retry(retry_on=retry_on)
    assert retry.should_retry(ConnectionResetError())
    assert not retry.should_retry(ValueError())


def test_break_duration_formulas() -> None:
    """Numbers, constant, linear and exponential follow their formulas."""
    history = [BreakHistory(openings=n) for n in (1, 2, 3, 10_000)]
    assert [30.0] * 4 == [break_duration.as_break_duration(30)(h) for h in history]
    assert [5.0, 7.0, 9.0, 60.0] == [break_duration.linear(5, 2, cap=60)(h) for h in history]
    assert [30.0, 45.0, 67.5, 300.0] == [
        break_duration.exponential(30, 1.5, cap=300)(h) for h in history
    ]


@pytest.mark.parametrize(
    ("previous", "closed_for", "expected"),
    [
        (None, 100.0, 10.0),  # first opening ever: start
        (40.0, None, 80.0),  # a probe failed: grow
        (40.0, 30.0, 80.0),  # closed briefly: flapping, grow
        (200.0, 60.0 * 3, 25.0),  # three healthy periods: previous / 2**3
        (200.0, 60.0 * 5000, 10.0),  # a very long healthy spell: back to start, no overflow
        (200.0, math.inf, 10.0),
        (250.0, None, 300.0),  # capped
    ],
)
def test_adaptive_break_duration(
    previous: float | None, closed_for: float | None, expected: float
) -> None:
    """adaptive grows when the dependency flaps and shrinks after sustained health."""
    schedule = break_duration.adaptive(10.0, factor=2.0, cap=300.0, healthy_after=60.0)
    assert expected == schedule(BreakHistory(openings=1, previous=previous, closed_for=closed_for))
