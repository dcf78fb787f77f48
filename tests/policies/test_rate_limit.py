"""RateLimit and its GCRA machine: validation, exact waits, atomic multi-limit admission."""

from __future__ import annotations

import datetime
import math
import re
from fractions import Fraction

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies import rate_limit as rate_limit_module
from policies.rate_limit import RateLimit, RateLimiter, Refusal, reserve_all


def state(limiter: RateLimiter) -> tuple[float, float]:
    """The whole mutable state of a limiter (t0, level), for before/after comparisons."""
    return limiter._t0, limiter._level


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rate": 0}, ValueError, "'rate' must be a number > 0, got 0"),
        ({"rate": -5.0}, ValueError, "'rate' must be a number > 0, got -5.0"),
        ({"rate": math.nan}, ValueError, "'rate' must be a finite number > 0, got nan"),
        ({"rate": math.inf}, ValueError, "'rate' must be a finite number > 0, got inf"),
        ({"rate": "5"}, TypeError, "'rate' must be a number > 0, got '5' of type str"),
        ({"rate": True}, TypeError, "'rate' must be a number > 0, got True of type bool"),
        ({"rate": 1, "per": 0}, ValueError, "'per' must be a number > 0, got 0"),
        ({"rate": 1, "per": -1.0}, ValueError, "'per' must be a number > 0, got -1.0"),
        ({"rate": 1, "per": math.nan}, ValueError, "'per' must be a finite number > 0, got nan"),
        (
            {"rate": 1, "per": datetime.timedelta(0)},
            ValueError,
            "'per' must be a number > 0, got 0.0",
        ),
        ({"rate": 1, "per": "1s"}, TypeError, "'per' must be a number > 0, got '1s' of type str"),
        ({"rate": 1, "burst": 0.5}, ValueError, "'burst' must be a number >= 1, got 0.5"),
        ({"rate": 1, "burst": 0}, ValueError, "'burst' must be a number >= 1, got 0"),
        (
            {"rate": 1, "burst": math.inf},
            ValueError,
            "'burst' must be a finite number >= 1, got inf",
        ),
        (
            {"rate": 1, "burst": "3"},
            TypeError,
            "'burst' must be a number >= 1, got '3' of type str",
        ),
        ({"rate": 1, "max_wait": -1}, ValueError, "'max_wait' must be a number >= 0, got -1"),
        (
            {"rate": 1, "max_wait": datetime.timedelta(seconds=-2)},
            ValueError,
            "'max_wait' must be a number >= 0, got -2.0",
        ),
        (
            {"rate": 1, "max_wait": math.nan},
            ValueError,
            "'max_wait' must be a finite number >= 0, got nan",
        ),
        (
            {"rate": 1, "cost": 3},
            TypeError,
            "'cost' must be None or a callable (*args, **kwargs) -> float, got 3 of type int",
        ),
        (
            {"rate": 1, "settle": "usage"},
            TypeError,
            "'settle' must be None or a callable (result) -> float, got 'usage' of type str",
        ),
    ],
)
def test_invalid_configuration_is_rejected_with_a_clear_message(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    """Each bad argument raises TypeError/ValueError naming it, the rule and the value."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        RateLimit(**kwargs)  # type: ignore[arg-type]


def test_only_rate_is_positional() -> None:
    """RateLimit(500, 60) is refused: 60 could mean per or burst, so it must be named."""
    with pytest.raises(TypeError, match=r"positional argument"):
        RateLimit(500, 60)  # type: ignore[call-arg]


def test_defaults_and_normalisation() -> None:
    """Durations accept timedelta; burst defaults to a full period's quota, at least 1."""
    limit = RateLimit(500, per=datetime.timedelta(minutes=1), max_wait=datetime.timedelta(0))

    assert (60.0, 0.0, None, 500) == (limit.per, limit.max_wait, limit.burst, limit.capacity)
    assert 1.0 == RateLimit(0.5).capacity
    assert 3 == RateLimit(10, burst=3).capacity
    assert math.inf == RateLimit(1, max_wait=math.inf).max_wait
    assert RateLimit(2, per=60.0) == RateLimit(rate=2, per=60.0)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        limit.rate = 1  # type: ignore[misc]


def test_cost_and_settle_are_kept_as_given() -> None:
    """The user's callables are stored as they are, for the runtime to call."""

    def cost(prompt: str) -> float:
        return len(prompt) / 4

    def settle(result: object) -> float:
        return 7.0

    limit = RateLimit(1000, per=60, cost=cost, settle=settle)

    assert (cost, settle) == (limit.cost, limit.settle)


# -- one limiter -----------------------------------------------------------------------------


def test_a_full_bucket_lets_burst_calls_through_at_once_then_refuses() -> None:
    """rate=5/s: five calls go at t=0, the sixth is refused; its retry_after is T = 0.2 s."""
    limiter = RateLimit(5).machine()

    waits = [limiter.reserve(0.0) for _ in range(5)]
    refusal = limiter.reserve(0.0)

    assert [0.0] * 5 == waits
    assert Refusal(retry_after=0.2, limit=limiter.config, index=0) == refusal
    assert isinstance(refusal, Refusal)
    assert not refusal.never


def test_waits_line_up_fifo_and_a_large_call_is_not_starved() -> None:
    """A reservation is a commitment: a big call reserved first delays the small ones after."""
    limiter = RateLimit(10, burst=10, max_wait=math.inf).machine()

    first = limiter.reserve(0.0, 10)
    big = limiter.reserve(0.0, 8)  # needs 8 units: 0.8 s
    small = limiter.reserve(0.0, 1)  # behind the big one: 0.9 s
    later = limiter.reserve(0.5, 1)  # at 0.5 s still behind both: starts at 1.0 s

    assert (0.0, 0.8, 0.9, 0.5) == (first, big, small, later)


def test_redis_cell_table() -> None:
    """redis-cell's it_rate_limits table (1/s, limit 5) gives the same verdicts and remaining."""
    limiter = RateLimit(1, burst=5).machine()
    # (now, cost, admitted, remaining afterwards rounded down, retry_after if refused)
    cases = [
        (0.0, 6, False, 5, math.inf),
        (0.0, 1, True, 4, None),
        (0.0, 1, True, 3, None),
        (0.0, 1, True, 2, None),
        (0.0, 1, True, 1, None),
        (0.0, 1, True, 0, None),
        (0.0, 1, False, 0, 1.0),
        (3.0, 1, True, 2, None),
        (3.1, 1, True, 1, None),
        (4.0, 1, True, 1, None),
        (8.0, 1, True, 4, None),
        (9.5, 1, True, 4, None),
        (9.5, 0, True, 4, None),
        (9.5, 2, True, 2, None),
        (9.5, 5, False, 2, 3.0),
    ]
    seen = []
    for now, cost, _, _, _ in cases:
        verdict = limiter.reserve(now, cost)
        retry = verdict.retry_after if isinstance(verdict, Refusal) else None
        seen.append((now, cost, verdict == 0.0, math.floor(limiter.available(now) + 1e-9), retry))

    assert cases == seen


def test_a_cost_above_the_burst_is_never_admitted_and_changes_nothing() -> None:
    """Refused at once with retry_after=inf (never), even when waiting forever is allowed."""
    limiter = RateLimit(10, burst=4, max_wait=math.inf).machine()
    limiter.reserve(0.0, 3)
    before = state(limiter)

    refusal = limiter.reserve(1.0, 4.5)

    assert isinstance(refusal, Refusal)
    assert (math.inf, True) == (refusal.retry_after, refusal.never)
    assert before == state(limiter)
    assert math.inf == limiter.peek(1.0, 4.5)


def test_a_cost_equal_to_the_burst_is_admitted() -> None:
    """cost == burst conforms from an empty bucket (redis-cell: increment <= tolerance)."""
    limiter = RateLimit(4000, per=60, max_wait=math.inf).machine()

    assert (0.0, 60.0) == (limiter.reserve(0.0, 4000), limiter.reserve(0.0, 4000))


def test_max_wait_of_the_limit_and_of_the_caller_both_bound_the_wait() -> None:
    """The smaller bound wins; a refusal takes nothing."""
    limiter = RateLimit(1, burst=2, max_wait=2.0).machine()
    limiter.reserve(0.0, 2)
    before = state(limiter)

    by_caller = limiter.reserve(0.0, 1, max_wait=0.5)
    by_limit = limiter.reserve(0.0, 2)  # needs 2 s more: exactly max_wait, admitted
    by_limit_again = limiter.reserve(0.0, 1)  # would need 3 s

    assert isinstance(by_caller, Refusal)
    assert 1.0 == by_caller.retry_after
    assert 2.0 == by_limit
    assert isinstance(by_limit_again, Refusal)
    assert 3.0 == by_limit_again.retry_after
    assert before != state(limiter)  # only the admitted call moved it


def test_zero_cost_goes_at_once_unless_turns_are_queued() -> None:
    """Cost 0 takes nothing, but waits behind reservations already in line (FIFO)."""
    limiter = RateLimit(1, burst=1, max_wait=math.inf).machine()

    assert 0.0 == limiter.reserve(0.0, 1)
    assert 0.0 == limiter.reserve(0.0, 0)
    assert 1.0 == limiter.reserve(0.0, 1)
    assert 1.0 == limiter.reserve(0.0, 0)


def test_a_clock_going_backwards_keeps_the_schedule() -> None:
    """A `now` earlier than the last one sees the bucket fuller; the wait counts from it."""
    limiter = RateLimit(1, burst=1, max_wait=math.inf).machine()
    limiter.reserve(10.0)

    # The next turn is at 11.0 on any clock reading: 6 s from 5.0.
    assert 6.0 == limiter.reserve(5.0)
    assert 0.0 == limiter.available(5.0)
    assert 1.0 == limiter.available(13.0)


def test_waits_below_a_nanosecond_are_zero() -> None:
    """At 100.1 after a full burst at 100.0 one unit has refilled, up to float rounding."""
    limiter = RateLimit(10).machine()
    for _ in range(10):
        limiter.reserve(100.0)
    raw = (limiter._level - (100.1 - 100.0) * 10 + 1 - 10) * 0.1
    assert 0.0 < raw < 1e-9  # the case the rule exists for

    assert 0.0 == limiter.reserve(100.1)
    twin = RateLimit(10).machine()
    for _ in range(10):
        reserve_all([limiter, twin], 100.1, [0, 1])
    assert 0.0 == reserve_all([twin, limiter], 100.2, [1, 1])


def test_peek_takes_nothing() -> None:
    """peek reports the wait reserve would return, and leaves the state alone."""
    limiter = RateLimit(2, burst=2).machine()
    limiter.reserve(0.0, 2)
    before = state(limiter)

    assert (0.5, 0.0, 0.0) == (limiter.peek(0.0), limiter.peek(0.5), limiter.peek(0.5, 0))
    assert before == state(limiter)


def test_available_counts_down_and_refills_up_to_the_burst() -> None:
    """Units left: the burst when full, less after calls, refilled at rate/per, capped."""
    limiter = RateLimit(60, per=60, burst=10).machine()

    assert 10.0 == limiter.available(0.0)
    limiter.reserve(0.0, 4)
    assert 6.0 == limiter.available(0.0)
    assert 8.0 == limiter.available(2.0)
    assert 10.0 == limiter.available(1000.0)


def test_settle_charges_extra_usage_and_refunds_unused_estimates() -> None:
    """A call priced at 100 tokens that used 250 makes later calls wait for the 150 extra;
    the latest call, which used 10 of its 100, gives 90 back."""
    limiter = RateLimit(100, per=1, burst=300, max_wait=math.inf).machine()
    limiter.reserve(0.0, 100)
    first = limiter.last_turn

    limiter.settle(0.0, estimated=100, actual=250, turn=first)
    assert 50.0 == limiter.available(0.0)
    assert 0.5 == limiter.reserve(0.0, 100)
    second = limiter.last_turn

    limiter.settle(0.0, estimated=100, actual=10, turn=second)  # it used little after all
    assert 40.0 == limiter.available(0.0)
    limiter.settle(0.0, estimated=100, actual=10, turn=second)  # said twice: a turn gives
    assert 50.0 == limiter.available(0.0)  # back at most what it was charged, 100 in all


def test_a_refund_never_goes_below_an_empty_bucket() -> None:
    """Refunding more than is in the bucket leaves it full, not fuller than the burst."""
    limiter = RateLimit(10, burst=10).machine()
    limiter.reserve(0.0, 2)

    limiter.settle(0.0, estimated=9, actual=0, turn=limiter.last_turn)

    assert 10.0 == limiter.available(0.0)
    assert 0.0 == limiter.reserve(0.0, 10)
    assert isinstance(limiter.reserve(0.0, 1), Refusal)


def test_refund_gives_back_a_turn_that_was_never_used() -> None:
    """A caller cancelled while waiting returns its turn: the next caller waits less."""
    limiter = RateLimit(1, burst=1, max_wait=math.inf).machine()
    limiter.reserve(0.0)
    assert 1.0 == limiter.reserve(0.0)

    limiter.refund(0.0, 1, limiter.last_turn)

    assert 1.0 == limiter.reserve(0.0)


@pytest.mark.parametrize("named", [True, False], ids=["turn-named", "no-turn"])
def test_a_turn_given_back_from_the_middle_of_the_line_is_not_handed_out_again(
    named: bool,
) -> None:
    """Issue 16, item 3, defect 4: 10/s, burst 1, five calls at 0 start at 0, .1 ... .4; the
    second is cancelled at .05. Moving the schedule back by its unit put the next call at .4,
    with the fifth (the starts were [0.0, 0.2, 0.3, 0.4, 0.4]). The fifth keeps its promise,
    so the next call goes at .5; the second's unit is a hole nobody can use yet."""
    limiter = RateLimit(10, per=1, burst=1, max_wait=math.inf).machine()
    waits, turns = [], []
    for _ in range(5):
        waits.append(limiter.reserve(0.0))
        if named:
            turns.append(limiter.last_turn)

    if named:
        limiter.refund(0.05, 1, turns[1])
    else:
        limiter.refund(0.05, 1)  # which turn? then nothing is safe to give back
    sixth = limiter.reserve(0.05)

    assert isinstance(sixth, float)
    starts = [w for i, w in enumerate(waits) if i != 1] + [0.05 + sixth]
    assert [0.0, 0.2, 0.3, 0.4, 0.5] == pytest.approx(starts, abs=1e-9)


def test_waiters_cancelled_together_give_everything_back_in_any_order() -> None:
    """Turns given back from the middle are holes; when the end of the line is given back
    too, the schedule moves back over all of them, whatever the order."""
    limiter = RateLimit(10, per=1, burst=1, max_wait=math.inf).machine()
    turns = []
    for _ in range(5):
        limiter.reserve(0.0)
        turns.append(limiter.last_turn)

    for i in (1, 3, 2):
        limiter.refund(0.0, 1, turns[i])
        assert 0.5 == pytest.approx(limiter.peek(0.0))  # the fifth still holds .4
    limiter.refund(0.0, 1, turns[4])
    assert 0.1 == pytest.approx(limiter.peek(0.0))  # back behind the first
    limiter.refund(0.0, 1, turns[0])
    assert (0.0, 1.0) == (limiter.peek(0.0), limiter.available(0.0))


def test_a_turn_held_by_a_later_call_stops_the_schedule_moving_back() -> None:
    """A hole below a turn still held stays a hole; the turns above it that are given back
    move the schedule back only as far as the held one."""
    limiter = RateLimit(10, per=1, burst=1, max_wait=math.inf).machine()
    turns = []
    for _ in range(4):
        limiter.reserve(0.0)
        turns.append(limiter.last_turn)

    limiter.refund(0.0, 1, turns[1])
    limiter.refund(0.0, 1, turns[3])

    assert 0.3 == pytest.approx(limiter.peek(0.0))  # the third (at .2) is held: next at .3


def test_what_was_never_held_or_is_forgotten_gives_nothing_back() -> None:
    """No turn, an unknown turn, a turn given back already, a turn the schedule ran past,
    and a turn beyond the latest _HELD: nothing comes back."""
    limiter = RateLimit(10, per=1, burst=1, max_wait=math.inf).machine()
    limiter.reserve(0.0)
    limiter.reserve(0.0)
    last = limiter.last_turn
    before = state(limiter)

    other = RateLimit(10, per=1, burst=1, max_wait=math.inf).machine()
    other.reserve(0.0)
    other.reserve(0.0)

    limiter.refund(0.0, 1)
    limiter.refund(0.0, 1, 0)
    limiter.refund(0.0, 1, other.last_turn)  # another limiter's turn (after a reconfigure)
    assert before == state(limiter)
    limiter.refund(0.0, 1, last)
    once = state(limiter)
    limiter.refund(0.0, 1, last)  # the same turn again
    assert once == state(limiter)

    limiter.reserve(5.0)  # the schedule ran past every turn held
    past = limiter.last_turn
    limiter.reserve(5.0)
    limiter.refund(5.0, 1, past - 1)
    assert 0.2 == pytest.approx(limiter.peek(5.0))

    busy = RateLimit(1000, per=1, burst=1, max_wait=math.inf).machine()
    taken = []
    for _ in range(rate_limit_module._HELD + 1):
        busy.reserve(0.0)
        taken.append(busy.last_turn)
    oldest = taken.pop(0)
    for turn in reversed(taken):  # all of them, newest first
        busy.refund(0.0, 1, turn)
    behind = state(busy)
    busy.refund(0.0, 1, oldest)  # forgotten: held beyond the latest _HELD turns
    assert behind == state(busy)
    assert 0.001 == pytest.approx(busy.peek(0.0))


def test_a_settle_gives_back_only_what_its_own_turn_does_not_need() -> None:
    """A call that used less than its estimate frees part of its slice: the schedule moves
    back at once when it is the latest turn, later when the turns above are given back;
    a charge for extra usage is never given back."""
    limiter = RateLimit(10, per=1, burst=10, max_wait=math.inf).machine()
    limiter.reserve(0.0, 10)
    first = limiter.last_turn
    limiter.reserve(0.0, 5)  # waits .5 s
    second = limiter.last_turn

    limiter.settle(0.0, 10, 4, turn=first)  # below a held turn: a hole of 6
    assert 0.6 == pytest.approx(limiter.peek(0.0))  # still 15 in line
    limiter.refund(0.0, 5, second)  # the end of the line: back over the hole too
    assert 0.0 == pytest.approx(limiter.peek(0.0, 6))
    assert 6.0 == pytest.approx(limiter.available(0.0))

    limiter.settle(0.0, 1, 3, turn=first)  # 2 more than estimated: charged on top
    limiter.settle(0.0, 4, 0, turn=first)  # the first turn's 4 are below the charge
    assert 4.0 == pytest.approx(limiter.available(0.0))


@pytest.mark.parametrize("turn", [True, 1.0, "1"], ids=["bool", "float", "str"])
def test_a_turn_that_is_not_an_int_raises_and_changes_nothing(turn: object) -> None:
    limiter = RateLimit(10).machine()
    limiter.reserve(0.0, 3)
    before = state(limiter)
    message = (
        "'turn' must be None or an int (a RateLimiter.last_turn),"
        f" got {turn!r} of type {type(turn).__name__}"
    )

    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        limiter.refund(0.0, 3, turn)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        limiter.settle(0.0, 3, 0, turn)  # type: ignore[arg-type]
    assert before == state(limiter)


@pytest.mark.parametrize(
    ("cost", "error", "message"),
    [
        (-1, ValueError, "'cost' must be a finite number >= 0, got -1"),
        (-0.5, ValueError, "'cost' must be a finite number >= 0, got -0.5"),
        (math.nan, ValueError, "'cost' must be a finite number >= 0, got nan"),
        (math.inf, ValueError, "'cost' must be a finite number >= 0, got inf"),
        (10**400, ValueError, f"'cost' must be a finite number >= 0, got {10**400}"),
        (True, TypeError, "'cost' must be a number >= 0, got True of type bool"),
        ("12", TypeError, "'cost' must be a number >= 0, got '12' of type str"),
        (None, TypeError, "'cost' must be a number >= 0, got None of type NoneType"),
    ],
)
def test_a_bad_cost_raises_and_changes_nothing(
    cost: object, error: type[Exception], message: str
) -> None:
    """The runtime passes the user's cost function's answer in; the machine validates it."""
    limiter = RateLimit(10).machine()
    other = RateLimit(10).machine()
    limiter.reserve(0.0, 3)
    before = (state(limiter), state(other))
    pattern = f"^{re.escape(message)}$"

    with pytest.raises(error, match=pattern):
        limiter.reserve(1.0, cost)  # type: ignore[arg-type]
    with pytest.raises(error, match=pattern):
        limiter.peek(1.0, cost)  # type: ignore[arg-type]
    with pytest.raises(error, match=pattern):
        limiter.refund(1.0, cost)  # type: ignore[arg-type]
    with pytest.raises(error, match=pattern):
        reserve_all([limiter], 1.0, [cost])  # type: ignore[list-item]
    with pytest.raises(error, match=pattern):
        reserve_all([other, limiter], 1.0, [1, cost])  # type: ignore[list-item]
    assert before == (state(limiter), state(other))


@pytest.mark.parametrize(
    ("estimated", "actual", "message"),
    [
        (-1, 5, "'estimated' must be a finite number >= 0, got -1"),
        (5, math.nan, "'actual' must be a finite number >= 0, got nan"),
    ],
)
def test_settle_validates_both_costs(estimated: float, actual: float, message: str) -> None:
    """settle names the bad argument and changes nothing."""
    limiter = RateLimit(10).machine()
    limiter.reserve(0.0, 3)
    before = state(limiter)

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        limiter.settle(1.0, estimated, actual)
    assert before == state(limiter)


def test_number_subclasses_are_costs() -> None:
    """A float or int subclass (numpy's float64 is one) is accepted through the slow path."""

    class Tokens(float):
        pass

    limiter = RateLimit(10).machine()

    assert 0.0 == limiter.reserve(0.0, Tokens(4.0))
    assert 6.0 == limiter.available(0.0)


def test_the_bound_is_reached_exactly() -> None:
    """rate + burst is tight: 4 at t=0 then one per T admits 8 = 4 + 4 within [0, 1]."""
    limiter = RateLimit(4, burst=4).machine()
    times = [0.0] * 4 + [0.25, 0.5, 0.75, 1.0]

    assert [0.0] * 8 == [limiter.reserve(now) for now in times]
    assert isinstance(limiter.reserve(1.0), Refusal)


# -- several limiters, one call --------------------------------------------------------------


def test_reserve_all_waits_for_the_slowest_and_charges_each_at_the_common_start() -> None:
    """RPM and TPM: the call goes when the token limit allows; the request limit is charged
    as of that start, so a second call still finds it empty then."""
    rpm = RateLimit(60, per=60, burst=1, max_wait=math.inf).machine()
    tpm = RateLimit(1000, per=60, burst=1000, max_wait=math.inf).machine()
    tpm.reserve(0.0, 1000)  # the token bucket is empty: 500 tokens take 30 s

    wait = reserve_all([rpm, tpm], 0.0, [1, 500])

    assert 30.0 == wait
    assert 0.0 == rpm.available(30.0)  # its one turn is used at 30 s, not at 0 s
    assert 1.0 == rpm.peek(30.0)
    assert 0.0 == tpm.available(30.0)


def test_reserve_all_reports_what_each_limiter_was_charged_and_a_refund_restores_it() -> None:
    """`charged` receives each limiter's charge: its cost, plus the wait a slower limiter
    imposed on one that had room. Refunding exactly that leaves every limiter as it was."""
    rpm = RateLimit(60, per=60, burst=10, max_wait=math.inf).machine()
    tpm = RateLimit(1000, per=60, burst=1000, max_wait=math.inf).machine()
    tpm.reserve(0.0, 1000)  # empty: 500 tokens take 30 s, so the call starts at 30 s
    before = (rpm.available(0.0), tpm.available(0.0))
    charged: list[float] = []

    assert 30.0 == reserve_all([rpm, tpm], 0.0, [1, 500], charged=charged)

    assert [31.0, 500.0] == pytest.approx(charged)  # rpm: 30 s of refill it had, and 1
    turns = [rpm.last_turn, tpm.last_turn]
    for limiter, cost, turn in zip([rpm, tpm], charged, turns, strict=True):
        limiter.refund(0.0, cost, turn)
    assert before == (rpm.available(0.0), tpm.available(0.0))
    assert 0.0 == rpm.peek(0.0)


def test_reserve_all_charged_is_left_alone_on_refusal_and_is_the_cost_for_one_limiter() -> None:
    one = RateLimit(10, burst=10).machine()
    charged: list[float] = []
    assert 0.0 == reserve_all([one], 0.0, [4], charged=charged)
    assert [4] == charged
    refused: list[float] = []
    assert isinstance(reserve_all([one], 0.0, [7], charged=refused), Refusal)
    assert [] == refused


def test_reserve_all_refusal_takes_nothing_from_any_limiter() -> None:
    """The token limit refuses, so the request limit keeps its turn."""
    rpm = RateLimit(10, burst=10).machine()
    tpm = RateLimit(100, burst=100).machine()
    tpm.reserve(0.0, 90)
    before = (state(rpm), state(tpm))

    refusal = reserve_all([rpm, tpm], 0.0, [1, 20])

    assert Refusal(retry_after=0.1, limit=tpm.config, index=1) == refusal
    assert before == (state(rpm), state(tpm))
    assert 10.0 == rpm.available(0.0)


def test_reserve_all_never_beats_a_wait_and_names_its_limit() -> None:
    """A cost above the second limit's burst is refused as never, whatever the first says."""
    first = RateLimit(1, burst=1).machine()
    first.reserve(0.0)
    second = RateLimit(100, burst=50).machine()
    before = (state(first), state(second))

    refusal = reserve_all([first, second], 0.0, [1, 51])

    assert Refusal(retry_after=math.inf, limit=second.config, index=1) == refusal
    assert before == (state(first), state(second))
    both = reserve_all([second, second.config.machine()], 0.0, [60, 70])
    assert Refusal(retry_after=math.inf, limit=second.config, index=0) == both


def test_reserve_all_applies_each_limit_max_wait_to_its_own_wait() -> None:
    """A 10 s wait set by the token limit (max_wait 30) is fine for the request limit (0)."""
    rpm = RateLimit(60, per=60, burst=1).machine()
    tpm = RateLimit(1, burst=10, max_wait=30.0).machine()
    tpm.reserve(0.0, 10)

    assert 10.0 == reserve_all([rpm, tpm], 0.0, [1, 10])
    # The request limit's next turn is one second after that call's start: 11 s, past its 0.
    refusal = reserve_all([rpm, tpm], 0.0, [1, 1])
    assert isinstance(refusal, Refusal)
    assert (0, 11.0) == (refusal.index, refusal.retry_after)


def test_reserve_all_refuses_past_the_callers_max_wait_naming_the_slowest() -> None:
    """The caller's bound applies to the common wait; the limit setting it is named."""
    a = RateLimit(1, burst=1, max_wait=math.inf).machine()
    b = RateLimit(1, burst=1, max_wait=math.inf).machine()
    a.reserve(0.0)
    b.reserve(0.0, 1)
    b.reserve(0.0, 1)  # b: next turn in 2 s, a: in 1 s

    refusal = reserve_all([a, b], 0.0, [1, 1], max_wait=1.5)

    assert Refusal(retry_after=2.0, limit=b.config, index=1) == refusal


def test_reserve_all_needs_one_cost_per_limiter() -> None:
    """Mismatched sequences are a bug in the caller, reported before anything changes."""
    limiter = RateLimit(1).machine()

    with pytest.raises(
        ValueError,
        match=r"^reserve_all\(\) needs one cost per limiter, got 1 limiters and 2 costs$",
    ):
        reserve_all([limiter], 0.0, [1, 1])
    assert 0.0 == reserve_all([], 0.0, [])
    assert 1.0 == limiter.available(0.0)


# -- properties ------------------------------------------------------------------------------
#
# THE LIMITER'S GUARANTEE (rule 4 of policies/rate_limit.py), tested below for single limits and
# for every limit of a reserve_all group: for any sequence of reservations at any `now` values
# (backward steps included), refunds of any of them (in any order, at any later step) and
# settles, let s = now + wait for each admitted call that was not refunded (a refunded call
# never started). Then for every closed interval [a, a + L], the units those calls used (their
# cost; min(cost, actual) once settled) with s in it add up to at most burst + rate * L / per
# (so rate + burst over any `per` seconds), up to float rounding (a relative 1e-7).
# test_the_bound_is_reached_exactly shows it is tight. Refunds used to move the schedule back
# whichever turn they gave back, so a call could start on a slot promised to a waiter (rule 7).


def worst_window(starts: list[tuple[float, float]], length: float) -> float:
    """The largest total cost starting within any closed interval of *length* (brute force).

    An interval holding the most can always be slid right until it begins at a start."""
    return max(
        (sum(cost for s, cost in starts if a <= s <= a + length) for a, _ in starts),
        default=0.0,
    )


def bound(limit: RateLimit, length: float) -> float:
    """burst + rate * L / per, with room for float rounding."""
    exact = limit.capacity + limit.rate * length / limit.per
    return exact * (1 + 1e-7)


limits = st.builds(
    lambda rate, per, burst, max_wait: RateLimit(rate, per=per, burst=burst, max_wait=max_wait),
    rate=st.floats(0.1, 1000.0),
    per=st.floats(0.01, 100.0),
    burst=st.one_of(st.none(), st.floats(1.0, 2000.0)),
    max_wait=st.sampled_from([0.0, 0.5, 3.0, math.inf]),
)
# How an admitted call ends, after it was reserved: it goes and keeps its estimate (nothing to
# do), it never goes ("refund": cancelled while it waited, refused by the bulkhead), or it goes
# and reports its real usage ("settle", a share of the estimate: less, or more). `pick` chooses
# which call still open it is, `actual` its usage as a share of its cost.
endings = st.tuples(
    st.sampled_from(["reserve", "reserve", "refund", "settle"]),
    st.integers(0, 2**16),
    st.one_of(st.just(0.0), st.floats(0.0, 1.5)),
)


@attrs.define
class Call:
    """An admitted call: its start, and per limiter its cost, turn, charge and units used."""

    start: float
    costs: list[float]
    turns: list[int]
    charged: list[float]
    used: list[float]


def end(call: Call, limiters: list[RateLimiter], now: float, how: str, actual: float) -> None:
    """The call never went (refund) or went and used `actual` x its cost (settle)."""
    for i, limiter in enumerate(limiters):
        if how == "refund":
            limiter.refund(now, call.charged[i], call.turns[i])
            call.used[i] = 0.0
        else:
            usage = actual * call.costs[i]
            limiter.settle(now, call.costs[i], usage, call.turns[i])
            call.used[i] = min(call.costs[i], usage)


# (ending, time step, cost, caller's max_wait), as fractions of the limit's `per` and burst.
steps = st.lists(
    st.tuples(
        endings,
        st.one_of(st.just(0.0), st.floats(-0.2, 2.0)),
        st.floats(0.0, 1.05),
        st.sampled_from([0.0, 0.25, math.inf]),
    ),
    max_size=80,
)
# Issue 16, item 3, defect 4: 10/s, burst 1: five calls at once wait 0, .1, .2, .3, .4; the
# second is cancelled at .05 and a sixth call came: it started at .4, with the fifth.
_call = (("reserve", 0, 0.0), 0.0, 1.0, math.inf)
DEFECT_4 = [_call] * 5 + [(("refund", 1, 0.0), 0.05, 1.0, 0.0), _call]


@settings(max_examples=400, deadline=None)
@given(limit=limits, steps=steps, length=st.floats(0.0, 3.0))
@example(limit=RateLimit(10, burst=1, max_wait=math.inf), steps=DEFECT_4, length=0.0)
def test_admitted_cost_over_any_window_is_at_most_burst_plus_refill(
    limit: RateLimit, steps: list[tuple[tuple[str, int, float], float, float, float]], length: float
) -> None:
    """Any requests, any refunds and settles of them, any clock (backwards too): the units
    used by calls starting within L s <= burst + rate*L/per."""
    limiter = limit.machine()
    now = 1000.0
    calls: list[Call] = []
    going: list[Call] = []  # admitted, not ended yet
    for (how, pick, actual), dt, share, max_wait in steps:
        now += dt * limit.per
        if how != "reserve":
            if going:
                end(going.pop(pick % len(going)), [limiter], now, how, actual)
            continue
        cost = share * limit.capacity
        verdict = limiter.reserve(now, cost, max_wait * limit.per)
        if not isinstance(verdict, Refusal):
            assert 0.0 <= verdict <= min(max_wait * limit.per, limit.max_wait)
            call = Call(now + verdict, [cost], [limiter.last_turn], [cost], [cost])
            calls.append(call)
            going.append(call)
        else:
            assert verdict.never == (cost > limit.capacity)

    starts = [(call.start, call.used[0]) for call in calls]
    for window in (0.0, limit.per, length * limit.per):
        assert worst_window(starts, window) <= bound(limit, window)


@settings(max_examples=300, deadline=None)
@given(
    group=st.lists(limits, min_size=1, max_size=3),
    steps=st.lists(
        st.tuples(
            endings,
            st.one_of(st.just(0.0), st.floats(-0.1, 1.0)),
            st.lists(st.one_of(st.just(0.0), st.floats(0.0, 1.05)), min_size=3, max_size=3),
            st.sampled_from([0.0, 0.5, math.inf]),
        ),
        max_size=60,
    ),
)
# The second limit queues calls far ahead; calls that cost it nothing then start together
# with them, so the first limit must be charged at that common start, not at `now`.
@example(
    group=[RateLimit(1), RateLimit(1, max_wait=math.inf)],
    steps=[(("reserve", 0, 0.0), 0.0, [0.0, 1.0, 0.0], math.inf)] * 5
    + [(("reserve", 0, 0.0), 1.0, [1.0, 0.0, 0.0], math.inf)] * 4,
)
# The same, with the calls waiting for the second limit cancelled from the middle of the line.
@example(
    group=[RateLimit(1, max_wait=math.inf), RateLimit(1, max_wait=math.inf)],
    steps=[(("reserve", 0, 0.0), 0.0, [0.0, 1.0, 0.0], math.inf)] * 5
    + [(("refund", 2, 0.0), 0.5, [0.0] * 3, 0.0), (("refund", 1, 0.0), 0.0, [0.0] * 3, 0.0)]
    + [(("reserve", 0, 0.0), 0.0, [1.0, 1.0, 0.0], math.inf)] * 3,
)
def test_reserve_all_is_atomic_and_every_limit_keeps_its_bound(
    group: list[RateLimit], steps: list[tuple[tuple[str, int, float], float, list[float], float]]
) -> None:
    """A refusal changes no limiter; an admission waits for the slowest limiter exactly; and
    each limiter's guarantee holds on the common start times, however late another made them,
    whatever was refunded or settled."""
    limiters = [limit.machine() for limit in group]
    shortest = min(limit.per for limit in group)
    now = 1000.0
    calls: list[Call] = []
    going: list[Call] = []
    for (how, pick, actual), dt, shares, max_wait in steps:
        now += dt * shortest
        if how != "reserve":
            if going:
                end(going.pop(pick % len(going)), limiters, now, how, actual)
            continue
        costs = [share * limit.capacity for share, limit in zip(shares, group, strict=False)]
        before = [state(limiter) for limiter in limiters]
        alone = [limiter.peek(now, cost) for limiter, cost in zip(limiters, costs, strict=True)]
        charged: list[float] = []

        verdict = reserve_all(limiters, now, costs, max_wait, charged)

        if isinstance(verdict, Refusal):
            assert before == [state(limiter) for limiter in limiters]
            assert [] == charged
            refuser = group[verdict.index]
            assert refuser is verdict.limit
            if verdict.never:
                assert costs[verdict.index] > refuser.capacity
            else:
                assert max(alone) == verdict.retry_after
                assert alone[verdict.index] > refuser.max_wait or verdict.retry_after > max_wait
        else:
            assert max(alone) == verdict
            assert all(w <= limit.max_wait for w, limit in zip(alone, group, strict=True))
            turns = [limiter.last_turn for limiter in limiters]
            call = Call(now + verdict, costs, turns, charged, list(costs))
            calls.append(call)
            going.append(call)

    for i, limit in enumerate(group):
        starts = [(call.start, call.used[i]) for call in calls]
        assert worst_window(starts, limit.per) <= bound(limit, limit.per)
        assert worst_window(starts, 0.0) <= bound(limit, 0.0)


@settings(max_examples=300, deadline=None)
@given(
    limit=limits,
    ops=st.lists(
        st.tuples(
            st.sampled_from(["reserve", "settle", "refund"]),
            st.floats(-0.2, 1.0),
            st.floats(0.0, 1.05),
            st.floats(0.0, 3.0),
            st.one_of(st.none(), st.integers(-2, 60)),
        ),
        max_size=60,
    ),
)
def test_settle_and_refund_keep_available_between_zero_and_the_burst(
    limit: RateLimit, ops: list[tuple[str, float, float, float, int | None]]
) -> None:
    """Whatever is charged or refunded, to whichever turn (taken or not, twice, or none),
    available() stays within [0, burst] at any time."""
    limiter = limit.machine()
    now = 0.0
    for op, dt, share, actual, turn in ops:
        now += dt * limit.per
        cost = share * limit.capacity
        if op == "reserve":
            limiter.reserve(now, cost, math.inf)
        elif op == "settle":
            limiter.settle(now, cost, actual * limit.capacity, turn)
        else:
            limiter.refund(now, cost, turn)
        for later in (now, now + 0.3 * limit.per, now + 10 * limit.per):
            assert 0.0 <= limiter.available(later) <= limit.capacity


class Model:
    """
    GCRA written the textbook way (ITU-T I.371 virtual scheduling, redis-cell's arithmetic) in
    exact rationals: one theoretical arrival time, no (t0, level) split, no rounding rule. The
    turns at the end of the schedule are explicit slices [turn, begin, end, units given back]
    in absolute time (rule 7), where the machine keeps charges relative to its level.
    """

    def __init__(self, rate: int, per: int, burst: int, max_wait: float) -> None:
        self.interval = Fraction(per, rate)
        self.burst, self.max_wait = burst, max_wait
        self.tolerance = burst * self.interval
        self.tat: Fraction | None = None  # None: never used, a full bucket
        self.turn = 0
        self.slices: list[list[Fraction]] = []

    def base(self, now: Fraction) -> Fraction:
        return now if self.tat is None else max(self.tat, now)

    def forget_past(self, now: Fraction) -> None:
        if self.tat is None or self.tat <= now:
            self.slices.clear()  # the schedule ran past them: nothing left to give back

    def reserve(self, now: Fraction, cost: int, max_wait: float) -> Fraction | str:
        self.forget_past(now)
        if cost > self.burst:
            return "never"
        begin = self.base(now)
        new_tat = begin + cost * self.interval
        wait = max(Fraction(0), new_tat - self.tolerance - now)
        if wait > min(max_wait, self.max_wait):
            return "refused"
        self.tat = new_tat
        self.turn += 1
        if cost:
            self.slices.append([Fraction(self.turn), begin, new_tat, Fraction(0)])
        return wait

    def settle(self, now: Fraction, estimated: int, actual: int, turn: int | None) -> None:
        if actual > estimated:
            self.forget_past(now)
            begin = self.base(now)
            self.tat = begin + (actual - estimated) * self.interval
            self.turn += 1
            self.slices.append([Fraction(self.turn), begin, self.tat, Fraction(0)])
        elif actual < estimated and turn is not None:
            self.give_back(now, turn, estimated - actual)

    def give_back(self, now: Fraction, turn: int, units: int) -> None:
        found = [i for i, piece in enumerate(self.slices) if piece[0] == turn]
        if not found:
            return
        piece = self.slices[found[0]]
        piece[3] = min((piece[2] - piece[1]) / self.interval, piece[3] + units)
        if found[0] != len(self.slices) - 1:
            return
        while self.slices:
            _, begin, end, free = self.slices[-1]
            if free < (end - begin) / self.interval:
                self.slices[-1][2] = self.tat = end - free * self.interval
                self.slices[-1][3] = Fraction(0)
                break
            self.tat = begin
            self.slices.pop()
        assert self.tat is not None
        if self.tat <= now:
            self.tat = now
            self.slices.clear()

    def available(self, now: Fraction) -> Fraction:
        return max(Fraction(0), self.burst - (self.base(now) - now) / self.interval)


@settings(max_examples=500, deadline=None)
@given(
    rate=st.integers(1, 20),
    per=st.sampled_from([1, 2, 60]),
    burst=st.integers(1, 20),
    max_wait=st.sampled_from([0.0, math.inf]),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["reserve", "reserve", "reserve", "settle", "refund"]),
            st.integers(-4, 16),  # eighths of a second; backwards too
            st.integers(0, 21),
            st.integers(0, 21),
            st.sampled_from([0.0, math.inf]),
            st.one_of(st.none(), st.integers(0, 40)),  # which turn taken so far, if any
        ),
        max_size=80,
    ),
)
# A give-back never takes the bucket below empty as of its `now`: after a refund at 10 s of a
# turn due at 0 s, a clock gone back to 5 s still finds the bucket half full, not full.
@example(
    rate=1,
    per=1,
    burst=10,
    max_wait=math.inf,
    ops=[("reserve", 0, 1, 0, math.inf, None)]
    + [("settle", 16, 0, 0, math.inf, None)] * 5
    + [("refund", 0, 1, 0, math.inf, 0)]
    + [("settle", -4, 0, 0, math.inf, None)] * 10
    + [("reserve", 0, 10, 0, math.inf, None)],
)
def test_limiter_matches_the_exact_model(
    rate: int,
    per: int,
    burst: int,
    max_wait: float,
    ops: list[tuple[str, int, int, int, float, int | None]],
) -> None:
    """Float machine == exact textbook GCRA: same verdicts, same waits, same units left, and
    the same give-backs (rule 7)."""
    limiter = RateLimit(rate, per=per, burst=burst, max_wait=max_wait).machine()
    model = Model(rate, per, burst, max_wait)
    taken: list[tuple[int, int]] = []  # (the machine's turn, the model's), per admission
    eighths = 8000
    for op, step, cost, actual, callers, pick in ops:
        eighths += step
        now = Fraction(eighths, 8)
        mine, its = (None, None) if pick is None or not taken else taken[pick % len(taken)]
        if op == "settle":
            limiter.settle(float(now), cost, actual, mine)
            model.settle(now, cost, actual, its)
        elif op == "refund":
            limiter.refund(float(now), cost, mine)
            if its is not None:
                model.give_back(now, its, cost)
        else:
            latest = limiter.last_turn
            got = limiter.reserve(float(now), cost, callers)
            expected = model.reserve(now, cost, callers)
            if isinstance(got, Refusal):
                assert expected == ("never" if got.never else "refused")
                assert latest == limiter.last_turn
            else:
                assert isinstance(expected, Fraction)
                assert float(expected) == pytest.approx(got, rel=1e-9, abs=1e-9)
                assert limiter.last_turn > latest
                taken.append((limiter.last_turn, model.turn))
        assert float(model.available(now)) == pytest.approx(
            limiter.available(float(now)), rel=1e-9, abs=1e-9
        )


