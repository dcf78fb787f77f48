"""Every argument of every factory and config class: its rule, its boundary, its message."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from policies import Breaker, Budget, Bulkhead, RateLimit, Retry, Timeout, backoff, break_duration
from policies._validators import integer, number, optional_number
from policies.window import SlidingWindow

one = backoff.constant(1.0)

# (build(**kwargs), argument, rule text, the bound, "ge" | "gt", largest allowed or None,
#  whether inf is allowed)
NUMBERS: list[tuple[Callable[..., object], str, str, float, str, float | None, bool]] = [
    (backoff.constant, "delay", ">= 0", 0, "ge", None, False),
    (
        lambda **kw: backoff.linear(**({"start": 1, "step": 1} | kw)),
        "start",
        ">= 0",
        0,
        "ge",
        None,
        False,
    ),
    (
        lambda **kw: backoff.linear(**({"start": 1, "step": 1} | kw)),
        "step",
        ">= 0",
        0,
        "ge",
        None,
        False,
    ),
    (
        lambda **kw: backoff.linear(**({"start": 1, "step": 1} | kw)),
        "cap",
        ">= 0",
        0,
        "ge",
        None,
        True,
    ),
    (backoff.exponential, "base", ">= 0", 0, "ge", None, False),
    (backoff.exponential, "factor", ">= 1", 1, "ge", None, False),
    (backoff.exponential, "cap", ">= 0", 0, "ge", None, False),
    (lambda **kw: backoff.proportional(one, **kw), "ratio", ">= 0 and <= 1", 0, "ge", 1, False),
    (backoff.decorrelated, "median", "> 0", 0, "gt", None, False),
    (backoff.decorrelated, "cap", "> 0", 0, "gt", None, False),
    (break_duration.constant, "seconds", ">= 0", 0, "ge", None, False),
    (
        lambda **kw: break_duration.linear(**({"start": 1, "step": 1} | kw)),
        "start",
        ">= 0",
        0,
        "ge",
        None,
        False,
    ),
    (
        lambda **kw: break_duration.linear(**({"start": 1, "step": 1} | kw)),
        "step",
        ">= 0",
        0,
        "ge",
        None,
        False,
    ),
    (
        lambda **kw: break_duration.linear(**({"start": 1, "step": 1} | kw)),
        "cap",
        ">= 0",
        0,
        "ge",
        None,
        False,
    ),
    (
        lambda **kw: break_duration.exponential(**({"start": 1} | kw)),
        "start",
        ">= 0",
        0,
        "ge",
        None,
        False,
    ),
    (
        lambda **kw: break_duration.exponential(**({"start": 1} | kw)),
        "factor",
        ">= 1",
        1,
        "ge",
        None,
        False,
    ),
    (
        lambda **kw: break_duration.exponential(**({"start": 1} | kw)),
        "cap",
        ">= 0",
        0,
        "ge",
        None,
        False,
    ),
    (
        lambda **kw: break_duration.adaptive(**({"start": 0} | kw)),
        "start",
        ">= 0",
        0,
        "ge",
        None,
        False,
    ),
    (break_duration.adaptive, "factor", ">= 1", 1, "ge", None, False),
    (break_duration.adaptive, "cap", ">= 5", 5, "ge", None, False),
    (break_duration.adaptive, "healthy_after", "> 0", 0, "gt", None, False),
    (
        lambda **kw: break_duration.as_break_duration(kw["break_duration"]),
        "break_duration",
        ">= 0",
        0,
        "ge",
        None,
        False,
    ),
    (Retry, "max_retry_after", "> 0", 0, "gt", None, False),
    (lambda **kw: Breaker(failure_ratio=0.5, **kw), "sampling", "> 0", 0, "gt", None, False),
    (Breaker, "failure_ratio", "> 0 and <= 1", 0, "gt", 1, False),
    (Breaker, "slow_call", "> 0", 0, "gt", None, False),
    (Timeout, "attempt", "> 0", 0, "gt", None, False),
    (Timeout, "total", "> 0", 0, "gt", None, False),
]


def raises(error: type[Exception], message: str) -> Any:
    return pytest.raises(error, match=f"^{re.escape(message)}$")


@pytest.mark.parametrize(
    ("build", "name", "rule", "bound", "kind", "most", "inf_ok"),
    NUMBERS,
    ids=[f"{i}-{row[1]}" for i, row in enumerate(NUMBERS)],
)
def test_number_arguments(
    build: Callable[..., object],
    name: str,
    rule: str,
    bound: float,
    kind: str,
    most: float | None,
    inf_ok: bool,
) -> None:
    """Each number argument: its type, its bound (in or out), its top, NaN and inf."""
    expected = f"'{name}' must be a number {rule}"
    if name == "break_duration":  # a callable is accepted too, and the message says so
        expected = (
            "'break_duration' must be a number of seconds or a callable (BreakHistory) -> seconds"
        )
    with raises(TypeError, f"{expected}, got '1' of type str"):
        build(**{name: "1"})
    with raises(TypeError, f"{expected}, got True of type bool"):
        build(**{name: True})
    below = bound - 0.5 if kind == "ge" else bound
    with raises(ValueError, f"'{name}' must be a number {rule}, got {below!r}"):
        build(**{name: below})
    build(**{name: bound if kind == "ge" else bound + 0.5})  # the bound itself, or just past
    if most is not None:
        build(**{name: most})
        with raises(ValueError, f"'{name}' must be a number {rule}, got {most + 0.5!r}"):
            build(**{name: most + 0.5})
    with raises(ValueError, f"'{name}' must be a finite number {rule}, got nan"):
        build(**{name: math.nan})
    if inf_ok:
        build(**{name: math.inf})
    else:
        with raises(ValueError, f"'{name}' must be a finite number {rule}, got inf"):
            build(**{name: math.inf})


INTEGERS: list[tuple[Callable[..., object], str, int]] = [
    (Retry, "attempts", 1),
    (Breaker, "failure_threshold", 1),
    (lambda **kw: Breaker(failure_ratio=0.5, **kw), "min_throughput", 1),
    (Breaker, "half_open_probes", 1),
    (Breaker, "success_threshold", 1),
    (Bulkhead, "max_concurrent", 1),
    (lambda **kw: Bulkhead(max_concurrent=1, **kw), "max_queued", 0),
]


@pytest.mark.parametrize(("build", "name", "least"), INTEGERS, ids=[r[1] for r in INTEGERS])
def test_int_arguments(build: Callable[..., object], name: str, least: int) -> None:
    """Each int argument: bool and float are TypeErrors; below the bound a ValueError."""
    rule = f"an int >= {least}"
    with raises(TypeError, f"'{name}' must be {rule}, got True of type bool"):
        build(**{name: True})
    with raises(TypeError, f"'{name}' must be {rule}, got 2.0 of type float"):
        build(**{name: 2.0})
    with raises(ValueError, f"'{name}' must be {rule}, got {least - 1}"):
        build(**{name: least - 1})
    assert least == getattr(build(**{name: least}), name)


def test_optional_arguments_accept_none() -> None:
    """None means "not set" wherever an argument is optional."""
    assert None is Timeout(attempt=None, total=None).total
    assert None is Breaker(failure_threshold=None, slow_call=None).slow_call
    assert None is Breaker(failure_ratio=0.5, min_throughput=None, sampling=None).sampling


def test_validator_factories_used_at_test_time() -> None:
    """number, optional_number and integer: the name in the message is the init argument."""

    @attrs.frozen(kw_only=True)
    class Config:
        _span: float = attrs.field(default=1.0, validator=number(gt=0))
        big: float = attrs.field(default=1.0, validator=number(ge=1, allow_inf=True))
        cap: float | None = attrs.field(default=None, validator=optional_number(ge=0, le=2))
        top: float | None = attrs.field(default=None, validator=optional_number(allow_inf=True))
        count: int = attrs.field(default=1, validator=integer(ge=1))
        limit: int | None = attrs.field(default=None, validator=integer(ge=0, optional=True))
        share: float = attrs.field(default=0.5, validator=number(gt=0, le=1))
        wait: float | None = attrs.field(default=None, validator=optional_number(gt=0))

    assert math.inf == Config(big=math.inf).big
    assert math.inf == Config(top=math.inf).top
    assert (None, None) == (Config().cap, Config().limit)
    assert 0 == Config(limit=0).limit
    with raises(ValueError, "'span' must be a number > 0, got 0"):
        Config(span=0)
    with raises(ValueError, "'big' must be a number >= 1, got 0.5"):
        Config(big=0.5)
    with raises(ValueError, "'span' must be a finite number > 0, got inf"):
        Config(span=math.inf)
    with raises(ValueError, "'cap' must be a number >= 0 and <= 2, got 3"):
        Config(cap=3)
    with raises(ValueError, "'cap' must be a number >= 0 and <= 2, got -1"):
        Config(cap=-1)
    with raises(ValueError, "'cap' must be a finite number >= 0 and <= 2, got inf"):
        Config(cap=math.inf)
    with raises(TypeError, "'top' must be a number, got 'x' of type str"):
        Config(top="x")
    with raises(ValueError, "'count' must be an int >= 1, got 0"):
        Config(count=0)
    with raises(TypeError, "'count' must be an int >= 1, got None of type NoneType"):
        Config(count=None)
    with raises(ValueError, "'limit' must be an int >= 0, got -1"):
        Config(limit=-1)
    with raises(ValueError, "'share' must be a number > 0 and <= 1, got 1.5"):
        Config(share=1.5)
    with raises(ValueError, "'wait' must be a number > 0, got 0"):
        Config(wait=0)


def test_factory_defaults() -> None:
    """Each factory's defaults, as its repr shows them."""
    assert [
        "backoff.exponential(base=0.2, factor=2.0, cap=10.0)",
        "backoff.proportional(backoff.constant(1.0), ratio=0.2)",
        "backoff.decorrelated(median=1.0, cap=60.0)",
        "backoff.linear(start=1.0, step=2.0, cap=inf)",
        "break_duration.linear(1.0, step=2.0, cap=300.0)",
        "break_duration.exponential(1.0, factor=2.0, cap=300.0)",
    ] == [
        repr(backoff.exponential()),
        repr(backoff.proportional(one)),
        repr(backoff.decorrelated()),
        repr(backoff.linear(1, 2)),
        repr(break_duration.linear(1, 2)),
        repr(break_duration.exponential(1)),
    ]


