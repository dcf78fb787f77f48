"""
The leased turns of a shared rate limit (``_lease.LeasedLimiter``): a pure machine driven
with explicit ``now`` values, no Redis and no event loop.
"""

from __future__ import annotations

import math

import pytest

from policies import RateLimit, Refusal
from supervisor.integrations.redis._lease import LeasedLimiter

LIMIT = RateLimit(100, per=1)  # T = 10 ms, burst 100
INTERVAL = 0.25


def leased(limit: RateLimit = LIMIT, replicas: int = 1) -> LeasedLimiter:
    source = LeasedLimiter(limit, interval=INTERVAL, replicas=replicas, now=0.0)
    source.cut(0.0)  # the first tick: nothing to give back
    return source


def test_turns_come_from_the_lease_at_their_due_time() -> None:
    """Unit u of a batch is due at base + u*T: a call waits for its unit, as GCRA says."""
    source = leased(RateLimit(100, per=1, max_wait=1.0))
    source.install(10.0, granted=3, base=10.0)
    assert [0.01, 0.02, 0.03] == pytest.approx([source.reserve(10.0) for _ in range(3)])
    refusal = source.reserve(10.0)
    assert isinstance(refusal, Refusal)
    assert "lease" == source.mode


def test_a_wait_beyond_max_wait_is_refused_and_takes_nothing() -> None:
    """max_wait=0 (the default): a unit due later is not a turn now."""
    source = leased()
    source.install(10.0, granted=2, base=9.99)  # unit 1 due now, unit 2 in 10 ms
    assert 0.0 == source.reserve(10.0)
    refusal = source.reserve(10.0)
    assert isinstance(refusal, Refusal)
    assert 0.01 == pytest.approx(refusal.retry_after)
    assert 0.0 == source.reserve(10.01)


def test_the_callers_budget_bounds_the_wait_too() -> None:
    """reserve's max_wait (the call's deadline) applies as well as the limit's."""
    source = leased(RateLimit(100, per=1, max_wait=10.0))
    source.install(10.0, granted=50, base=10.0)
    assert isinstance(source.reserve(10.0, 50, max_wait=0.1), Refusal)
    assert 0.5 == pytest.approx(source.reserve(10.0, 50, max_wait=1.0))


def test_a_cost_above_the_burst_is_never() -> None:
    """Never is not a wait: the actor turns it into a ValueError at once."""
    source = leased()
    refusal = source.reserve(10.0, 101)
    assert isinstance(refusal, Refusal)
    assert refusal.never


def test_a_cost_spanning_two_batches_goes_when_its_last_unit_is_due() -> None:
    """Units of two leases together pay for one call."""
    source = leased(RateLimit(100, per=1, max_wait=1.0))
    source.install(10.0, granted=2, base=9.98)  # due at 10.0 and 10.0 - now
    source.install(10.0, granted=2, base=10.0)  # due at 10.01, 10.02
    assert 0.02 == pytest.approx(source.reserve(10.0, 4))
    assert isinstance(source.reserve(10.0, 1), Refusal)


def test_without_a_lease_it_admits_its_share_from_an_empty_local_bucket() -> None:
    """Before the first answer (and while Redis is away): rate / replicas, starting empty."""
    source = LeasedLimiter(LIMIT, interval=INTERVAL, replicas=1, now=0.0)
    source.fall_back(0.0, 4)  # 25 per second, burst 25, empty at 0.0
    assert "local" == source.mode
    assert isinstance(source.reserve(0.0), Refusal)
    assert 0.0 == source.reserve(0.04)  # one unit accrues in 40 ms
    assert isinstance(source.reserve(0.04), Refusal)
    assert 0 < source.available(10.0) <= 25


def test_a_new_replica_serves_its_share_at_once_and_pays_for_it() -> None:
    """Before the first answer the local share starts full (a replica that just started has
    used nothing: its first calls are not refused); what it admits is charged at its first
    lease, so a prompt Redis sees no more than the limit."""
    source = LeasedLimiter(LIMIT, interval=INTERVAL, replicas=4, now=0.0)
    assert "connecting" == source.mode
    admitted = [source.reserve(0.0) for _ in range(30)]
    assert 25 == sum(1 for turn in admitted if not isinstance(turn, Refusal))  # 100 / 4
    given, *_ = source.cut(0.1)
    assert -25 == pytest.approx(given)  # charged: the schedule moves on by 25 units


def test_back_from_a_fallback_it_keeps_to_its_pace_for_three_intervals() -> None:
    """The first leases after an outage ask for the fallback's pace, and say they recover."""
    source = leased()
    source.install(0.5, granted=0, base=0.5)
    source.fall_back(1.0, 4)  # 25 per second here
    for _ in range(50):
        source.reserve(1.1)  # demand far above the share
    *_, recovering = source.cut(1.25)
    assert recovering
    source.install(1.3, granted=6.25, base=1.3)
    _, want, _, recovering = source.cut(1.5)
    assert recovering
    assert 25 * INTERVAL == pytest.approx(want)  # its fallback's share of an interval
    *_, recovering = source.cut(1.3 + 3 * INTERVAL + 0.01)
    assert not recovering


def test_the_first_answer_is_not_a_recovery() -> None:
    """At startup ("connecting") there was no fallback to recover from."""
    source = LeasedLimiter(LIMIT, interval=INTERVAL, replicas=1, now=0.0)
    assert "connecting" == source.mode
    source.install(0.1, granted=5, base=0.1)
    *_, recovering = source.cut(0.2)
    assert not recovering


