"""Edges a mutation pass found untested: defaults, boundaries, records and warnings."""

from __future__ import annotations

import math
import random
import re
import sys

import pytest

from policies import (
    Breaker,
    BreakHistory,
    CircuitBreaker,
    IllegalTransition,
    RateLimit,
    Refusal,
    Retry,
    State,
    Timeout,
    backoff,
    break_duration,
    reserve_all,
)
from policies._matchers import ErrorFilter


class Scripted(random.Random):
    """A generator whose random() plays back the given draws, in order."""

    def __init__(self, *draws: float) -> None:
        super().__init__(0)
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


def fail(machine: object, now: float, times: int = 1) -> None:
    for _ in range(times):
        machine.on_outcome(machine.acquire(now), now, failed=True)  # type: ignore[attr-defined]


def test_illegal_transition_carries_event_and_state() -> None:
    """IllegalTransition names the move and the state it was refused in."""
    machine = Breaker().machine(0.0)
    machine.isolate(0.0)
    with pytest.raises(IllegalTransition) as caught:
        machine.isolate(1.0)
    assert ("isolate", State.ISOLATED) == (caught.value.event, caught.value.state)


def test_transitions_keep_the_latest_32() -> None:
    """The transition log is bounded: the latest 32, oldest first."""
    machine = Breaker().machine(0.0)
    for i in range(20):
        machine.isolate(float(i))
        machine.reset(float(i))
    assert 32 == len(machine.transitions)
    assert (4.0, 19.0) == (machine.transitions[0].at, machine.transitions[-1].at)


def test_ratio_defaults_are_10_calls_over_30_seconds() -> None:
    """Breaker(failure_ratio=...) alone: min_throughput 10, sampling 30 s."""
    machine = Breaker(failure_ratio=1.0).machine(0.0)
    fail(machine, 0.0, 9)
    assert State.CLOSED == machine.state
    fail(machine, 0.0)
    assert State.OPEN == machine.state
    machine = Breaker(failure_ratio=1.0).machine(0.0)
    fail(machine, 0.0, 9)
    fail(machine, 32.99)  # the nine at 0 are still in a 30 s window of 3 s slices
    assert State.OPEN == machine.state
    machine = Breaker(failure_ratio=1.0).machine(0.0)
    fail(machine, 0.0, 9)
    fail(machine, 33.0)
    assert State.CLOSED == machine.state


def test_machine_starts_at_now_and_epoch() -> None:
    """A fresh machine: closed since `now`, epoch as given, no break yet."""
    machine = Breaker().machine(7.0, epoch=3)
    assert (State.CLOSED, 7.0, 7.0, None, 0, 3) == (
        machine.state,
        machine.since,
        machine.open_until,
        machine.break_duration,
        machine.openings,
        machine.epoch,
    )
    assert 0 == Breaker().machine(0.0).epoch
    assert 0 == CircuitBreaker(Breaker(), now=0.0).epoch


@pytest.mark.parametrize("seconds", [0, 0.5])
def test_short_breaks_are_valid(seconds: float) -> None:
    """A break of 0 or under a second is allowed: probes start at once or soon."""
    machine = Breaker(failure_threshold=1, break_duration=lambda h: seconds).machine(0.0)
    fail(machine, 1.0)
    assert (State.OPEN, 1.0 + seconds) == (machine.state, machine.open_until)


def test_retry_after_never_negative_past_the_break() -> None:
    """Open past its end (nobody asked yet): retry_after is 0, not negative."""
    machine = Breaker(failure_threshold=1, break_duration=10.0).machine(0.0)
    fail(machine, 0.0)
    assert (10.0, 0.0) == (machine.retry_after(0.0), machine.retry_after(15.0))