def test_factories_store_floats() -> None:
    """Ints given to factories are stored as floats, so equal settings compare equal."""
    assert backoff.constant(1.0) == backoff.constant(1)
    assert backoff.linear(1.0, 2.0, 3.0) == backoff.linear(1, 2, 3)
    assert backoff.exponential(1.0, 2.0, 3.0) == backoff.exponential(1, 2, 3)
    assert backoff.proportional(one, 1.0) == backoff.proportional(one, 1)
    assert backoff.decorrelated(1.0, 2.0) == backoff.decorrelated(1, 2)
    assert break_duration.constant(1.0) == break_duration.constant(1)
    assert break_duration.as_break_duration(1.0) == break_duration.constant(1)
    assert break_duration.linear(1.0, 2.0, 3.0) == break_duration.linear(1, 2, 3)
    assert break_duration.exponential(1.0, 2.0, 3.0) == break_duration.exponential(1, 2, 3)
    assert break_duration.adaptive(1.0, 2.0, 3.0, 4.0) == break_duration.adaptive(1, 2, 3, 4)
    assert "backoff.constant(1.0)" == repr(backoff.constant(1))
    assert "backoff.linear(start=1.0, step=2.0, cap=3.0)" == repr(backoff.linear(1, 2, 3))
    assert "backoff.proportional(backoff.constant(1.0), ratio=1.0)" == repr(
        backoff.proportional(one, 1)
    )
    assert "backoff.decorrelated(median=1.0, cap=2.0)" == repr(backoff.decorrelated(1, 2))


