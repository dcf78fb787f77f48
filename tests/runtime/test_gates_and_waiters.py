"""
Two objects an actor owns, tested with no actor around (issue 17): its gates
(``supervisor._gates.Gates``: the pause and the shared verdict, on an injected clock) and its
queued calls (``supervisor._waiters.Waiters``: who waits for a slot, who is next, who is
displaced, with recording signals in place of a backend's).
"""

from __future__ import annotations

from typing import Any

import pytest

from policies.priority import Priority
from supervisor._errors import BreakerOpen, BulkheadFull, SupervisorClosed, SupervisorError
from supervisor._events import CallRejected, DependencyPaused
from supervisor._gates import Gates
from supervisor._ledger import Ledger
from supervisor._waiters import Waiters


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Told:
    """The events published, and how often the owner was told to re-derive."""

    def __init__(self) -> None:
        self.events: list[tuple[type, dict[str, Any]]] = []
        self.changed = 0

    def publish(self, event_type: type, at: float | None = None, **fields: Any) -> None:
        self.events.append((event_type, fields))

    def change(self) -> None:
        self.changed += 1

    def of(self, event_type: type) -> list[dict[str, Any]]:
        return [fields for kind, fields in self.events if kind is event_type]


def _gates() -> tuple[Gates, _Clock, _Told, Ledger]:
    clock, told, ledger = _Clock(), _Told(), Ledger()
    gates = Gates("llm", ledger, told.publish, told.change)
    gates.attach(clock)
    return gates, clock, told, ledger


def test_a_pause_only_ever_lengthens() -> None:
    gates, clock, told, _ = _gates()
    gates.pause(5.0)
    clock.now = 1.0
    gates.pause(3.0)  # ends at 4.0, inside the pause: nothing changes
    assert (5.0, 1, 1) == (gates.paused_until, told.changed, len(told.of(DependencyPaused)))
    gates.pause(10.0, source="cluster")
    assert (11.0, 2) == (gates.paused_until, told.changed)
    assert ["local", "cluster"] == [fields["source"] for fields in told.of(DependencyPaused)]
    assert (True, True, True) == (gates.down(), gates.paused(), gates.shut(10.9))
    clock.now = 11.0
    assert (False, False) == (gates.paused(), gates.shut(11.0))
    assert gates.down()  # until admission finds it over
    gates.end_pause()
    assert (None, False, 3) == (gates.paused_until, gates.down(), told.changed)


def test_a_pauses_rejections_are_all_counted_and_its_first_told() -> None:
    gates, _, told, ledger = _gates()
    gates.pause(5.0)
    errors = [gates.reject_paused(5.0), gates.reject_paused(4.0)]
    assert [5.0, 4.0] == [error.retry_after for error in errors]
    assert ({"paused": 2}, 1) == (ledger.rejected_by, len(told.of(CallRejected)))
    gates.end_pause()
    gates.pause(5.0)
    gates.reject_paused(5.0)  # a new pause's first rejection: told again
    assert ({"paused": 3}, 2) == (ledger.rejected_by, len(told.of(CallRejected)))


def test_a_shared_verdict_refuses_until_it_ends_then_lifts() -> None:
    gates, clock, told, ledger = _gates()
    gates.shared_open(2.0)
    assert (2.0, 1, True) == (gates.forced_until, told.changed, gates.down())
    clock.now = 0.5
    with pytest.raises(BreakerOpen) as raised:
        gates.check_forced()
    with pytest.raises(BreakerOpen):
        gates.check_forced()
    assert (1.5, {"shared_open": 2}) == (raised.value.retry_after, ledger.rejected_by)
    clock.now = 2.0
    gates.check_forced()  # over: lifted, and the call goes on
    assert (None, False, 2) == (gates.forced_until, gates.down(), told.changed)
    gates.shared_open(60.0)
    gates.shared_open(None)  # lifted early
    assert (None, 4) == (gates.forced_until, told.changed)


