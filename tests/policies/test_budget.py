"""Budget and its machine: validation, the Finagle rule with exact counts, a naive model."""

from __future__ import annotations

import datetime
import math
import re
from collections import deque

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from policies.budget import Budget, BudgetStatus

# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ratio": -0.1}, ValueError, "'ratio' must be a number >= 0, got -0.1"),
        ({"ratio": math.nan}, ValueError, "'ratio' must be a finite number >= 0, got nan"),
        ({"ratio": math.inf}, ValueError, "'ratio' must be a finite number >= 0, got inf"),
        ({"ratio": "0.2"}, TypeError, "'ratio' must be a number >= 0, got '0.2' of type str"),
        ({"ratio": False}, TypeError, "'ratio' must be a number >= 0, got False of type bool"),
        ({"min_per_second": -1}, ValueError, "'min_per_second' must be a number >= 0, got -1"),
        ({"window": 0}, ValueError, "'window' must be a number > 0, got 0"),
        (
            {"window": datetime.timedelta(seconds=-1)},
            ValueError,
            "'window' must be a number > 0, got -1.0",
        ),
        ({"window": math.inf}, ValueError, "'window' must be a finite number > 0, got inf"),
        ({"window": None}, TypeError, "'window' must be a number > 0, got None of type NoneType"),
    ],
)
def test_invalid_configuration_is_rejected_with_a_clear_message(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    """Each bad argument raises TypeError/ValueError naming it, the rule and the value."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        Budget(**kwargs)  # type: ignore[arg-type]


def test_defaults_are_finagles_and_durations_accept_timedelta() -> None:
    """20 % of calls plus 10 retries a second over 10 s, as DESIGN.md and Finagle say."""
    assert Budget(ratio=0.2, min_per_second=10.0, window=10.0) == Budget()
    assert 30.0 == Budget(window=datetime.timedelta(seconds=30)).window
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Budget().ratio = 1.0  # type: ignore[misc]


def test_a_budget_that_allows_nothing_warns() -> None:
    """ratio=0 and min_per_second=0 is legal but surprising: say so."""
    with pytest.warns(
        UserWarning,
        match=r"^Budget\(ratio=0, min_per_second=0\) allows no retry at all; "
        r"Retry\(attempts=1\) says that more plainly$",
    ):
        Budget(ratio=0, min_per_second=0)


# -- the machine -----------------------------------------------------------------------------


def test_a_quiet_dependency_may_retry_min_per_second_times_window() -> None:
    """No calls at all: the floor alone allows 10 * 10 = 100 retries, then refuses."""
    budget = Budget().machine()

    made = [budget.try_retry(0.5) for _ in range(101)]

    assert [True] * 100 + [False] == made
    assert BudgetStatus(calls=0, retries=100, remaining=0, refused=1) == budget.snapshot(0.5)


def test_retries_are_a_ratio_of_calls() -> None:
    """ratio 0.5, no floor: 4 calls allow 2 retries; a fifth call allows none more (2.5)."""
    budget = Budget(ratio=0.5, min_per_second=0).machine()
    for _ in range(4):
        budget.on_call(1.0)

    made = [budget.try_retry(1.0) for _ in range(3)]
    budget.on_call(1.0)

    assert [True, True, False] == made
    assert BudgetStatus(calls=5, retries=2, remaining=0, refused=1) == budget.snapshot(1.0)
    budget.on_call(1.0)
    assert BudgetStatus(calls=6, retries=2, remaining=1, refused=1) == budget.snapshot(1.0)


def test_rounding_does_not_cost_a_retry() -> None:
    """0.29 * 100 is 28.999999999999996 in floats; 29 retries were meant."""
    budget = Budget(ratio=0.29, min_per_second=0).machine()
    for _ in range(100):
        budget.on_call(0.0)

    assert 29 == sum(budget.try_retry(0.0) for _ in range(40))


def test_old_calls_and_retries_leave_the_window() -> None:
    """Events leave whole slices once the slice is window seconds old (1 s slices here)."""
    budget = Budget(ratio=1.0, min_per_second=0, window=10.0).machine()
    budget.on_call(0.5)
    assert budget.try_retry(0.5)
    budget.on_call(3.0)

    assert BudgetStatus(calls=2, retries=1, remaining=1, refused=0) == budget.snapshot(10.9)
    assert BudgetStatus(calls=1, retries=0, remaining=1, refused=0) == budget.snapshot(11.0)
    assert BudgetStatus(calls=0, retries=0, remaining=0, refused=0) == budget.snapshot(14.0)
    assert not budget.try_retry(14.0)


def test_memory_stays_bounded_by_the_slices() -> None:
    """A long busy run keeps at most one deque entry per slice, not one per event."""
    budget = Budget().machine()
    for i in range(10_000):
        now = i * 0.01
        budget.on_call(now)
        budget.try_retry(now)

    assert len(budget._slices) <= 11


# -- property: the machine against a naive model ---------------------------------------------


class Model:
    """The rule written the plain way: every event kept in a list, counted on demand.

    The window is granular like the machine's: an event at time e is in the window at now
    while its slice, starting at floor(e / slice) * slice, ends after now - window."""

    def __init__(self, ratio: float, floor: float, window: float) -> None:
        self.ratio, self.floor, self.window = ratio, floor, window
        self.slice = window / 10
        self.events: list[tuple[float, str]] = []
        self.refused = 0

    def counts(self, now: float) -> tuple[int, int]:
        recent = [
            kind
            for at, kind in self.events
            if math.floor(at / self.slice) * self.slice + self.slice > now - self.window
        ]
        return recent.count("call"), recent.count("retry")

    def try_retry(self, now: float) -> bool:
        calls, retries = self.counts(now)
        if retries + 1 <= self.ratio * calls + self.floor * self.window + 1e-9:
            self.events.append((now, "retry"))
            return True
        self.refused += 1
        return False


@settings(max_examples=400, deadline=None)
@given(
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0, 2.0]),
    floor=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    window=st.sampled_from([2.5, 5.0, 10.0, 20.0]),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["call", "call", "retry", "snapshot"]),
            st.integers(0, 12),  # quarter seconds: exact in binary, like the slice edges
        ),
        max_size=150,
    ),
)
def test_budget_matches_the_naive_model(
    ratio: float, floor: float, window: float, ops: list[tuple[str, int]]
) -> None:
    """Any sequence of calls, retries and reads: same verdicts and the same snapshot."""
    assume(ratio or floor)  # both 0 warns; test_a_budget_that_allows_nothing_warns covers it
    budget = Budget(ratio=ratio, min_per_second=floor, window=window).machine()
    model = Model(ratio, floor, window)
    now = 0.0
    for op, step in ops:
        now += step / 4
        if op == "call":
            budget.on_call(now)
            model.events.append((now, "call"))
        elif op == "retry":
            assert model.try_retry(now) == budget.try_retry(now)
        else:
            calls, retries = model.counts(now)
            allowance = ratio * calls + floor * window + 1e-9
            remaining = max(0, math.floor(allowance - retries))
            assert BudgetStatus(
                calls=calls, retries=retries, remaining=remaining, refused=model.refused
            ) == budget.snapshot(now)


# -- property: reading is pure (issue 16, item 3, defect 5) ----------------------------------


@settings(max_examples=400, deadline=None)
@given(
    window=st.sampled_from([2.5, 10.0]),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["call", "call", "retry"]),
            st.integers(0, 12),  # quarter seconds since the previous step
            st.lists(st.integers(-120, 120), max_size=3),  # reads, quarter seconds from now
        ),
        max_size=120,
    ),
)
def test_snapshots_at_any_time_never_change_a_decision(
    window: float, ops: list[tuple[str, int, list[int]]]
) -> None:
    """status() reads the budget at its own now, which may be ahead of the owner's next write
    or behind its last one (another thread's clock read, a scrape): two budgets fed the same
    calls and retries, one of them also read at such times, decide alike and end alike."""
    read = Budget(ratio=0.5, min_per_second=0.2, window=window).machine()
    untouched = Budget(ratio=0.5, min_per_second=0.2, window=window).machine()
    now = 0.0
    for op, step, offsets in ops:
        now += step / 4
        for offset in offsets:
            read.snapshot(now + offset / 4)
        if op == "call":
            read.on_call(now)
            untouched.on_call(now)
        else:
            assert untouched.try_retry(now) == read.try_retry(now)
    for later in (now, now + window / 2, now + 2 * window):
        assert untouched.snapshot(later) == read.snapshot(later)


# -- property: the O(1) call count against the implementation it replaced (issue 18) --------


class PreviousBudget:
    """RetryBudget before issue 18: every call found (or opened) its slice through _count."""

    def __init__(self, config: Budget) -> None:
        self.ratio = config.ratio
        self.allowance = config.min_per_second * config.window + 1e-9
        self.sampling = config.window
        self.slice = config.window / 10
        self.slices: deque[list[float]] = deque()
        self.refused = 0

    def on_call(self, now: float) -> None:
        self._count(now, 1)

    def _count(self, now: float, column: int) -> None:
        slices = self.slices
        if slices and now < slices[-1][0] + self.slice:
            current = slices[-1]
        else:
            horizon = now - self.sampling
            while slices and slices[0][0] + self.slice <= horizon:
                slices.popleft()
            current = [now - (now % self.slice), 0, 0]
            slices.append(current)
        current[column] += 1

    def _remaining(self, now: float) -> tuple[int, int, float]:
        horizon = now - self.sampling
        calls = retries = 0.0
        for start, slice_calls, slice_retries in tuple(self.slices):
            if start + self.slice > horizon:
                calls += slice_calls
                retries += slice_retries
        return int(calls), int(retries), self.ratio * calls + self.allowance - retries

    def try_retry(self, now: float) -> bool:
        if self._remaining(now)[2] >= 1.0:
            self._count(now, 2)
            return True
        self.refused += 1
        return False

    def snapshot(self, now: float) -> BudgetStatus:
        calls, retries, left = self._remaining(now)
        return BudgetStatus(
            calls=calls, retries=retries, remaining=max(0, math.floor(left)), refused=self.refused
        )


@settings(max_examples=500, deadline=None)
@given(
    window=st.sampled_from([0.3, 1.0, 2.5, 10.0, 7.0]),
    start=st.floats(0.0, 1e6, allow_nan=False),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["call", "call", "call", "retry", "snapshot"]),
            # any float step, slice edges and repeats included
            st.one_of(st.just(0.0), st.floats(0.0, 3.0), st.sampled_from([0.03, 0.1, 0.25])),
        ),
        max_size=200,
    ),
)
def test_the_open_slice_counter_matches_the_previous_budget(
    window: float, start: float, ops: list[tuple[str, float]]
) -> None:
    """Same slices (starts and counts), same verdicts, same snapshots, for any times."""
    config = Budget(ratio=0.3, min_per_second=0.5, window=window)
    budget, previous = config.machine(), PreviousBudget(config)
    now = start
    for op, step in ops:
        now += step
        if op == "call":
            budget.on_call(now)
            previous.on_call(now)
        elif op == "retry":
            assert previous.try_retry(now) == budget.try_retry(now)
        else:
            assert previous.snapshot(now) == budget.snapshot(now)
        assert list(previous.slices) == list(budget._slices)
