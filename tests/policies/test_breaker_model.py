"""Property test: the breaker against a tiny reference model, over random operation sequences."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies import REJECTED, Breaker, BreakHistory, IllegalTransition, State, Transition

# "call_ok" and "call_fail" acquire and report at once (listed twice: a success that trips
# the ratio breaker needs a run of calls, which separate acquires and outcomes rarely make).
operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["acquire", "succeed", "fail", "cancel", "wait", "isolate", "reset", "force"]
            + ["call_ok", "call_fail"] * 2
        ),
        st.integers(min_value=0, max_value=7),
    ),
    max_size=120,
)

SAMPLING = 10.0
LEGAL = {
    "isolate": {"closed", "open", "half_open"},
    "reset": {"closed", "open", "half_open", "isolated"},
    "force": {"closed", "open", "isolated"},
}


def pause(history: BreakHistory) -> float:
    """The model's break duration: grows with openings, so openings and timing both matter."""
    return 5.0 * history.openings


class Model:
    """
    The rules, written the plain way.

    Consecutive mode (``ratio is None``): ``threshold`` failures in a row open. Ratio mode: every
    outcome while closed is logged; after each one, if the log holds at least ``threshold``
    calls from the last ``SAMPLING`` seconds (inclusive: times are whole seconds, and the
    window keeps whole one-second slices) and failures / calls >= ``ratio``, it opens.
    """

    def __init__(self, threshold: int, ratio: float | None, probes: int, needed: int) -> None:
        self.threshold, self.ratio, self.probes, self.needed = threshold, ratio, probes, needed
        self.state = "closed"
        self.failures = 0
        self.log: list[tuple[float, bool]] = []
        self.in_probe = 0
        self.successes = 0
        self.until = 0.0
        self.epoch = 0
        self.since = 0.0
        self.closed_since = 0.0
        self.openings = 0
        self.duration: float | None = None
        self.histories: list[BreakHistory] = []
        self.transitions: list[Transition] = []

    def move(self, state: str, now: float, reason: str) -> None:
        self.transitions.append(
            Transition(
                at=now,
                source=State(self.state),
                target=State(state),
                reason=reason,
                break_duration=self.duration if state == "open" else None,
            )
        )
        self.state, self.epoch, self.in_probe, self.successes = state, self.epoch + 1, 0, 0
        self.since = now
        if state == "closed":
            self.failures = 0
            self.log = []
            self.openings = 0
            self.closed_since = now

    def open(self, now: float, reason: str) -> None:
        history = BreakHistory(
            openings=self.openings + 1,
            previous=self.duration,
            closed_for=None if reason == "probe_failed" else now - self.closed_since,
        )
        self.histories.append(history)
        self.openings += 1
        self.duration = pause(history)
        self.until = now + self.duration
        self.move("open", now, reason)

    def acquire(self, now: float) -> int:
        if self.state == "closed":
            return self.epoch
        if self.state == "open" and now >= self.until:
            self.move("half_open", now, "break_elapsed")
        if self.state == "half_open" and self.in_probe < self.probes:
            self.in_probe += 1
            return self.epoch
        return -1

    def trips(self, now: float) -> bool:
        if self.ratio is None:
            return self.failures >= self.threshold
        recent = [failed for at, failed in self.log if now - at <= SAMPLING]
        return len(recent) >= self.threshold and sum(recent) >= self.ratio * len(recent)

    def outcome(self, epoch: int, now: float, failed: bool) -> None:
        if epoch != self.epoch:
            return
        if self.state == "closed":
            self.failures = self.failures + 1 if failed else 0
            self.log.append((now, failed))
            if self.trips(now):
                self.open(now, "consecutive_failures" if self.ratio is None else "failure_ratio")
        elif self.state == "half_open":
            self.in_probe -= 1
            if failed:
                self.failures += 1
                self.open(now, "probe_failed")
            else:
                self.failures = 0
                self.successes += 1
                if self.successes >= self.needed:
                    self.move("closed", now, "probes_succeeded")

    def cancel(self, epoch: int) -> None:
        if epoch == self.epoch and self.state == "half_open":
            self.in_probe -= 1

    def retry_after(self, now: float) -> float:
        if self.state == "open":
            return max(0.0, self.until - now)
        return math.inf if self.state == "isolated" else 0.0

    def quiet(self) -> bool:
        return self.ratio is None and self.state == "closed" and self.failures == 0


def report(machine: Any, model: Model, epoch: int, now: float, *, failed: bool) -> None:
    if failed:
        machine.on_outcome(epoch, now, failed=True)
    elif not machine.quiet:  # the runtime skips the report while quiet: it must hide nothing
        machine.on_success(epoch, now)
    model.outcome(epoch, now, failed)