# -- finite arguments, infinite results (issue 16, item 3, defect 9) -------------------------

BIG = sys.float_info.max
DERIVED: list[tuple[Callable[[], object], str]] = [
    (
        lambda: RateLimit(1e-300, per=1e300),
        "'per' / 'rate' (seconds per unit of cost) must be a finite number > 0,"
        " got 1e+300 / 1e-300 = inf",
    ),
    (
        lambda: RateLimit(1e300, per=1e-10),
        "'rate' / 'per' (units of cost per second) must be a finite number > 0,"
        " got 1e+300 / 1e-10 = inf",
    ),
    (
        lambda: RateLimit(1e300, per=5e-324),
        "'per' / 'rate' (seconds per unit of cost) must be a finite number > 0,"
        " got 5e-324 / 1e+300 = 0.0",
    ),
    (
        lambda: RateLimit(1e-10, burst=1e300),
        "'burst' * 'per' / 'rate' (seconds to refill a full bucket) must be a finite number"
        " > 0, got 1e+300 * 1.0 / 1e-10 = inf",
    ),
    (
        lambda: Breaker(failure_ratio=0.5, sampling=5e-324),
        "'sampling' / 10 (the width of one of the window's time slices) must be a finite"
        " number > 0, got 5e-324 / 10 = 0.0",
    ),
    (
        lambda: Breaker(failure_ratio=0.5, sampling=BIG),
        "'sampling' + 2 * 'sampling' / 10 (how long a failure counts) must be a finite number"
        f" > 0, got {BIG!r} + 2 * {BIG!r} / 10 = inf",
    ),
    (
        lambda: Budget(window=5e-324),
        "'window' / 10 (the width of one of the window's time slices) must be a finite number"
        " > 0, got 5e-324 / 10 = 0.0",
    ),
    (
        lambda: Budget(min_per_second=1e300),
        "'min_per_second' * 'window' (the retries allowed whatever the traffic) must be a"
        " finite number <= 1e+300, got 1e+300 * 10.0 = 1e+301",
    ),
    (
        lambda: Budget(min_per_second=10**300, window=10),
        "'min_per_second' * 'window' (the retries allowed whatever the traffic) must be a"
        f" finite number <= 1e+300, got {10**300!r} * 10 = {10**301!r}",
    ),
    (
        lambda: Budget(ratio=1e300),
        "'ratio' * 2**64 (the retries allowed for the most calls a window can count) must be a"
        " finite number <= 1e+300, got 1e+300 * 2**64 = inf",
    ),
    (
        lambda: SlidingWindow(5e-324),
        "'sampling' / 'buckets' (the width of a time slice) must be a finite number > 0,"
        " got 5e-324 / 10 = 0.0",
    ),
    (lambda: SlidingWindow(1.0, 0), "'buckets' must be an int >= 1, got 0"),
    (lambda: RateLimit(10**400), f"'rate' must be a finite number > 0, got {10**400!r}"),
    (
        lambda: Timeout(total=-(10**400)),
        f"'total' must be a finite number > 0, got {-(10**400)!r}",
    ),
    (
        lambda: backoff.exponential(cap=10**309),
        f"'cap' must be a finite number >= 0, got {10**309!r}",
    ),
]