def test_an_answer_ends_the_fallback() -> None:
    """A lease after an outage: admissions come from Redis's turns again."""
    source = leased()
    source.fall_back(0.0, 2)
    source.install(1.0, granted=1, base=0.99)
    assert "lease" == source.mode
    assert 0.0 == source.reserve(1.0)
    assert isinstance(source.reserve(100.0), Refusal)  # no local bucket any more


def test_a_cut_keeps_the_next_interval_and_gives_back_the_rest() -> None:
    """At a tick: units due within one interval stay (the round trip never leaves the
    replica without turns); later ones go back, and so do units already due that nobody
    took."""
    source = leased()
    source.install(10.0, granted=60, base=9.9)  # units due 9.91 .. 10.5
    assert 0.0 == source.reserve(10.0, 5)  # units 1-5 (due by 9.95)
    given, *_ = source.cut(10.0)
    # given back: units 6-10 (due by 10.0, not taken) and 36-60 (due after 10.25)
    assert 5 + 25 == pytest.approx(given)
    assert 25 == pytest.approx(source.available(10.25))
    given, *_ = source.cut(10.6)
    assert 25 == pytest.approx(given)
    assert 0.0 == source.available(10.6)


def test_settle_and_refund_reach_the_shared_limit() -> None:
    """A call that cost more is charged at the next tick; a refund is reused at once."""
    source = leased()
    source.install(10.0, granted=10, base=9.9)
    assert 0.0 == source.reserve(10.0, 4)
    source.refund(10.0, 4, source.last_turn)
    assert 10 == pytest.approx(source.available(10.0))
    assert 0.0 == source.reserve(10.0, 4)
    source.settle(10.0, 4, 7)  # 3 more than reserved
    given, *_ = source.cut(10.0)
    assert 6 - 3 == pytest.approx(given)  # the 6 due and untaken go back, 3 are charged


def test_a_turn_with_a_later_one_on_top_is_not_handed_out_again() -> None:
    """policies.rate_limit, rule 7, for leases: a refund gives units back only where no later
    reservation sits on top of them (that call waits for its due time); nor without a turn."""
    source = leased(RateLimit(100, per=1, max_wait=1.0))
    source.install(10.0, granted=50, base=10.0)
    source.reserve(10.0)
    first = source.last_turn
    later = source.reserve(10.0)  # due after the first
    source.refund(10.0, 1, first)
    assert later < source.reserve(10.0)  # the next call still comes after the later one
    source.refund(10.0, 1)  # no turn named: nothing
    assert 47 == pytest.approx(source.available(10.5))


def test_bad_costs_are_refused_as_a_rate_limiter_refuses_them() -> None:
    """settle/refund check their numbers (the actor keeps the estimate then)."""
    source = leased()
    with pytest.raises(TypeError):
        source.settle(0.0, 1, "3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        source.refund(0.0, math.nan)


def test_want_follows_the_demand_and_hunger_is_reported() -> None:
    """The next request is the demand since the last cut over the lease's span; a replica
    that turned calls away says so (the script then shares the refill fairly)."""
    source = leased()
    source.cut(10.0)
    source.install(10.0, granted=5, base=9.9)
    for _ in range(20):
        source.reserve(10.0)
    _, want, hungry, *_ = source.cut(10.25)
    assert hungry
    assert 20 * 2 == pytest.approx(want)  # 20 units in one interval, asked for two
    _, want, hungry, *_ = source.cut(10.5)
    assert not hungry
    assert 20 == pytest.approx(want)  # a burst is remembered for a few ticks, halving
    for tick in range(3, 12):
        _, want, *_ = source.cut(10.0 + tick * INTERVAL)
    # then a standing lease: a quarter of its share of an interval's refill (or one call,
    # when that is more: a slow limit)
    assert 100 * INTERVAL / 4 == want


def test_a_slow_limit_keeps_no_standing_lease_from_a_busy_replica() -> None:
    """10 per hour over 4 replicas: an idle replica asks for less than one call."""
    source = leased(RateLimit(10, per=3600), replicas=4)
    source.set_replicas(4)
    _, want, *_ = source.cut(10.0)
    assert want < 0.001


def test_zero_cost_goes_at_once() -> None:
    """A call that costs nothing never waits, with or without a lease."""
    source = leased()
    assert 0.0 == source.reserve(10.0, 0)


def test_a_retired_limiter_gives_back_all_it_holds_and_asks_for_nothing() -> None:
    """retire(): the next cut returns every unreserved unit (due or not) and the credit;
    units already reserved stay charged; it asks for nothing, hungry or not."""
    source = leased(RateLimit(100, per=1, max_wait=1.0))
    source.install(10.0, granted=50, base=10.0)  # units due from 10.01 to 10.5
    assert 0.01 == pytest.approx(source.reserve(10.0))
    assert 0.02 == pytest.approx(source.reserve(10.0))
    source.settle(10.0, estimated=1.0, actual=0.5, turn=source.last_turn)  # half a unit back
    source.reserve(10.0, cost=1000)  # refused: hungry
    source.retire()
    assert source.retired
    given, want, hungry, recovering = source.cut(10.0)
    assert (48.5, 0.0, 0.0, False) == (pytest.approx(given), want, hungry, recovering)
    assert 0.0 == source.available(10.5)
    assert (0.0, 0.0, 0.0, False) == source.cut(10.1)  # nothing more to give
    source.unsent(48.5)  # its tick failed: given back again at the next one
    assert 48.5 == pytest.approx(source.cut(10.2)[0])