def test_break_history_sees_openings_previous_and_closed_for() -> None:
    """The break-duration callable gets the opening count, the last break, the time closed."""
    seen: list[BreakHistory] = []

    def record(history: BreakHistory) -> float:
        seen.append(history)
        return 10.0

    machine = Breaker(failure_threshold=1, break_duration=record).machine(5.0)
    fail(machine, 8.0)
    fail(machine, 18.0)  # the probe fails
    machine.on_success(machine.acquire(28.0), 28.0)
    fail(machine, 100.0)
    assert [
        BreakHistory(openings=1, previous=None, closed_for=3.0),
        BreakHistory(openings=2, previous=10.0, closed_for=None),
        BreakHistory(openings=1, previous=10.0, closed_for=72.0),
    ] == seen


def test_single_exception_types_are_tuples() -> None:
    """record=X and ignore=X become one-type filters; a non-type in ignore is refused."""
    config = Breaker(record=ConnectionError, ignore=TimeoutError)
    assert (ErrorFilter(types=(ConnectionError,)), ErrorFilter(types=(TimeoutError,))) == (
        config.record,
        config.ignore,
    )
    message = (
        "'ignore' must be an exception type, an ErrorKind, a predicate (exc) -> bool,"
        " or a tuple, list or set of those; it holds 3 of type int"
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        Breaker(ignore=3)  # type: ignore[arg-type]


def test_jitter_bounds_and_inner_rng() -> None:
    """full spans [0, inner]; proportional spans inner * [1 - r, 1 + r]; inner gets the rng."""
    full = backoff.full(backoff.constant(2.0))
    assert [0.0, 1.0] == [full(1, Scripted(0.0)), full(1, Scripted(0.5))]
    prop = backoff.proportional(backoff.constant(2.0), ratio=0.25)
    assert [1.5, 2.0] == [prop(1, Scripted(0.0)), prop(1, Scripted(0.5))]
    inner = backoff.decorrelated(median=1.4, cap=60.0)
    assert 1.0 == backoff.full(inner)(1, Scripted(0.5, 0.5)) / inner(1, Scripted(0.5)) * 2
    assert 2.0 == backoff.proportional(backoff.linear(1, 1), 0.5)(2, Scripted(0.5))
    assert 1.0 == backoff.proportional(inner, 0.5)(1, Scripted(0.5, 0.5)) / inner(1, Scripted(0.5))


def test_retry_delay_edges() -> None:
    """Small hints count, plain exceptions have none, the backoff sees attempt and rng."""

    class Hinted(Exception):
        retry_after = 0.5

    assert 0.5 == Retry(backoff=backoff.constant(0)).delay(1, Scripted(), Hinted())
    assert 0.0 == Retry(backoff=backoff.constant(0)).delay(1, Scripted(), KeyError())
    assert 0.5 == Retry(backoff=backoff.constant(0.5)).delay(1, Scripted())
    assert 3.0 == Retry(backoff=backoff.linear(1, 1)).delay(3, Scripted())
    assert 0.0 == Retry(backoff=backoff.full(backoff.constant(2))).delay(1, Scripted(0.0))


def test_retry_on_result_accepts_a_predicate() -> None:
    """retry_on_result takes a predicate and keeps it."""
    predicate = bool
    assert predicate is Retry(retry_on_result=predicate).retry_on_result


def test_timeout_warning_is_pinned() -> None:
    """Timeout(attempt >= total) warns once, with this message; one limit alone never warns."""
    Timeout(attempt=1.0)
    Timeout(total=1.0)
    Timeout(attempt=1.0, total=2.0)
    message = (
        "Timeout(attempt=5.0, total=5.0): the attempt limit is not shorter than the total"
        " deadline, so it never fires first"
    )
    # (Which frame the warning names is not checked: mutmut's trampolines add frames.)
    with pytest.warns(UserWarning, match=f"^{re.escape(message)}$") as caught:
        Timeout(attempt=5.0, total=5.0)
    assert [UserWarning] == [w.category for w in caught]


def test_adaptive_defaults_and_boundaries() -> None:
    """adaptive() is (5, 2, 300, 60); exactly healthy_after closed counts as one healthy period."""
    assert "break_duration.adaptive(5.0, factor=2.0, cap=300.0, healthy_after=60.0)" == repr(
        break_duration.adaptive()
    )
    schedule = break_duration.adaptive(10.0, factor=2.0, cap=300.0, healthy_after=60.0)
    assert [40.0, 20.0, 10.0] == [
        schedule(BreakHistory(openings=2, previous=20.0, closed_for=59.0)),
        schedule(BreakHistory(openings=2, previous=40.0, closed_for=60.0)),
        schedule(BreakHistory(openings=2, previous=40.0, closed_for=math.inf)),
    ]
    assert 7.0 == break_duration.constant(7)(BreakHistory(openings=3))


# -- numbers past what floats count (issue 16, item 3, defect 9) -----------------------------

BIG = sys.float_info.max


def test_a_wait_beyond_any_float_is_refused_but_is_not_never() -> None:
    """A queue of two largest-float bursts: the second's wait overflows. It is refused (not
    admitted to wait forever), with retry_after the largest float, and not `never`: its
    cost fits the burst. The limiter is left as it was."""
    limiter = RateLimit(1.0, burst=BIG, max_wait=math.inf).machine()
    assert 0.0 == limiter.reserve(0.0, BIG)
    before = (limiter._t0, limiter._level)

    refusal = limiter.reserve(0.0, BIG)

    assert isinstance(refusal, Refusal)
    assert (BIG, False) == (refusal.retry_after, refusal.never)
    assert before == (limiter._t0, limiter._level)


def test_a_common_start_no_level_can_be_charged_at_is_refused() -> None:
    """reserve_all: a slow limit makes the call wait 1e300 s; charging a fast one (1e10 a
    second) as of that start would be a level of inf. Refused, nothing taken anywhere."""
    slow = RateLimit(1e-10, per=1e290, max_wait=math.inf).machine()  # 1e300 s per unit
    fast = RateLimit(1e10, max_wait=math.inf).machine()
    assert 0.0 == slow.reserve(0.0, 1)
    before = [(m._t0, m._level) for m in (slow, fast)]

    refusal = reserve_all([fast, slow], 0.0, [1, 1])

    assert isinstance(refusal, Refusal)
    assert (1, False) == (refusal.index, refusal.never)
    assert before == [(m._t0, m._level) for m in (slow, fast)]
    assert 1.0 == reserve_all([fast], 0.0, [1]) + 1.0  # the fast limit alone still goes


def test_a_settle_charge_beyond_any_float_saturates() -> None:
    """Usage past the largest float: the level saturates there (as inf it would never drain)
    and the limit keeps answering with numbers: a refusal saying when, and a full bucket
    again once that much time has passed."""
    quarter = BIG / 4
    limiter = RateLimit(1.0, burst=quarter).machine()
    limiter.reserve(0.0, quarter)
    turn = limiter.last_turn

    limiter.settle(0.0, 0.0, BIG, turn)  # quarter + BIG: inf
    limiter.refund(0.0, quarter, turn)  # below the saturated charge: nothing to give back

    assert (0.0, BIG) == (limiter.available(0.0), limiter._level)
    refusal = limiter.reserve(0.0, 1.0)
    assert isinstance(refusal, Refusal)
    assert (BIG - quarter, False) == (refusal.retry_after, refusal.never)
    assert quarter == limiter.available(BIG)


def test_jitter_of_waits_at_the_edge_of_floats() -> None:
    """Proportional jitter of the largest finite wait saturates instead of becoming inf; an
    infinite wait (a linear schedule without cap) stays infinite through either jitter,
    never NaN."""
    rng = random.Random(0)
    assert BIG == backoff.proportional(backoff.constant(BIG), ratio=1.0)(1, Scripted(1.0))
    unbounded = backoff.linear(1.0, 1e308)  # attempt 3: 1 + 2e308
    assert math.inf == unbounded(3, rng)
    assert math.inf == backoff.full(unbounded)(3, Scripted(0.0))  # uniform(0, inf) at 0: NaN
    assert math.inf == backoff.proportional(unbounded, ratio=1.0)(3, Scripted(0.0))
