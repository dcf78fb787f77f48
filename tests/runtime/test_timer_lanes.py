"""
The timer queue's two lanes (``_timers.DeadlineHeap``, issue 18): deadlines that come in order
(one fixed ``Timeout.attempt``, one fixed ``slow_call``) go to a FIFO, any other to a heap, and
every attempt is still cut off (or counted slow) at exactly its own limit: when a reconfigure
changes the limit while attempts run, and when a call's total deadline comes before the
attempt timeout of attempts already queued.

The queue itself is tested on a fake loop (its clock and timers are the test's); the runtime,
on virtual time on both backends (trio's ``MockClock(autojump_threshold=0)``, asyncio on
:class:`~tests.runtime._virtual_loop.VirtualClockLoop`): on trio the cut-off is the attempt's
cancel scope and the queue holds the slow-call watches only.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from policies import Breaker, Retry, Timeout, backoff
from supervisor import AttemptTimeout, DeadlineExceeded, Supervisor
from supervisor._timers import DEADLINE, TIMEOUT, DeadlineHeap, Running

from ._virtual_loop import anyio_backend as anyio_backend  # both backends, virtual time
from .conftest import guard


class FakeLoop:
    """A loop whose clock the test moves, with its timers kept in a list (``run_until``)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> FakeTimer:
        timer = FakeTimer(when, callback)
        self.timers.append(timer)
        return timer

    def run_until(self, until: float) -> None:
        """Move the clock to *until*, running each timer due on the way at its own time."""
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= until]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            self.now = max(self.now, timer.when)
            timer.callback()
        self.now = until


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


def record(reason: int = TIMEOUT) -> Running:
    running = Running()
    running.task = None
    running.base = running.epoch = running.fired = 0
    running.delivered = running.done = running.keep_slot = running.slow = False
    running.reason, running.seconds = reason, 0.0
    return running


def queue() -> tuple[FakeLoop, DeadlineHeap, list[tuple[float, Running]]]:
    loop = FakeLoop()
    fired: list[tuple[float, Running]] = []

    def fire(running: Running, why: int) -> None:
        assert why == running.reason
        running.fired = why
        fired.append((loop.now, running))

    return loop, DeadlineHeap(loop, fire), fired


def test_in_order_deadlines_each_fire_at_their_own_time() -> None:
    loop, timers, fired = queue()
    a, b, c = record(), record(), record()
    for at, running in [(10.0, a), (11.0, b), (11.0, c)]:
        timers.push(at, running, 3)
    loop.run_until(10.5)
    assert fired == [(10.0, a)]
    loop.run_until(20.0)
    assert fired == [(10.0, a), (11.0, b), (11.0, c)]


def test_an_earlier_deadline_after_later_ones_fires_first_at_its_own_time() -> None:
    """A shortened limit, or a call's deadline, pushed behind longer limits: not behind them."""
    loop, timers, fired = queue()
    late, later, early = record(), record(), record(DEADLINE)
    timers.push(10.0, late, 1)
    timers.push(12.0, later, 2)
    loop.now = 1.0
    timers.push(3.0, early, 3)
    loop.run_until(9.0)
    assert fired == [(3.0, early)]
    loop.run_until(30.0)
    assert fired == [(3.0, early), (10.0, late), (12.0, later)]
    assert early.fired == DEADLINE


def test_in_order_again_once_the_queue_ran_dry() -> None:
    """After the longer deadlines passed, shorter ones queue in order again, exactly."""
    loop, timers, fired = queue()
    first, second = record(), record()
    timers.push(10.0, first, 1)
    loop.run_until(10.0)
    timers.push(12.0, second, 1)  # (10 + 2: a limit of 2 from now on)
    loop.run_until(11.9)
    assert fired == [(10.0, first)]
    loop.run_until(12.0)
    assert fired == [(10.0, first), (12.0, second)]