# -- final turns (rule 9) ----------------------------------------------------------------------


def test_a_final_turn_due_at_once_gets_no_number_and_one_that_waits_does() -> None:
    """A final turn due at once is never given back: no number (0 names no turn). One that must
    wait is numbered and held as usual, so a cancelled wait still gives it back."""
    limiter = RateLimit(10, per=1, burst=1, max_wait=math.inf).machine()

    assert 0.0 == limiter.reserve(0.0, 1, math.inf, final=True)
    assert 0 == limiter.last_turn
    limiter.refund(0.0, 1, limiter.last_turn)  # names no turn: nothing comes back
    assert 0.1 == pytest.approx(limiter.peek(0.0))

    assert 0.1 == pytest.approx(limiter.reserve(0.0, 1, math.inf, final=True))
    waiting = limiter.last_turn
    assert waiting > 0
    limiter.refund(0.0, 1, waiting)  # cancelled while it waited: back at once
    assert 0.1 == pytest.approx(limiter.peek(0.0))


def test_turns_held_below_a_final_turn_give_nothing_back() -> None:
    """A final turn holds its units until the schedule runs past them, so nothing below it can
    move the schedule back: a turn given back from below it gives back nothing, exactly as
    below a turn still held; turns above it give back down to it."""
    limiter = RateLimit(10, per=1, burst=3, max_wait=math.inf).machine()
    limiter.reserve(0.0, 1)
    below = limiter.last_turn
    limiter.reserve(0.0, 1, math.inf, final=True)
    limiter.reserve(0.0, 1)
    above = limiter.last_turn
    assert 0.1 == pytest.approx(limiter.peek(0.0))

    limiter.refund(0.0, 1, below)
    assert 0.1 == pytest.approx(limiter.peek(0.0))
    limiter.refund(0.0, 1, above)
    assert (0.0, 1.0) == (limiter.peek(0.0), pytest.approx(limiter.available(0.0)))
    limiter.refund(0.0, 1, below)
    assert 1.0 == pytest.approx(limiter.available(0.0))  # still two units held


