"""
Extreme numbers (issue 16, item 3, defect 9): every policy is built from floats a validator
might let through (subnormals, 1e-300, 1e300, the largest float, and NaN, inf and negatives
for good measure) and its machine is driven a few steps. Construction may refuse them, with a
ValueError or TypeError naming the argument; whatever it accepts must then work: no exception,
no NaN, no wait that admits everything. ``RateLimit(1e-300, per=1e300)`` used to admit every
call (its level was NaN) and ``Breaker(sampling=5e-324)`` crashed the actor with a
ZeroDivisionError.
"""

from __future__ import annotations

import math
import random
import sys
import warnings

from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies import (
    Breaker,
    Budget,
    Bulkhead,
    RateLimit,
    Refusal,
    Retry,
    Timeout,
    backoff,
    break_duration,
    reserve_all,
)
from policies.break_duration import BreakHistory
from policies.timeout import limit_of

BIG = sys.float_info.max
#: The floats validators are most likely to let through by mistake.
EDGES = [
    5e-324,  # the smallest subnormal: x / 10 == 0.0
    1e-320,
    sys.float_info.min,  # the smallest normal
    1e-300,
    1e-10,
    0.5,
    1.0,
    3.0,
    1e10,
    1e300,
    1e308,
    BIG,
]
#: Ints a float cannot hold, or only just (math.isnan(10**400) raised OverflowError).
INTS = [0, 1, 3, 2**64, 10**308, 10**309, 10**400, -(10**400)]
#: Any number at all, the edges above first: construction sorts out what it accepts.
floats = st.one_of(st.sampled_from(EDGES), st.sampled_from(INTS), st.floats())
positive = st.one_of(st.sampled_from(EDGES), st.floats(min_value=0.0, exclude_min=True))
durations = st.one_of(st.none(), floats)