def test_finished_attempts_never_fire_and_do_not_pile_up() -> None:
    loop, timers, fired = queue()
    keep = record()
    timers.push(100.0, keep, 1)
    for i in range(1_000):
        ended = record()
        timers.push(100.0 + i, ended, 2)
        ended.done = True
    pending = [t for t in loop.timers if not t.cancelled]
    assert len(pending) == 1
    loop.run_until(2_000.0)
    assert fired == [(100.0, keep)]
    assert not loop.timers or all(t.cancelled for t in loop.timers)


def test_rebuilding_either_lane_keeps_every_live_deadline_once_at_its_own_time() -> None:
    """Many attempts end early, a few keep running, in both lanes (in-order limits, and
    earlier deadlines behind them): the lanes are rebuilt many times over, and each running
    attempt fires once, at its own deadline, in deadline order."""
    loop, timers, fired = queue()
    live: list[tuple[float, Running]] = []
    for i in range(2_000):
        loop.run_until(i * 0.01)
        in_order = i % 3 != 0  # a fixed limit of 50; every third, a deadline of 10
        running = record()
        at = loop.now + (50.0 if in_order else 10.0)
        timers.push(at, running, len(live) + 1)
        if i % 97 == 0:
            live.append((at, running))
        else:
            running.done = True
    assert len(live) == 21
    loop.run_until(1_000.0)
    assert sorted(live, key=lambda entry: entry[0]) == fired


def test_a_deadline_pushed_after_close_fires() -> None:
    """close() leaves nothing armed: the queue works again after it."""
    loop, timers, fired = queue()
    timers.push(5.0, record(), 1)
    timers.close()
    later = record()
    timers.push(10.0, later, 1)
    loop.run_until(100.0)
    assert fired == [(10.0, later)]


class Hangs:
    """A dependency whose calls hang (an event nobody sets); ``started`` counts them."""

    def __init__(self) -> None:
        self.started = 0
        self.never = anyio.Event()

    async def __call__(self) -> str:
        self.started += 1
        await self.never.wait()
        return "never"


async def timed(sup: Supervisor, out: dict[str, tuple[float, str]], key: str) -> None:
    """Call the dependency; *out[key]*: when the call ended (virtual time), with what error."""
    try:
        await sup.call("dep")
    except AttemptTimeout as exc:
        out[key] = (anyio.current_time(), f"AttemptTimeout({exc.timeout})")
    except DeadlineExceeded as exc:
        out[key] = (anyio.current_time(), f"DeadlineExceeded({exc.total})")


@pytest.mark.anyio
async def test_reconfigure_while_attempts_run_cuts_each_at_the_limit_it_started_with(
    sup: Supervisor,
) -> None:
    """
    Attempts timed by 10 s run; the limit becomes 2 s, then 20 s: each attempt is cut at its
    start plus its own limit, the 2 s one before the 10 s ones started earlier.
    """
    sup.register("dep", Hangs(), retry=Retry(attempts=1), timeout=Timeout(attempt=10.0))
    ended: dict[str, tuple[float, str]] = {}
    with guard(100):
        async with sup, anyio.create_task_group() as tg:
            start = anyio.current_time()
            tg.start_soon(timed, sup, ended, "a")  # at 0, limit 10: cut at 10
            await anyio.sleep(1.0)
            tg.start_soon(timed, sup, ended, "b")  # at 1, limit 10: cut at 11
            await anyio.sleep(1.0)
            await sup.reconfigure("dep", timeout=Timeout(attempt=2.0))
            tg.start_soon(timed, sup, ended, "c")  # at 2, limit 2: cut at 4
            await anyio.sleep(1.0)
            tg.start_soon(timed, sup, ended, "d")  # at 3, limit 2: cut at 5
            await anyio.sleep(3.0)
            await sup.reconfigure("dep", timeout=Timeout(attempt=20.0))
            tg.start_soon(timed, sup, ended, "e")  # at 6, limit 20: cut at 26
    at = {key: (round(t - start, 9), error) for key, (t, error) in ended.items()}
    assert at == {
        "a": (10.0, "AttemptTimeout(10.0)"),
        "b": (11.0, "AttemptTimeout(10.0)"),
        "c": (4.0, "AttemptTimeout(2.0)"),
        "d": (5.0, "AttemptTimeout(2.0)"),
        "e": (26.0, "AttemptTimeout(20.0)"),
    }
    assert dict(sup.status("dep").errors) == {"AttemptTimeout": 5}