@settings(max_examples=1000, deadline=None)
@given(
    ops=operations,
    threshold=st.integers(1, 5),
    ratio=st.sampled_from([None, None, 0.25, 0.5, 0.6, 1.0]),
    probes=st.integers(1, 3),
    needed=st.integers(1, 3),
)
# F, F, F, S, S at min_throughput=5: the last success opens (issue 8).
@example(
    ops=[("call_fail", 0)] * 3 + [("call_ok", 0)] * 2,
    threshold=5,
    ratio=0.5,
    probes=1,
    needed=1,
)
# Old successes leave the window; the next success sees 3 failures in 4 calls.
@example(
    ops=[("call_ok", 0)] * 3
    + [("wait", 5)]
    + [("call_fail", 0)] * 3
    + [("wait", 6), ("call_ok", 0)],
    threshold=4,
    ratio=0.6,
    probes=1,
    needed=1,
)
# Open, probe, fail the probe, wait, probe twice with two probes allowed, close.
@example(
    ops=[
        *[("call_fail", 0), ("wait", 5), ("call_fail", 0), ("wait", 7), ("wait", 3)],
        *[("acquire", 0), ("acquire", 0), ("acquire", 0), ("cancel", 0), ("acquire", 0)],
        *[("succeed", 0), ("succeed", 0), ("call_fail", 0), ("call_fail", 0)],
    ],
    threshold=1,
    ratio=None,
    probes=2,
    needed=2,
)
# A probe success with another still needed frees exactly one probe slot.
@example(
    ops=[
        ("call_fail", 0),
        ("wait", 7),
        ("acquire", 0),
        ("acquire", 0),
        ("succeed", 0),
        ("acquire", 0),
        ("acquire", 0),
    ],
    threshold=1,
    ratio=None,
    probes=1,
    needed=2,
)
# A cancelled probe frees exactly one slot; a stale permit's cancel frees none.
@example(
    ops=[
        ("acquire", 0),
        ("acquire", 0),
        ("call_fail", 0),
        ("wait", 7),
        ("acquire", 0),
        ("cancel", 0),
        ("acquire", 0),
        ("acquire", 0),
        ("cancel", 5),
        ("acquire", 0),
        ("acquire", 0),
    ],
    threshold=1,
    ratio=None,
    probes=1,
    needed=1,
)
@example(
    ops=[
        ("call_fail", 0),
        ("wait", 7),
        ("acquire", 0),
        ("acquire", 0),
        ("cancel", 0),
        ("acquire", 0),
        ("acquire", 0),
    ],
    threshold=1,
    ratio=None,
    probes=2,
    needed=1,
)
def test_breaker_matches_the_model(
    ops: list[tuple[str, int]], threshold: int, ratio: float | None, probes: int, needed: int
) -> None:
    """Any sequence of calls, outcomes, waits and manual moves, either mode: machine == model."""
    seen: list[Transition] = []
    histories: list[BreakHistory] = []

    def recorded(history: BreakHistory) -> float:
        histories.append(history)
        return pause(history)

    if ratio is None:
        config = Breaker(
            failure_threshold=threshold,
            half_open_probes=probes,
            success_threshold=needed,
            break_duration=recorded,
        )
    else:
        config = Breaker(
            failure_ratio=ratio,
            min_throughput=threshold,
            sampling=SAMPLING,
            half_open_probes=probes,
            success_threshold=needed,
            break_duration=recorded,
        )
    machine = config.machine(0.0, seen.append)
    model = Model(threshold, ratio, probes, needed)
    now = 0.0
    permits: list[int] = []
    for op, arg in ops:
        if op == "wait":
            now += arg
        elif op == "acquire":
            got, expected = machine.acquire(now), model.acquire(now)
            assert expected == (got if got != REJECTED else -1)
            if got != REJECTED:
                permits.append(got)
        elif op in ("succeed", "fail", "cancel") and permits:
            epoch = permits.pop(arg % len(permits))
            if op == "cancel":
                machine.on_cancel(epoch)
                model.cancel(epoch)
            else:
                report(machine, model, epoch, now, failed=op == "fail")
        elif op in ("call_ok", "call_fail"):
            got, expected = machine.acquire(now), model.acquire(now)
            assert expected == (got if got != REJECTED else -1)
            if got != REJECTED:
                report(machine, model, got, now, failed=op == "call_fail")
        elif op in LEGAL:
            method = {"isolate": machine.isolate, "reset": machine.reset}.get(
                op, machine.force_half_open
            )
            if model.state in LEGAL[op]:
                target = {"isolate": "isolated", "reset": "closed", "force": "half_open"}[op]
                returned = method(now)
                model.move(target, now, "manual")
                assert model.transitions[-1] == returned
            else:
                with pytest.raises(IllegalTransition):
                    method(now)
        assert model.state == machine.state
        assert model.epoch == machine.epoch
        assert model.failures == machine.consecutive_failures
        assert model.retry_after(now) == machine.retry_after(now)
        assert model.quiet() == machine.quiet
        assert (model.since, model.openings, model.duration) == (
            machine.since,
            machine.openings,
            machine.break_duration,
        )
        if model.state == "open":
            assert model.until == machine.open_until
    assert model.histories == histories
    assert model.transitions == seen
    assert model.transitions[-32:] == list(machine.transitions)