@settings(max_examples=400, deadline=None)
@given(
    limit=limits,
    ops=st.lists(
        st.tuples(
            st.sampled_from(["reserve", "final", "final", "refund", "settle"]),
            st.one_of(st.just(0.0), st.floats(-0.2, 1.0)),
            st.one_of(st.just(0.0), st.floats(0.0, 1.05)),
            st.sampled_from([0.0, 0.25, math.inf]),
            st.integers(0, 2**16),
            st.floats(0.0, 1.5),
        ),
        max_size=80,
    ),
)
@example(  # a final turn between two that are given back, the lower one first
    limit=RateLimit(10, burst=3, max_wait=math.inf),
    ops=[
        ("reserve", 0.0, 1 / 3, math.inf, 0, 0.0),
        ("final", 0.0, 1 / 3, math.inf, 0, 0.0),
        ("reserve", 0.0, 1 / 3, math.inf, 0, 0.0),
        ("refund", 0.0, 0.0, 0.0, 0, 0.0),
        ("refund", 0.0, 0.0, 0.0, 0, 0.0),
    ],
)
def test_a_final_turn_leaves_everything_as_a_turn_never_given_back(
    limit: RateLimit, ops: list[tuple[str, float, float, float, int, float]]
) -> None:
    """Rule 9: a limiter taking some turns final and one taking them plainly, never giving
    those back, agree on every wait and refusal, on the schedule, on the units left at any
    time, and on what every other turn gives back (refunds and settles in any order, clock
    backwards too), up to the last turn given back."""
    final, plain = limit.machine(), limit.machine()
    now = 1000.0
    # The turns that may be given back: (final's number, plain's number, cost).
    held: list[tuple[int, int, float]] = []
    for how, dt, share, max_wait, pick, actual in ops:
        now += dt * limit.per
        if how in ("refund", "settle"):
            if held:
                mine, its, cost = held.pop(pick % len(held))
                if how == "refund":
                    final.refund(now, cost, mine)
                    plain.refund(now, cost, its)
                else:
                    final.settle(now, cost, actual * cost, mine)
                    plain.settle(now, cost, actual * cost, its)
        else:
            cost = share * limit.capacity
            got = final.reserve(now, cost, max_wait * limit.per, final=how == "final")
            assert plain.reserve(now, cost, max_wait * limit.per) == got
            if how == "final" and got == 0.0:
                assert 0 == final.last_turn  # used at once, never given back
            elif not isinstance(got, Refusal):
                held.append((final.last_turn, plain.last_turn, cost))
        assert state(plain) == state(final)
        for later in (now - 0.2 * limit.per, now, now + 0.3 * limit.per):
            assert plain.available(later) == final.available(later)
    for mine, its, cost in reversed(held):
        final.refund(now, cost, mine)
        plain.refund(now, cost, its)
        assert state(plain) == state(final)