@pytest.mark.anyio
async def test_a_deadline_before_queued_attempt_timeouts_cuts_at_the_deadline(
    sup: Supervisor,
) -> None:
    """
    Timeout(attempt=5, total=7): call A's retry at 5 is limited by A's deadline (7), earlier
    than call B's attempt (started at 3, limit 8) queued before it: A ends at 7
    (``DeadlineExceeded``), B's attempt is cut at 8, B's retry at B's own deadline, 10.
    """
    sup.register(
        "dep",
        Hangs(),
        retry=Retry(attempts=2, backoff=backoff.constant(0.0)),
        timeout=Timeout(attempt=5.0, total=7.0),
    )
    ended: dict[str, tuple[float, str]] = {}
    with guard(100):
        async with sup, anyio.create_task_group() as tg:
            start = anyio.current_time()
            tg.start_soon(timed, sup, ended, "a")
            await anyio.sleep(3.0)
            tg.start_soon(timed, sup, ended, "b")
    at = {key: (round(t - start, 9), error) for key, (t, error) in ended.items()}
    assert at == {"a": (7.0, "DeadlineExceeded(7.0)"), "b": (10.0, "DeadlineExceeded(7.0)")}
    status = sup.status("dep")
    assert dict(status.errors) == {"AttemptTimeout": 2}
    assert status.cut_off == 2  # the deadline cuts (an attempt timeout is an error)


@pytest.mark.anyio
async def test_a_shortened_slow_call_counts_the_new_calls_slow_at_their_own_time(
    sup: Supervisor,
) -> None:
    """
    Calls watched for ``slow_call=10`` run; it becomes 2: a call started after is counted
    slow (a failure to the breaker) 2 s after its start, before the earlier calls' 10 s.
    """
    sup.register("dep", Hangs(), breaker=Breaker(slow_call=10.0, failure_threshold=100))
    with guard(100):
        async with sup, anyio.create_task_group() as tg:
            start = anyio.current_time()
            tg.start_soon(sup.call, "dep")  # slow at 10
            await anyio.sleep(1.0)
            await sup.reconfigure("dep", breaker=Breaker(slow_call=2.0, failure_threshold=100))
            tg.start_soon(sup.call, "dep")  # at 1: slow at 3
            await anyio.sleep(1.9)
            assert sup.status("dep").failures == 0
            await anyio.sleep(0.2)  # 3.1
            assert sup.status("dep").failures == 1
            await anyio.sleep(6.8)  # 9.9: the first call is not slow yet
            assert sup.status("dep").failures == 1
            await anyio.sleep(0.2)  # 10.1
            assert sup.status("dep").failures == 2
            assert anyio.current_time() - start == pytest.approx(10.1)
            tg.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "policies",
    [
        {"timeout": Timeout(attempt=10.0)},
        {"timeout": Timeout(total=5.0)},
        {"breaker": Breaker(slow_call=10.0)},
    ],
    ids=["attempt timeout", "total deadline", "slow-call watch"],
)
async def test_a_running_attempts_record_has_every_field_set(
    sup: Supervisor, policies: dict[str, object]
) -> None:
    """``Running`` has no ``__init__``: the attempt sets each of its slots (a slot added and
    not set would raise only when a cut-off first reads it)."""
    gate = anyio.Event()
    reached = anyio.Event()

    async def waits() -> str:
        reached.set()
        await gate.wait()
        return "ok"

    sup.register("dep", waits, **policies)  # type: ignore[arg-type]
    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(sup.call, "dep")
            await reached.wait()
            (running,) = sup._actors["dep"]._running
            unset = [name for name in Running.__slots__ if not hasattr(running, name)]
            gate.set()
    assert unset == []
