"""Property test: the breaker against a tiny reference model, over random operation sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import REJECTED, TRANSITIONS, Breaker, State

operations = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "succeed", "fail", "cancel", "wait", "isolate", "reset"]),
        st.integers(min_value=0, max_value=7),
    ),
    max_size=120,
)


class Model:
    """The rules, written the plain way."""

    def __init__(self, threshold: int, probes: int, needed: int, pause: float) -> None:
        self.threshold, self.probes, self.needed, self.pause = threshold, probes, needed, pause
        self.state = "closed"
        self.failures = 0
        self.in_probe = 0
        self.successes = 0
        self.until = 0.0
        self.epoch = 0

    def move(self, state: str) -> None:
        self.state, self.epoch, self.in_probe, self.successes = state, self.epoch + 1, 0, 0
        if state == "closed":
            self.failures = 0

    def acquire(self, now: float) -> int:
        if self.state == "closed":
            return self.epoch
        if self.state == "open" and now >= self.until:
            self.move("half_open")
        if self.state == "half_open" and self.in_probe < self.probes:
            self.in_probe += 1
            return self.epoch
        return -1

    def outcome(self, epoch: int, now: float, failed: bool) -> None:
        if epoch != self.epoch:
            return
        if self.state == "closed":
            self.failures = self.failures + 1 if failed else 0
            if self.failures >= self.threshold:
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


@settings(max_examples=300, deadline=None)
@given(
    ops=operations,
    threshold=st.integers(1, 4),
    probes=st.integers(1, 3),
    needed=st.integers(1, 3),
)
def test_breaker_matches_the_model(
    ops: list[tuple[str, int]], threshold: int, probes: int, needed: int
) -> None:
    """Any sequence of calls, outcomes, waits and manual moves: machine == model."""
    seen: list[tuple[State, State]] = []
    machine = Breaker(
        failure_threshold=threshold,
        half_open_probes=probes,
        success_threshold=needed,
        break_duration=5.0,
    ).machine(0.0, lambda t: seen.append((t.source, t.target)))
    model = Model(threshold, probes, needed, 5.0)
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
                machine.on_outcome(epoch, now, failed=op == "fail")
                model.outcome(epoch, now, op == "fail")
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