def built(make: object, *args: object, **kwargs: object) -> object | None:
    """``make(*args, **kwargs)``, or None when construction refuses with ValueError/TypeError
    (anything else propagates and fails the test). Warnings about settings that are legal
    but surprising (``Timeout(attempt=total)``) are construction's business: ignored."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return make(*args, **kwargs)  # type: ignore[operator]
    except (ValueError, TypeError):
        return None


def sane(seconds: float, most: float = math.inf) -> bool:
    """A wait the runtime can use: a number in [0, most], never NaN."""
    return 0.0 <= seconds <= most


# -- rate limits -----------------------------------------------------------------------------

shares = st.lists(
    st.tuples(
        st.sampled_from([0.0, 1e-300, 0.25, 0.5, 1.0]),  # cost, as a share of the burst
        st.sampled_from([0.0, 1.0, 1e10, 1e300]),  # time step, seconds
        st.sampled_from(["reserve", "all", "refund", "settle"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=500, deadline=None)
@given(
    rate=floats,
    per=floats,
    burst=durations,
    max_wait=st.one_of(st.just(math.inf), floats),
    steps=shares,
)
@example(rate=1e-300, per=1e300, burst=None, max_wait=math.inf, steps=[(1.0, 0.0, "reserve")] * 2)
@example(rate=BIG, per=1e-10, burst=None, max_wait=math.inf, steps=[(1.0, 0.0, "reserve")])
@example(rate=1.0, per=1.0, burst=BIG, max_wait=math.inf, steps=[(1.0, 0.0, "all")] * 3)
def test_a_rate_limit_built_from_any_numbers_either_refuses_or_works(
    rate: float,
    per: float,
    burst: float | None,
    max_wait: float,
    steps: list[tuple[float, float, str]],
) -> None:
    """Waits are numbers that end, refusals are not "never" for a cost within the burst, and
    the calls starting at one instant cost at most the burst (a NaN level let them all go)."""
    limit = built(RateLimit, rate, per=per, burst=burst, max_wait=max_wait)
    if not isinstance(limit, RateLimit):
        return
    capacity = float(limit.capacity)
    limiter, other = limit.machine(), RateLimit(1, per=1).machine()
    now = 1000.0
    # [now, wait, cost used]: the start is now + wait, kept apart because at a clock of 1e300
    # the float sum cannot tell a wait of 0.25 s from none.
    starts: list[list[float]] = []
    going: list[tuple[list[float], int]] = []
    for share, step, op in steps:
        now += step
        cost = share * capacity
        if op in ("refund", "settle") and going:
            start, turn = going.pop()
            if op == "refund":
                limiter.refund(now, start[2], turn)
                start[2] = 0.0  # it never started
            else:
                limiter.settle(now, start[2], cost, turn)
                start[2] = min(start[2], cost)
        else:
            if op == "all":
                verdict = reserve_all([limiter, other], now, [cost, 0.0])
            else:
                verdict = limiter.reserve(now, cost)
            if isinstance(verdict, Refusal):
                assert verdict.retry_after > 0.0, verdict  # never NaN, never "at once"
                assert not verdict.never
            else:
                assert sane(verdict, limit.max_wait), verdict
                assert verdict < math.inf  # a wait that ends: never "go after forever"
                starts.append([now, verdict, cost])
                going.append((starts[-1], limiter.last_turn))
        assert sane(limiter.available(now), capacity)
        assert sane(limiter.peek(now, cost))
    nanosecond = 1e-9 * limit.rate / limit.per  # rule 6: a start may be 1 ns early
    for at, wait, _ in starts:
        together = [used for s, w, used in starts if (s, w) == (at, wait)]
        assert sum(together) <= (capacity + nanosecond) * (1 + 1e-9)


# -- the breaker, its window and its break durations -----------------------------------------


@settings(max_examples=500, deadline=None)
@given(
    ratio=floats,
    throughput=st.integers(1, 3),
    sampling=floats,
    slow=durations,
    pause=floats,
    steps=st.lists(st.sampled_from([0.0, 5e-324, 1e-300, 1.0, 1e300]), max_size=12),
)
@example(ratio=0.5, throughput=1, sampling=5e-324, slow=None, pause=1.0, steps=[1.0, 1.0])
@example(ratio=0.5, throughput=1, sampling=BIG, slow=None, pause=BIG, steps=[1.0, 1e300])
def test_a_breaker_built_from_any_numbers_either_refuses_or_works(
    ratio: float,
    throughput: int,
    sampling: float,
    slow: float | None,
    pause: float,
    steps: list[float],
) -> None:
    config = built(
        Breaker,
        failure_ratio=ratio,
        min_throughput=throughput,
        sampling=sampling,
        slow_call=slow,
        break_duration=pause,
    )
    if not isinstance(config, Breaker):
        return
    machine = config.machine(1000.0)
    now = 1000.0
    for i, step in enumerate(steps):
        now += step
        epoch = machine.acquire(now)
        if epoch >= 0:
            machine.on_outcome(epoch, now, failed=i % 3 != 2)
        assert sane(machine.retry_after(now))
        assert machine.break_duration is None or sane(machine.break_duration)


histories = st.builds(
    BreakHistory,
    openings=st.sampled_from([1, 2, 3, 1024, 10_000]),
    previous=st.one_of(st.none(), st.sampled_from(EDGES)),
    closed_for=st.one_of(st.none(), st.sampled_from([*EDGES, math.inf])),
)


@settings(max_examples=500, deadline=None)
@given(
    kind=st.sampled_from(["constant", "linear", "exponential", "adaptive"]),
    a=floats,
    b=floats,
    c=floats,
    d=floats,
    history=histories,
)
def test_a_break_duration_built_from_any_numbers_either_refuses_or_works(
    kind: str, a: float, b: float, c: float, d: float, history: BreakHistory
) -> None:
    make = getattr(break_duration, kind)
    schedule = built(make, *[a, b, c, d][: {"constant": 1, "adaptive": 4}.get(kind, 3)])
    if schedule is None:
        return
    cap = {"constant": a}.get(kind, c)
    assert sane(schedule(history), float(cap))  # type: ignore[operator]


# -- retries: backoff schedules, Retry, the budget -------------------------------------------


@settings(max_examples=500, deadline=None)
@given(
    kind=st.sampled_from(["constant", "linear", "exponential", "decorrelated"]),
    jitter=st.sampled_from([None, "full", "proportional"]),
    a=floats,
    b=floats,
    c=st.one_of(floats, st.just(math.inf)),
    ratio=floats,
    cap=floats,
    seed=st.integers(0, 2**32),
)
def test_a_backoff_built_from_any_numbers_either_refuses_or_works(
    kind: str,
    jitter: str | None,
    a: float,
    b: float,
    c: float,
    ratio: float,
    cap: float,
    seed: int,
) -> None:
    arity = {"constant": 1, "decorrelated": 2}.get(kind, 3)
    schedule = built(getattr(backoff, kind), *[a, b, c][:arity])
    if schedule is not None and jitter is not None:
        schedule = built(getattr(backoff, jitter), schedule, *([ratio] if jitter[0] == "p" else []))
    if schedule is None:
        return
    retry = built(Retry, backoff=schedule, max_retry_after=cap)
    rng = random.Random(seed)
    unbounded = kind == "linear" and c == math.inf  # no cap: the wait may grow to inf
    for attempt in (1, 2, 3, 1024, 10_000):
        wait = schedule(attempt, rng)  # type: ignore[operator]
        assert sane(wait), (attempt, wait)
        assert unbounded or wait < math.inf, (attempt, wait)
        if isinstance(retry, Retry):
            assert sane(retry.delay(attempt, rng, retry_after=cap))


@settings(max_examples=500, deadline=None)
@given(
    ratio=floats,
    floor=floats,
    window=floats,
    steps=st.lists(st.sampled_from([0.0, 5e-324, 1e-300, 1.0, 1e300]), max_size=12),
)
@example(ratio=0.2, floor=10.0, window=5e-324, steps=[1.0])
@example(ratio=1e308, floor=0.0, window=10.0, steps=[0.0, 0.0])
@example(ratio=0.0, floor=1e300, window=1e10, steps=[0.0])
def test_a_budget_built_from_any_numbers_either_refuses_or_works(
    ratio: float, floor: float, window: float, steps: list[float]
) -> None:
    config = built(Budget, ratio=ratio, min_per_second=floor, window=window)
    if not isinstance(config, Budget):
        return
    budget = config.machine()
    now = 1000.0
    for i, step in enumerate(steps):
        now += step
        budget.on_call(now)
        if i % 2:
            budget.try_retry(now)
        status = budget.snapshot(now)
        # A window narrower than the clock's resolution at `now` holds nothing: 0 calls.
        assert 0 <= status.calls <= i + 1
        assert 0 <= status.retries <= i
        assert status.remaining >= 0


# -- timeouts and bulkheads ------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(attempt=durations, total=durations, now=st.sampled_from([0.0, 1000.0, 1e15]))
def test_a_timeout_built_from_any_numbers_either_refuses_or_works(
    attempt: float | None, total: float | None, now: float
) -> None:
    timeout = built(Timeout, attempt=attempt, total=total)
    if not isinstance(timeout, Timeout):
        return
    deadline = None if timeout.total is None else now + timeout.total
    at, is_deadline = limit_of(now, timeout.attempt, deadline)
    assert now <= at
    assert is_deadline == (timeout.attempt is None or (deadline is not None and deadline <= at))


@settings(max_examples=100, deadline=None)
@given(
    concurrent=st.sampled_from(INTS),
    queued=st.sampled_from(INTS),
    attempts=st.sampled_from(INTS),
    threshold=st.sampled_from(INTS),
)
def test_counts_of_any_size_are_ints_or_refused(
    concurrent: int, queued: int, attempts: int, threshold: int
) -> None:
    """Counts (slots, attempts, failures) may be any int >= their bound, however large: they
    are compared, never turned into floats."""
    built(Bulkhead, max_concurrent=concurrent, max_queued=queued)
    retry = built(Retry, attempts=attempts)
    breaker = built(Breaker, failure_threshold=threshold)
    if isinstance(breaker, Breaker):
        machine = breaker.machine(0.0)
        for now in (1.0, 2.0):
            epoch = machine.acquire(now)
            if epoch >= 0:
                machine.on_outcome(epoch, now, failed=True)
    if isinstance(retry, Retry):
        assert retry.delay(1, random.Random(0)) >= 0.0
