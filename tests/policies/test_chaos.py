"""
``policies.Chaos``: the pure part of fault injection (issue 21): its checks, what an injected
call gets, and a seeded draw landing within binomial bounds of its rate.
"""

from __future__ import annotations

import datetime
import math
import random

import pytest

from policies import Chaos
from policies.chaos import NO_RESULT


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.9])
def test_draws_land_within_binomial_bounds_of_the_rate(rate: float) -> None:
    """n seeded draws inject k times, |k - n p| within 5 standard deviations (p < 1e-6)."""
    n = 20_000
    rng = random.Random(21)
    chaos = Chaos(rate=rate, error=ConnectionError)
    k = sum(chaos.draw(rng) for _ in range(n))
    bound = 5 * math.sqrt(n * rate * (1 - rate))
    assert abs(k - n * rate) <= bound, (k, n * rate, bound)


def test_rate_zero_never_and_one_always() -> None:
    rng = random.Random(0)
    assert not any(Chaos(rate=0, latency=1.0).draw(rng) for _ in range(1000))
    assert all(Chaos(rate=1, latency=1.0).draw(rng) for _ in range(1000))


def test_what_an_injected_call_gets() -> None:
    assert ("latency", "error") == Chaos(rate=1, latency=0.2, error=TimeoutError).injects()
    assert ("result",) == Chaos(rate=1, result=None).injects()
    assert ("latency",) == Chaos(rate=1, latency=datetime.timedelta(milliseconds=250)).injects()
    made = Chaos(rate=1, error=TimeoutError).make_error()
    assert isinstance(made, TimeoutError)
    assert made is not Chaos(rate=1, error=TimeoutError).make_error()
    instance = ConnectionError("down")
    assert instance is Chaos(rate=1, error=instance).make_error()
    assert isinstance(Chaos(rate=1, error="ConnectionError").make_error(), ConnectionError)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rate": 1.5, "latency": 1.0}, ValueError, "'rate' must be"),
        ({"rate": 0.5}, ValueError, "something to inject"),
        ({"rate": 0.5, "error": KeyError, "result": 1}, ValueError, "not both"),
        ({"rate": 0.5, "latency": 0}, ValueError, "'latency' must be"),
        ({"rate": 0.5, "error": "NoSuchError"}, ValueError, "builtin exception type"),
        ({"rate": 0.5, "error": 42}, TypeError, "'error' must be an exception"),
    ],
)
def test_bad_input_is_named(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Chaos(**kwargs)  # type: ignore[arg-type]
    assert NO_RESULT is Chaos(rate=0.5, latency=1.0).result