@settings(max_examples=300, deadline=None)
@given(
    group=st.lists(limits, min_size=1, max_size=3),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["reserve", "final", "final", "refund", "settle"]),
            st.one_of(st.just(0.0), st.floats(-0.1, 1.0)),
            st.lists(st.one_of(st.just(0.0), st.floats(0.0, 1.05)), min_size=3, max_size=3),
            st.sampled_from([0.0, 0.5, math.inf]),
            st.integers(0, 2**16),
            st.floats(0.0, 1.5),
        ),
        max_size=60,
    ),
)
def test_reserve_all_final_leaves_everything_as_turns_never_given_back(
    group: list[RateLimit], ops: list[tuple[str, float, list[float], float, int, float]]
) -> None:
    """Rule 9 for several limits: reserve_all(final=True) and reserve_all() agree on every
    verdict and what each limit was charged, and leave every limiter in the same state, for
    whatever is given back later of the turns that were not final."""
    final = [limit.machine() for limit in group]
    plain = [limit.machine() for limit in group]
    shortest = min(limit.per for limit in group)
    now = 1000.0
    held: list[tuple[list[int], list[int], list[float]]] = []  # turns, turns, charges
    for how, dt, shares, max_wait, pick, actual in ops:
        now += dt * shortest
        if how in ("refund", "settle"):
            if held:
                mine, its, charges = held.pop(pick % len(held))
                for limiters, turns in ((final, mine), (plain, its)):
                    for limiter, turn, charge in zip(limiters, turns, charges, strict=True):
                        if how == "refund":
                            limiter.refund(now, charge, turn)
                        else:
                            limiter.settle(now, charge, actual * charge, turn)
        else:
            costs = [share * limit.capacity for share, limit in zip(shares, group, strict=False)]
            charged: list[float] = []
            expected: list[float] = []
            got = reserve_all(final, now, costs, max_wait, charged, final=how == "final")
            assert reserve_all(plain, now, costs, max_wait, expected) == got
            assert expected == charged
            if how == "final" and got == 0.0:
                assert [0] * len(group) == [limiter.last_turn for limiter in final]
            elif not isinstance(got, Refusal):
                mine = [limiter.last_turn for limiter in final]
                held.append((mine, [limiter.last_turn for limiter in plain], charged))
        assert [state(limiter) for limiter in plain] == [state(limiter) for limiter in final]
        for later in (now - 0.2 * shortest, now, now + 0.3 * shortest):
            assert [limiter.available(later) for limiter in plain] == [
                limiter.available(later) for limiter in final
            ]
