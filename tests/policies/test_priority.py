"""policies.priority: levels, the queue's order and eviction (a model test), the reserve."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.priority import (
    HIGHEST,
    LOWEST,
    Priority,
    PriorityQueue,
    check_level,
    level_name,
    reserve_headroom,
)
from policies.rate_limit import RateLimit, Refusal, reserve_all, reserve_sheddable


def test_levels_are_ordered_and_named() -> None:
    assert LOWEST == Priority.SHEDDABLE < Priority.DEFAULT < Priority.CRITICAL == HIGHEST
    assert [level_name(level) for level in (0, 5, 9, 6)] == [
        "sheddable",
        "default",
        "critical",
        "6",
    ]
    assert check_level(Priority.CRITICAL) == 9
    assert check_level(7) == 7


@pytest.mark.parametrize(
    ("level", "error", "message"),
    [
        ("high", TypeError, r"got 'high' \(str\)"),
        (False, TypeError, r"got False \(bool\)"),
        (None, TypeError, r"got None \(NoneType\)"),
        (1.5, TypeError, r"got 1.5 \(float\)"),
        (10, ValueError, r"got 10$"),
        (-3, ValueError, r"got -3$"),
    ],
)
def test_bad_levels_are_named(level: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        check_level(level)


# One operation on the queue: ("push", level), ("pop",), ("evict", level), ("remove", index).
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(LOWEST, HIGHEST)),
        st.tuples(st.just("pop")),
        st.tuples(st.just("evict"), st.integers(LOWEST, HIGHEST)),
        st.tuples(st.just("remove"), st.integers(0, 30)),
    ),
    max_size=60,
)


@given(_ops)
def test_the_queue_is_a_sorted_list_highest_first_fifo_within_a_level(ops: list[tuple]) -> None:
    """
    Against a model (a list of (level, arrival) kept in order): pop_next takes the oldest of
    the highest level; victim is the newest of the lowest level, only when below the
    newcomer's; remove takes any; every item leaves once.
    """
    queue: PriorityQueue[int] = PriorityQueue()
    model: list[tuple[int, int]] = []  # (level, item) in arrival order
    left: list[int] = []
    for n, op in enumerate(ops):
        if op[0] == "push":
            queue.push(n, op[1])
            model.append((op[1], n))
        elif op[0] == "pop":
            if not model:
                continue
            expected = max(model, key=lambda entry: (entry[0], -entry[1]))
            assert queue.pop_next() == expected[1]
            model.remove(expected)
            left.append(expected[1])
        elif op[0] == "evict":
            below = [entry for entry in model if entry[0] < op[1]]
            victim = queue.victim(op[1])
            if not below:
                assert victim is None
                continue
            lowest = min(entry[0] for entry in model)
            expected = max(entry for entry in model if entry[0] == lowest)
            assert victim == expected[1]
            assert queue.remove(victim)
            model.remove(expected)
            left.append(victim)
        else:
            items = [item for _, item in model]
            if op[1] < len(items):
                assert queue.remove(items[op[1]])
                model.remove(next(entry for entry in model if entry[1] == items[op[1]]))
                left.append(items[op[1]])
                assert not queue.remove(items[op[1]])  # a second time: not there
        assert len(queue) == len(model)
        assert list(queue) == [item for _, item in model]
        counts: dict[int, int] = {}
        for level, _ in model:
            counts[level] = counts.get(level, 0) + 1
        assert queue.levels() == counts
    rest = queue.drain()
    assert rest == [item for _, item in model]
    assert not queue
    assert queue.levels() == {}
    pushed = [n for n, op in enumerate(ops) if op[0] == "push"]
    assert sorted(left + rest) == pushed  # nothing lost, nothing twice


def test_reserve_headroom() -> None:
    assert reserve_headroom(100.0, 0.1, Priority.SHEDDABLE, 1.0) == pytest.approx(90.0)
    assert reserve_headroom(100.0, 0.1, 1, 1.0) == 100.0
    assert reserve_headroom(100.0, 0.0, Priority.SHEDDABLE, 1.0) == 100.0
    # A call the limit admits at all stays admissible: at least its own cost, at most burst.
    assert reserve_headroom(1.0, 0.1, Priority.SHEDDABLE, 1.0) == 1.0
    assert reserve_headroom(10.0, 0.5, Priority.SHEDDABLE, 7.0) == 7.0
    assert reserve_headroom(10.0, 0.5, Priority.SHEDDABLE, 12.0) == 10.0


# ------------------------------------------------------------------ a rate limit's reserve


def test_a_sheddable_call_never_takes_the_reserve_a_higher_one_may() -> None:
    limiter = RateLimit(10, per=1.0, reserve=0.2).machine()  # burst 10, 2 kept
    for _ in range(8):
        assert reserve_sheddable([limiter], 0.0, [1.0]) == 0.0
    refusal = reserve_sheddable([limiter], 0.0, [1.0])
    assert isinstance(refusal, Refusal)
    assert refusal.retry_after == pytest.approx(0.1)  # one unit drained leaves the 2
    assert limiter.available(0.0) == pytest.approx(2.0)  # the refusal took nothing
    assert reserve_all([limiter], 0.0, [1.0]) == 0.0  # a higher priority: the reserve is its
    assert reserve_all([limiter], 0.0, [1.0]) == 0.0
    assert isinstance(reserve_all([limiter], 0.0, [1.0]), Refusal)


def test_a_sheddable_call_waits_for_the_reserve_within_max_wait() -> None:
    limiter = RateLimit(10, per=1.0, reserve=0.2, max_wait=1.0).machine()
    charged: list[float] = []
    assert reserve_sheddable([limiter], 0.0, [7.0]) == 0.0
    wait = reserve_sheddable([limiter], 0.0, [2.0], charged=charged)
    assert wait == pytest.approx(0.1)  # until one unit drained: 6 + 2 leaves the 2 free
    assert charged == [2.0]
    assert limiter.available(0.1) == pytest.approx(2.0)
    limiter.refund(0.0, charged[0], limiter.last_turn)  # a cancelled wait gives it back
    assert limiter.available(0.0) == pytest.approx(3.0)
    # 9 is more than the 8 above the reserve: it waits for an otherwise empty bucket, 0.7 s.
    assert reserve_sheddable([limiter], 0.0, [9.0]) == pytest.approx(0.7)
    assert isinstance(reserve_sheddable([limiter], 0.0, [3.0]), Refusal)  # 1.1 s > max_wait


def test_a_sheddable_call_too_big_for_the_headroom_goes_from_an_empty_bucket() -> None:
    limiter = RateLimit(10, per=1.0, reserve=0.5, max_wait=10.0).machine()
    assert reserve_sheddable([limiter], 0.0, [7.0]) == 0.0  # 7 > 5 above the reserve
    assert reserve_sheddable([limiter], 0.0, [7.0]) == pytest.approx(0.7)  # once empty
    never = reserve_sheddable([limiter], 0.0, [11.0])
    assert isinstance(never, Refusal)
    assert never.never


def test_a_limit_without_reserve_treats_a_sheddable_call_as_any() -> None:
    plain, kept = RateLimit(10).machine(), RateLimit(10, reserve=0.5).machine()
    for _ in range(5):
        assert reserve_sheddable([plain, kept], 0.0, [1.0, 1.0]) == 0.0
    refusal = reserve_sheddable([plain, kept], 0.0, [1.0, 1.0])
    assert isinstance(refusal, Refusal)
    assert refusal.index == 1
    assert (plain.available(0.0), kept.available(0.0)) == (5.0, 5.0)


@given(
    st.lists(st.tuples(st.floats(0, 2), st.floats(0.1, 4)), min_size=1, max_size=40),
    st.floats(0.05, 0.9),
)
def test_a_sheddable_turn_leaves_the_reserve_free_when_it_starts(
    steps: list[tuple[float, float]], share: float
) -> None:
    limiter = RateLimit(5, per=1.0, burst=10, reserve=share, max_wait=math.inf).machine()
    now = 0.0
    for gap, cost in steps:
        now += gap
        wait = reserve_sheddable([limiter], now, [cost])
        assert not isinstance(wait, Refusal)
        left = limiter.available(now + wait)
        assert left >= min(share * 10, 10 - cost) - 1e-9


@pytest.mark.parametrize(
    ("reserve", "error", "message"),
    [
        (1, ValueError, r"'reserve' must be below 1"),
        (-0.1, ValueError, r"reserve"),
        (math.nan, ValueError, r"reserve"),
        ("0.1", TypeError, r"reserve"),
        (True, TypeError, r"reserve"),
    ],
)
def test_bad_reserves_are_named(reserve: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        RateLimit(10, reserve=reserve)  # type: ignore[arg-type]