@pytest.mark.parametrize(("build", "message"), DERIVED, ids=[str(i) for i in range(len(DERIVED))])
def test_finite_arguments_whose_results_are_not_are_refused(
    build: Callable[[], object], message: str
) -> None:
    """Each argument passes its own rule, but what the machine computes from them does not:
    a ValueError naming the computation, what it means, the values and the result. (An int
    past the largest float is refused as not finite, where math.isnan raised OverflowError.)"""
    with raises(ValueError, message):
        build()


def test_the_largest_usable_values_are_accepted() -> None:
    """Just inside each rule: the limits above are where floats end, not arbitrary."""
    assert 1e300 == RateLimit(1e300, per=1e-8).rate  # 1e308 units per second
    assert 1e300 == RateLimit(1e-8, per=1e300).per  # 1e308 seconds per unit
    assert 1e-10 == RateLimit(1e-10, burst=1e298).rate  # a full bucket in 1e308 s
    assert 1e-322 == Breaker(failure_ratio=0.5, sampling=1e-322).sampling  # slices of 1e-323
    assert 8e307 == Breaker(failure_ratio=0.5, sampling=8e307).sampling  # 2 * it is finite
    assert 5e280 == Budget(ratio=5e280).ratio  # 5e280 * 2**64 < 1e300
    assert 1e299 == Budget(min_per_second=1e299, window=10.0).min_per_second
    assert 10**400 == Bulkhead(max_concurrent=10**400).max_concurrent  # counts: any int
    assert 10**400 == Retry(attempts=10**400).attempts