def test_the_snapshot_reports_only_gates_still_down() -> None:
    gates, clock, _, _ = _gates()
    gates.pause(5.0)
    gates.shared_open(2.0)
    clock.now = 1.0
    assert {"paused_until": 5.0, "pause_remaining": 4.0, "shared_open_until": 2.0} == (
        gates.fields(clock.now)
    )
    clock.now = 5.0
    assert {"paused_until": None, "pause_remaining": 0.0, "shared_open_until": None} == (
        gates.fields(clock.now)
    )


# -- the queued calls -------------------------------------------------------------------------


class _Waiter:
    def __init__(self) -> None:
        self.granted = False
        self.error: SupervisorError | None = None


def _waiters() -> tuple[Waiters, list[_Waiter]]:
    woken: list[_Waiter] = []
    waiters = Waiters()
    waiters.attach((_Waiter, woken.append, lambda waiter: waiter))
    return waiters, woken


def test_the_next_slot_goes_to_the_oldest_of_the_highest_level() -> None:
    waiters, woken = _waiters()
    low, first, second = (
        waiters.join(Priority.SHEDDABLE),
        waiters.join(Priority.DEFAULT),
        waiters.join(Priority.DEFAULT),
    )
    waiters.grant_next()
    waiters.grant_next()
    assert ([first, second], [True, True, False]) == (
        woken,
        [first.granted, second.granted, low.granted],
    )
    assert [low] == list(waiters.queue)


def test_a_waiter_that_leaves_passes_on_a_slot_it_was_granted() -> None:
    waiters, _ = _waiters()
    granted, waiting = waiters.join(Priority.DEFAULT), waiters.join(Priority.DEFAULT)
    waiters.grant_next()
    assert (True, False) == (waiters.leave(granted), waiters.leave(waiting))
    assert not waiters.queue
    failed = waiters.join(Priority.DEFAULT)
    waiters.fail_all(lambda: BreakerOpen("llm", 1.0, "open"), "breaker_open")
    assert not waiters.leave(failed)  # woken to an error: no slot to pass on
    assert waiters.refused(failed) is None  # ...and, cancelled first, no refusal to count


def test_a_full_queue_displaces_the_newest_of_a_lower_level_only() -> None:
    waiters, woken = _waiters()
    old, new = waiters.join(Priority.SHEDDABLE), waiters.join(Priority.SHEDDABLE)
    waiters.join(Priority.DEFAULT)
    levels: list[int] = []

    def full(level: int) -> BulkheadFull:
        levels.append(level)
        return BulkheadFull("llm", 1, 3, None)

    assert not waiters.displace(Priority.SHEDDABLE, full)  # nobody below it waits
    assert waiters.displace(Priority.CRITICAL, full)
    assert ([new], [Priority.SHEDDABLE], True) == (
        woken,
        levels,
        isinstance(new.error, BulkheadFull),
    )
    assert [old, Priority.DEFAULT] == [next(iter(waiters.queue)), max(waiters.queue.values())]
    assert new not in waiters.queue
    # counted as the displaced call resumes with its error, once
    assert [("bulkhead_full", Priority.SHEDDABLE), None] == [
        waiters.refused(new),
        waiters.refused(new),
    ]


def test_failing_the_queue_wakes_every_waiter_with_an_error_of_its_own() -> None:
    waiters, woken = _waiters()
    queued = [waiters.join(Priority.DEFAULT), waiters.join(Priority.CRITICAL)]
    waiters.fail_all(lambda: SupervisorClosed("bye"), None)
    assert (queued, False) == (woken, bool(waiters.queue))
    assert [None, None] == [waiters.refused(waiter) for waiter in queued]  # shutdown: uncounted
    assert queued[0].error is not queued[1].error
    assert all(isinstance(waiter.error, SupervisorClosed) for waiter in queued)
