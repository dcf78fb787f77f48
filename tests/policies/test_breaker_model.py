"""Property test: the breaker against a tiny reference model, over random operation sequences."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies import REJECTED, TRANSITIONS, Breaker, State

# "call_ok" and "call_fail" acquire and report at once (listed twice: a success that trips
# the ratio breaker needs a run of calls, which separate acquires and outcomes rarely make).
operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["acquire", "succeed", "fail", "cancel", "wait", "isolate", "reset"]
            + ["call_ok", "call_fail"] * 2
        ),
        st.integers(min_value=0, max_value=7),
    ),
    max_size=120,
)

SAMPLING = 10.0


class Model:
    """
    The rules, written the plain way.

    Consecutive mode (``ratio is None``): ``threshold`` failures in a row open. Ratio mode: every
    outcome while closed is logged; after each one, if the log holds at least ``threshold``
    calls from the last ``SAMPLING`` seconds (inclusive: times are whole seconds, and the
    window keeps whole one-second slices) and failures / calls >= ``ratio``, it opens.
    """

    def __init__(
        self, threshold: int, ratio: float | None, probes: int, needed: int, pause: float
    ) -> None:
        self.threshold, self.ratio = threshold, ratio
        self.probes, self.needed, self.pause = probes, needed, pause
        self.state = "closed"
        self.failures = 0
        self.log: list[tuple[float, bool]] = []
        self.in_probe = 0
        self.successes = 0
        self.until = 0.0
        self.epoch = 0

    def move(self, state: str) -> None:
        self.state, self.epoch, self.in_probe, self.successes = state, self.epoch + 1, 0, 0
        if state == "closed":
            self.failures = 0
            self.log = []

    def acquire(self, now: float) -> int:
        if self.state == "closed":
            return self.epoch
        if self.state == "open" and now >= self.until:
            self.move("half_open")
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
                self.move("open")
                self.until = now + self.pause
        elif self.state == "half_open":
            self.in_probe -= 1
            if failed:
                self.failures += 1
                self.move("open")
                self.until = now + self.pause
            else:
                self.failures = 0
                self.successes += 1
                if self.successes >= self.needed:
                    self.move("closed")

    def cancel(self, epoch: int) -> None:
        if epoch == self.epoch and self.state == "half_open":
            self.in_probe -= 1


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
def test_breaker_matches_the_model(
    ops: list[tuple[str, int]], threshold: int, ratio: float | None, probes: int, needed: int
) -> None:
    """Any sequence of calls, outcomes, waits and manual moves, either mode: machine == model."""
    seen: list[tuple[State, State]] = []
    if ratio is None:
        config = Breaker(
            failure_threshold=threshold,
            half_open_probes=probes,
            success_threshold=needed,
            break_duration=5.0,
        )
    else:
        config = Breaker(
            failure_ratio=ratio,
            min_throughput=threshold,
            sampling=SAMPLING,
            half_open_probes=probes,
            success_threshold=needed,
            break_duration=5.0,
        )
    machine = config.machine(0.0, lambda t: seen.append((t.source, t.target)))
    model = Model(threshold, ratio, probes, needed, 5.0)
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
        elif op == "isolate" and machine.state is not State.ISOLATED:
            machine.isolate(now)
            model.move("isolated")
        elif op == "reset":
            machine.reset(now)
            model.move("closed")
        assert model.state == machine.state
        assert model.epoch == machine.epoch
        assert model.failures == machine.consecutive_failures
        assert machine.retry_after(now) >= 0.0
    assert all(
        (source, event_target) in {(s, t) for (s, _e), t in TRANSITIONS.items()}
        for source, event_target in seen
    )
