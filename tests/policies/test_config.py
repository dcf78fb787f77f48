"""Configuration classes and factories: validated at construction, frozen, readable."""

from __future__ import annotations

import math
import re

import attrs
import pytest

from policies import Breaker, Bulkhead, Retry, Timeout, backoff, break_duration
from policies._matchers import DEFAULT_RECORD, ErrorFilter
from policies._validators import check_number


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Retry(attempts=0), ValueError, "'attempts' must be an int >= 1, got 0"),
        (
            lambda: Retry(attempts=True),
            TypeError,
            "'attempts' must be an int >= 1, got True of type bool",
        ),
        (
            lambda: Retry(attempts=2.0),
            TypeError,
            "'attempts' must be an int >= 1, got 2.0 of type float",
        ),
        (
            lambda: Retry(backoff=1.0),
            TypeError,
            "'backoff' must be a callable (attempt, rng) -> seconds such as backoff.exponential(), got 1.0 of type float",
        ),
        (
            lambda: Retry(retry_on="ConnectionError"),
            ValueError,
            "'retry_on' holds the string 'ConnectionError', which names no ErrorKind (one of 'transient', 'rate_limited', 'permanent', 'auth', 'invalid_input', 'unknown'); pass an exception type itself, not its name",
        ),
        (
            lambda: Retry(retry_on=(ConnectionError, int)),
            TypeError,
            "'retry_on' must be an exception type, an ErrorKind, a predicate (exc) -> bool, or a tuple, list or set of those; it holds <class 'int'>, which is no exception",
        ),
        (
            lambda: Retry(retry_on=3),
            TypeError,
            "'retry_on' must be an exception type, an ErrorKind, a predicate (exc) -> bool, or a tuple, list or set of those; it holds 3 of type int",
        ),
        (
            lambda: Retry(retry_on_result=3),
            TypeError,
            "'retry_on_result' must be None or a predicate (result) -> bool, got 3 of type int",
        ),
        (
            lambda: Retry(max_retry_after=0),
            ValueError,
            "'max_retry_after' must be a number > 0, got 0",
        ),
        (
            lambda: Retry(max_retry_after=-5.0),
            ValueError,
            "'max_retry_after' must be a number > 0, got -5.0",
        ),
        (
            lambda: Retry(max_retry_after="300"),
            TypeError,
            "'max_retry_after' must be a number > 0, got '300' of type str",
        ),
        (
            lambda: Retry(max_retry_after=math.inf),
            ValueError,
            "'max_retry_after' must be a finite number > 0, got inf",
        ),
        (
            lambda: Retry(max_retry_after=math.nan),
            ValueError,
            "'max_retry_after' must be a finite number > 0, got nan",
        ),
        (
            lambda: Breaker(failure_ratio=math.nan),
            ValueError,
            "'failure_ratio' must be a finite number > 0 and <= 1, got nan",
        ),
        (
            lambda: Breaker(min_throughput=2.5, failure_ratio=0.5),
            TypeError,
            "'min_throughput' must be an int >= 1, got 2.5 of type float",
        ),
        (
            lambda: backoff.linear(1, 1, cap=-1),
            ValueError,
            "'cap' must be a number >= 0, got -1",
        ),
        (
            lambda: check_number("x", "1"),
            TypeError,
            "'x' must be a number, got '1' of type str",
        ),
        (
            lambda: check_number("x", -math.inf, ge=0, allow_inf=True),
            ValueError,
            "'x' must be a number >= 0, got -inf",
        ),
        (
            lambda: check_number("x", 3, ge=0, le=2),
            ValueError,
            "'x' must be a number >= 0 and <= 2, got 3",
        ),
        (lambda: Timeout(attempt=0), ValueError, "'attempt' must be a number > 0, got 0"),
        (
            lambda: Timeout(total=math.nan),
            ValueError,
            "'total' must be a finite number > 0, got nan",
        ),
        (
            lambda: Timeout(total="5"),
            TypeError,
            "'total' must be a number > 0, got '5' of type str",
        ),
        (
            lambda: Bulkhead(max_concurrent=0),
            ValueError,
            "'max_concurrent' must be an int >= 1, got 0",
        ),
        (
            lambda: Bulkhead(max_concurrent=1, max_queued=-1),
            ValueError,
            "'max_queued' must be an int >= 0, got -1",
        ),
        (
            lambda: Breaker(failure_threshold=0),
            ValueError,
            "'failure_threshold' must be an int >= 1, got 0",
        ),
        (
            lambda: Breaker(failure_ratio=1.5),
            ValueError,
            "'failure_ratio' must be a number > 0 and <= 1, got 1.5",
        ),
        (
            lambda: Breaker(half_open_probes=0),
            ValueError,
            "'half_open_probes' must be an int >= 1, got 0",
        ),
        (lambda: Breaker(slow_call=-1.0), ValueError, "'slow_call' must be a number > 0, got -1.0"),
        (
            lambda: Breaker(failure_threshold=3, failure_ratio=0.5),
            ValueError,
            "give either 'failure_threshold' (consecutive failures) or 'failure_ratio' (ratio over a window), not both: got failure_threshold=3 and failure_ratio=0.5",
        ),
        (
            lambda: Breaker(sampling=10.0),
            ValueError,
            "'min_throughput' and 'sampling' only apply with 'failure_ratio'; got min_throughput=None, sampling=10.0",
        ),
        (
            lambda: Breaker(record=("x",)),
            ValueError,
            "'record' holds the string 'x', which names no ErrorKind (one of 'transient', 'rate_limited', 'permanent', 'auth', 'invalid_input', 'unknown'); pass an exception type itself, not its name",
        ),
        (
            lambda: Breaker(record=(ConnectionError, (TimeoutError,))),
            TypeError,
            "'record' must be an exception type, an ErrorKind, a predicate (exc) -> bool, or a tuple, list or set of those, not nested; it holds the tuple (<class 'TimeoutError'>,)",
        ),
        (
            lambda: Breaker(break_duration="30s"),
            TypeError,
            "'break_duration' must be a number of seconds or a callable (BreakHistory) -> seconds, got '30s' of type str",
        ),
        (
            lambda: Breaker(break_duration=-1),
            ValueError,
            "'break_duration' must be a number >= 0, got -1",
        ),
        (
            lambda: backoff.exponential(factor=0.5),
            ValueError,
            "'factor' must be a number >= 1, got 0.5",
        ),
        (
            lambda: backoff.constant(math.inf),
            ValueError,
            "'delay' must be a finite number >= 0, got inf",
        ),
        (
            lambda: backoff.proportional(backoff.constant(1), ratio=2),
            ValueError,
            "'ratio' must be a number >= 0 and <= 1, got 2",
        ),
        (
            lambda: backoff.full(3),
            TypeError,
            "'inner' must be a backoff callable (attempt, rng) -> seconds, got 3",
        ),
        (
            lambda: break_duration.adaptive(10, cap=5),
            ValueError,
            "'cap' must be a number >= 10, got 5",
        ),
        (
            lambda: break_duration.exponential(True),
            TypeError,
            "'start' must be a number >= 0, got True of type bool",
        ),
    ],
)
def test_bad_configuration_is_rejected_naming_argument_rule_and_value(
    build: object, error: type[Exception], message: str
) -> None:
    """Wrong type: TypeError; bad value: ValueError; the message names argument, rule, value."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        build()  # type: ignore[operator]


def test_attempt_timeout_not_shorter_than_total_warns() -> None:
    """Timeout(attempt >= total) warns: the attempt limit could never fire first."""
    with pytest.warns(UserWarning, match="never fires first"):
        Timeout(attempt=5.0, total=5.0)


def test_configuration_is_frozen_and_comparable() -> None:
    """Config objects are frozen; equal settings compare equal (handy in tests)."""
    retry = Retry(attempts=2, backoff=backoff.constant(1.0))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        retry.attempts = 3  # type: ignore[misc]
    assert Retry(attempts=2, backoff=backoff.constant(1.0)).backoff == retry.backoff
    assert Bulkhead(max_concurrent=2) == Bulkhead(max_concurrent=2, max_queued=0)


@pytest.mark.parametrize(
    ("factory", "text"),
    [
        (
            backoff.exponential(0.2, 2.0, 10.0),
            "backoff.exponential(base=0.2, factor=2.0, cap=10.0)",
        ),
        (backoff.constant(1), "backoff.constant(1.0)"),
        (backoff.full(backoff.constant(1)), "backoff.full(backoff.constant(1.0))"),
        (
            break_duration.exponential(30, 1.5, 300),
            "break_duration.exponential(30.0, factor=1.5, cap=300.0)",
        ),
        (
            break_duration.adaptive(),
            "break_duration.adaptive(5.0, factor=2.0, cap=300.0, healthy_after=60.0)",
        ),
    ],
)
def test_factories_have_readable_reprs(factory: object, text: str) -> None:
    """Schedules show their settings in repr."""
    assert text == repr(factory)


def test_breaker_defaults() -> None:
    """A bare Breaker() is consecutive mode with the documented defaults."""
    config = Breaker()
    machine = config.machine(0.0)
    assert (None, 1, 1, DEFAULT_RECORD, ErrorFilter()) == (
        config.failure_ratio,
        config.half_open_probes,
        config.success_threshold,
        config.record,
        config.ignore,
    )
    assert 30.0 == config.break_duration(break_duration.BreakHistory(openings=1))
    for _ in range(4):
        machine.on_outcome(machine.acquire(0.0), 0.0, failed=True)
    assert "closed" == machine.state
    machine.on_outcome(machine.acquire(0.0), 0.0, failed=True)
    assert "open" == machine.state
