"""The breaker state machine, driven with explicit `now` values (h11's test_state habit)."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from policies import (
    REJECTED,
    TRANSITIONS,
    Breaker,
    BreakHistory,
    IllegalTransition,
    State,
    Transition,
)


def snapshot(machine: Any) -> tuple[Any, ...]:
    return (
        machine.state,
        machine.epoch,
        machine.since,
        machine.open_until,
        machine.break_duration,
        machine.openings,
        machine.consecutive_failures,
        tuple(machine.transitions),
    )


def fail(machine: Any, now: float) -> None:
    machine.on_outcome(machine.acquire(now), now, failed=True)


def test_consecutive_mode_opens_at_exactly_the_threshold() -> None:
    """failure_threshold=3: two failures and a success keep it closed; three in a row open it."""
    machine = Breaker(failure_threshold=3, break_duration=10.0).machine(0.0)
    fail(machine, 1.0)
    fail(machine, 1.0)
    machine.on_success(machine.acquire(1.0), 1.0)
    fail(machine, 2.0)
    fail(machine, 2.0)
    assert State.CLOSED == machine.state
    fail(machine, 3.0)
    assert (State.OPEN, 13.0) == (machine.state, machine.open_until)


def test_ratio_mode_opens_at_or_above_the_ratio_once_throughput_is_met() -> None:
    """5 failures in 10 calls with ratio 0.5 opens (at, not only above); 4 in 10 does not."""
    for failures, expected in ((5, State.OPEN), (4, State.CLOSED)):
        machine = Breaker(failure_ratio=0.5, min_throughput=10, sampling=60.0).machine(0.0)
        for i in range(10):
            machine.on_outcome(machine.acquire(1.0), 1.0, failed=i >= 10 - failures)
        assert expected == machine.state
    machine = Breaker(failure_ratio=0.5, min_throughput=10).machine(0.0)
    for _ in range(9):
        fail(machine, 1.0)
    assert State.CLOSED == machine.state  # 100% failures, but below min_throughput


def test_ratio_window_forgets_old_calls() -> None:
    """Failures older than `sampling` seconds leave the window."""
    machine = Breaker(failure_ratio=0.5, min_throughput=4, sampling=10.0).machine(0.0)
    for _ in range(3):
        fail(machine, 0.0)
    for _ in range(3):
        machine.on_success(machine.acquire(12.0), 12.0)
    fail(machine, 12.0)  # 1 of 4 in the window: the three old failures are gone
    assert State.CLOSED == machine.state


def test_open_rejects_then_turns_half_open_lazily_at_the_break_end() -> None:
    """Open: REJECTED with retry_after counting down; at open_until the next acquire probes."""
    machine = Breaker(failure_threshold=1, break_duration=30.0).machine(0.0)
    fail(machine, 100.0)
    assert (REJECTED, 20.0) == (machine.acquire(110.0), machine.retry_after(110.0))
    assert State.OPEN == machine.state  # nothing happens without a call
    epoch = machine.acquire(130.0)
    assert epoch >= 0
    assert State.HALF_OPEN == machine.state
    assert 0.0 == machine.retry_after(130.0)


def test_half_open_admits_exactly_the_probes() -> None:
    """half_open_probes=2: two permits, then REJECTED; a cancelled probe gives its permit back."""
    machine = Breaker(failure_threshold=1, half_open_probes=2, success_threshold=2).machine(0.0)
    machine.force_half_open(0.0)
    first, second = machine.acquire(0.0), machine.acquire(0.0)
    assert REJECTED not in (first, second)
    assert REJECTED == machine.acquire(0.0)
    machine.on_cancel(first)
    third = machine.acquire(0.0)
    assert REJECTED != third
    machine.on_success(second, 1.0)
    assert State.HALF_OPEN == machine.state  # success_threshold=2
    machine.on_success(third, 2.0)
    assert State.CLOSED == machine.state


def test_failed_probe_reopens_and_grows_the_break() -> None:
    """A failed probe reopens with openings + 1; closing resets openings."""
    machine = Breaker(failure_threshold=1, break_duration=lambda h: 10.0 * h.openings).machine(0.0)
    fail(machine, 0.0)
    assert (1, 10.0) == (machine.openings, machine.break_duration)
    fail(machine, 10.0)  # the probe
    assert (State.OPEN, 2, 20.0, 30.0) == (
        machine.state,
        machine.openings,
        machine.break_duration,
        machine.open_until,
    )
    machine.on_success(machine.acquire(30.0), 30.0)
    assert (State.CLOSED, 0) == (machine.state, machine.openings)


def test_late_outcomes_change_nothing() -> None:
    """Outcomes of permits from an older epoch cannot reopen, extend, or transition."""
    machine = Breaker(failure_threshold=1, break_duration=30.0).machine(0.0)
    stale = [machine.acquire(0.0) for _ in range(3)]
    machine.on_outcome(stale[0], 1.0, failed=True)
    before = snapshot(machine)
    machine.on_outcome(stale[1], 5.0, failed=True)
    machine.on_success(stale[2], 6.0)
    machine.on_cancel(stale[2])
    assert before == snapshot(machine)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", ["isolate", "force_half_open", "reset"])
def test_manual_moves_follow_the_table_or_raise_and_change_nothing(
    state: State, event: str
) -> None:
    """Every legal manual move lands where TRANSITIONS says; every illegal one raises."""
    machine = Breaker(failure_threshold=1).machine(0.0)
    if state is State.OPEN:
        fail(machine, 0.0)
    elif state is State.HALF_OPEN:
        machine.force_half_open(0.0)
    elif state is State.ISOLATED:
        machine.isolate(0.0)
    assert state == machine.state
    target = TRANSITIONS.get((state, event))
    if target is None:
        before = snapshot(machine)
        with pytest.raises(
            IllegalTransition, match=f"^cannot {event} a breaker that is {state.value}$"
        ):
            getattr(machine, event)(5.0)
        assert before == snapshot(machine)
    else:
        transition = getattr(machine, event)(5.0)
        assert (target, state, "manual") == (
            transition.target,
            transition.source,
            transition.reason,
        )
        assert target == machine.state


def test_isolated_retry_after_is_infinite() -> None:
    """Isolated: REJECTED forever, retry_after inf."""
    machine = Breaker().machine(0.0)
    machine.isolate(0.0, "maintenance")
    assert (REJECTED, math.inf) == (machine.acquire(1e9), machine.retry_after(1e9))


def test_raising_break_duration_leaves_the_machine_unchanged() -> None:
    """User code runs before any mutation: if it raises, nothing changed."""

    def broken(history: BreakHistory) -> float:
        raise ZeroDivisionError

    machine = Breaker(failure_threshold=1, break_duration=broken).machine(0.0)
    epoch = machine.acquire(0.0)
    before = snapshot(machine)
    with pytest.raises(ZeroDivisionError):
        machine.on_outcome(epoch, 1.0, failed=True)
    assert before == snapshot(machine)


@pytest.mark.parametrize(
    ("value", "error", "rule"),
    [
        (True, TypeError, "a number of seconds"),
        ("5", TypeError, "a number of seconds"),
        (-1.0, ValueError, "seconds >= 0"),
        (math.nan, ValueError, "seconds >= 0"),
    ],
)
def test_bad_break_duration_results_are_rejected(
    value: object, error: type[Exception], rule: str
) -> None:
    """A break duration returning a non-number or a negative/NaN raises, changing nothing."""
    machine = Breaker(failure_threshold=1, break_duration=lambda h: value).machine(0.0)  # type: ignore[arg-type, return-value]
    epoch = machine.acquire(0.0)
    before = snapshot(machine)
    message = (
        f"break_duration {machine.config.break_duration!r} returned {value!r};"
        f" it must return {rule}"
    )
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        machine.on_outcome(epoch, 1.0, failed=True)
    assert before == snapshot(machine)


def test_listener_sees_each_transition_once() -> None:
    """The listener is called once per transition with the record the machine keeps."""
    seen: list[Transition] = []
    machine = Breaker(failure_threshold=1, break_duration=5.0).machine(0.0, seen.append, epoch=7)
    assert 7 == machine.epoch
    fail(machine, 1.0)
    machine.on_success(machine.acquire(6.0), 6.0)
    assert [
        Transition(
            at=1.0,
            source=State.CLOSED,
            target=State.OPEN,
            reason="consecutive_failures",
            break_duration=5.0,
        ),
        Transition(at=6.0, source=State.OPEN, target=State.HALF_OPEN, reason="break_elapsed"),
        Transition(at=6.0, source=State.HALF_OPEN, target=State.CLOSED, reason="probes_succeeded"),
    ] == seen
    assert seen == list(machine.transitions)


def test_record_and_ignore() -> None:
    """ignore wins over record; exceptions outside record count as successes."""
    config = Breaker(record=(ConnectionError,), ignore=(ConnectionResetError,))
    assert (True, False, None) == (
        config.is_failure(ConnectionError()),
        config.is_failure(KeyError()),
        config.is_failure(ConnectionResetError()),
    )


def test_quiet_hint_is_exact() -> None:
    """`quiet` is True exactly when a success report would change nothing."""
    machine = Breaker(failure_threshold=3).machine(0.0)
    assert machine.quiet
    fail(machine, 0.0)
    assert not machine.quiet
    machine.on_success(machine.acquire(0.0), 0.0)
    assert machine.quiet
    assert not Breaker(failure_ratio=0.5).machine(0.0).quiet  # the window records successes


def succeed(machine: Any, now: float) -> None:
    machine.on_success(machine.acquire(now), now)


def test_ratio_mode_decides_on_a_success_that_reaches_min_throughput() -> None:
    """F, F, F, S, S with min_throughput=5, ratio 0.5: the fifth call (a success) opens at 60 %."""
    seen: list[Transition] = []
    machine = Breaker(
        failure_ratio=0.5, min_throughput=5, sampling=60.0, break_duration=7.0
    ).machine(0.0, seen.append)
    for _ in range(3):
        fail(machine, 1.0)
    succeed(machine, 2.0)
    assert State.CLOSED == machine.state  # 4 calls: below min_throughput
    succeed(machine, 3.0)
    assert [
        Transition(
            at=3.0,
            source=State.CLOSED,
            target=State.OPEN,
            reason="failure_ratio",
            break_duration=7.0,
        )
    ] == seen
    assert (State.OPEN, 0, 10.0) == (
        machine.state,
        machine.consecutive_failures,
        machine.open_until,
    )


def test_ratio_mode_a_success_below_the_ratio_keeps_it_closed() -> None:
    """F, F, S, S, S with min_throughput=5, ratio 0.5: 40 % at the fifth call stays closed."""
    machine = Breaker(failure_ratio=0.5, min_throughput=5, sampling=60.0).machine(0.0)
    for _ in range(2):
        fail(machine, 1.0)
    for _ in range(3):
        succeed(machine, 2.0)
    assert (State.CLOSED, (5, 2)) == (machine.state, machine._window.counts(2.0))


def test_a_success_opens_once_old_successes_leave_the_window() -> None:
    """Old successes expiring raise the ratio; the next success sees it and opens."""
    machine = Breaker(failure_ratio=0.6, min_throughput=4, sampling=10.0).machine(0.0)
    for _ in range(3):
        succeed(machine, 0.0)
    for _ in range(3):
        fail(machine, 5.0)
    assert State.CLOSED == machine.state  # 3 of 6: 50 %
    succeed(machine, 11.5)  # the three successes at 0 are gone: 3 of 4, 75 %
    assert (State.OPEN, "failure_ratio") == (machine.state, machine.transitions[-1].reason)


def test_a_failure_counts_for_a_success_until_it_leaves_the_window() -> None:
    """A failure at 0 is still in a 10 s window at 10.99 (whole slices), so the success opens."""
    machine = Breaker(failure_ratio=0.5, min_throughput=2, sampling=10.0).machine(0.0)
    fail(machine, 0.0)
    succeed(machine, 10.99)
    assert State.OPEN == machine.state
    machine = Breaker(failure_ratio=0.5, min_throughput=2, sampling=10.0).machine(0.0)
    fail(machine, 0.0)
    succeed(machine, 11.0)  # the failure's slice has left: 0 of 1
    assert (State.CLOSED, (1, 0)) == (machine.state, machine._window.counts(11.0))


def test_a_success_that_would_trip_runs_the_break_duration_before_changing_anything() -> None:
    """Rule 5 on the success path: a raising break duration leaves state and window as they were."""

    def broken(history: BreakHistory) -> float:
        raise ZeroDivisionError

    machine = Breaker(
        failure_ratio=0.5, min_throughput=2, sampling=10.0, break_duration=broken
    ).machine(0.0)
    fail(machine, 0.0)
    epoch = machine.acquire(1.0)
    before = (snapshot(machine), machine._window.counts(1.0))
    with pytest.raises(ZeroDivisionError):
        machine.on_success(epoch, 1.0)
    assert before == (snapshot(machine), machine._window.counts(1.0))


def test_a_retired_breaker_changes_but_tells_nobody() -> None:
    """A replaced breaker (reconfigure, crash restart) still takes the outcomes of calls it
    admitted, but publishes no transition: it guards nothing (issue 16's third drift)."""
    heard: list[object] = []
    machine = Breaker(failure_threshold=1).machine(0.0, heard.append)
    epoch = machine.acquire(0.0)
    machine.retire()
    machine.on_outcome(epoch, 1.0, failed=True)
    assert (machine.state, heard) == (State.OPEN, [])
