"""
Hedging (issue 19): a second attempt after a delay, the first success wins.

Every test runs on virtual time on both backends: trio's ``MockClock(autojump_threshold=0)``
and asyncio on :class:`~tests.runtime._virtual_loop.VirtualClockLoop` (it jumps the same
way), so latencies are exact and nothing sleeps for real. The dependency's "latency" is an
``anyio.sleep`` on that virtual clock.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

import anyio
import pytest
from anyio.lowlevel import checkpoint

from policies import Breaker, Budget, Bulkhead, Hedge, Priority, RateLimit, Retry, Timeout
from supervisor import (
    AttemptTimeout,
    BreakerOpen,
    HedgeStarted,
    Supervisor,
    SupervisorClosed,
)

from ._virtual_loop import anyio_backend as anyio_backend  # both backends, virtual time
from .conftest import guard

pytestmark = pytest.mark.anyio


class Tail:
    """
    A dependency whose calls play a script, one step per call in the order they start: a
    number is the seconds it takes before answering ``(n, seconds)``; an exception (after
    ``("raise", seconds, exc)``) fails after that long. Records starts, ends and cancellations.
    """

    def __init__(self, *steps: object) -> None:
        self.script: deque[object] = deque(steps)
        self.started: list[float] = []
        self.cancelled: list[int] = []
        self.finished: list[int] = []
        self.entered = anyio.Event()  # set when the first call has started

    async def __call__(self, *args: Any) -> tuple[int, float]:
        n = len(self.started)
        self.started.append(anyio.current_time())
        self.entered.set()
        step = self.script.popleft() if self.script else 0.01
        try:
            if isinstance(step, tuple):
                _, seconds, error = step
                await anyio.sleep(seconds)
                raise error
            assert isinstance(step, int | float)
            await anyio.sleep(step)
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(n)
            raise
        self.finished.append(n)
        return n, step


async def test_the_hedge_wins_and_the_loser_counts_nothing(sup: Supervisor, each_path: str) -> None:
    """
    The attempt stalls (10 s); after 0.1 s a hedge starts and answers in 0.02 s: the call
    returns the hedge's answer at 0.12 s, the attempt is cancelled at once, and only the
    winner is counted (one call, no failure; the loser's slot is back).
    """
    tail = Tail(10.0, 0.02)
    sup.register("dep", tail, hedge=Hedge(delay=0.1), bulkhead=Bulkhead(max_concurrent=5))
    with guard():
        async with sup:
            start = anyio.current_time()
            assert (1, 0.02) == await sup.call("dep")
            took = anyio.current_time() - start
            status = sup.status("dep")
    assert math.isclose(took, 0.12, abs_tol=1e-6)
    assert ([0], [1]) == (tail.cancelled, tail.finished)
    assert math.isclose(tail.started[1] - tail.started[0], 0.1, abs_tol=1e-6)
    assert (1, 0, 1, 1, 0) == (
        status.calls,
        status.failures,
        status.hedges,
        status.hedge_wins,
        status.in_flight,
    )
    assert math.isclose(status.latency.p50 or 0.0, 0.02, abs_tol=1e-6)  # the winner's own


async def test_no_hedge_when_the_attempt_answers_in_time(sup: Supervisor) -> None:
    """An attempt that answers before the delay: no hedge, one call."""
    tail = Tail(0.05)
    sup.register("dep", tail, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            assert (0, 0.05) == await sup.call("dep")
            status = sup.status("dep")
    assert (1, 0, 0) == (len(tail.started), status.hedges, status.hedge_wins)


async def test_the_attempt_may_still_win_after_the_hedge_started(sup: Supervisor) -> None:
    """The attempt answers at 0.15 s, the hedge (started at 0.1 s) would at 0.6 s: cancelled."""
    tail = Tail(0.15, 0.5)
    sup.register("dep", tail, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            assert (0, 0.15) == await sup.call("dep")
            status = sup.status("dep")
    assert ([1], [0]) == (tail.cancelled, tail.finished)
    assert (1, 0, 1) == (status.hedges, status.hedge_wins, status.calls)


async def test_max_hedges_start_one_delay_apart(sup: Supervisor) -> None:
    """max_hedges=2: hedges at 0.1 s and 0.2 s; the second wins; both others cancelled."""
    tail = Tail(10.0, 10.0, 0.01)
    sup.register("dep", tail, hedge=Hedge(delay=0.1, max_hedges=2))
    events: list[HedgeStarted] = []
    with guard():
        async with sup:
            async with sup.events(HedgeStarted) as stream:
                assert (2, 0.01) == await sup.call("dep")
                events.extend([await stream.__anext__(), await stream.__anext__()])
            status = sup.status("dep")
    offsets = [round(t - tail.started[0], 6) for t in tail.started]
    assert [0.0, 0.1, 0.2] == offsets
    assert [0, 1] == sorted(tail.cancelled)
    assert (2, 1) == (status.hedges, status.hedge_wins)
    assert [(1, 1, 0.1), (1, 2, 0.1)] == [(e.attempt, e.hedge, e.delay) for e in events]


async def test_a_failure_while_another_runs_ends_nothing(sup: Supervisor) -> None:
    """The attempt fails at 0.15 s while the hedge runs: counted, and the hedge answers."""
    tail = Tail(("raise", 0.15, ConnectionError("reset")), 0.1)
    sup.register("dep", tail, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            assert (1, 0.1) == await sup.call("dep")
            status = sup.status("dep")
    assert (2, 1, {"ConnectionError": 1}, 1) == (
        status.calls,
        status.failures,
        dict(status.errors),
        status.hedge_wins,
    )


async def test_a_failed_hedge_leaves_the_attempt_running(sup: Supervisor) -> None:
    """The hedge fails at once; the attempt answers later and is the call's answer."""
    tail = Tail(0.3, ("raise", 0.01, ConnectionError("reset")))
    sup.register("dep", tail, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            assert (0, 0.3) == await sup.call("dep")
            status = sup.status("dep")
    assert (2, 1, 1, 0) == (status.calls, status.failures, status.hedges, status.hedge_wins)


async def test_the_call_fails_when_every_attempt_failed(sup: Supervisor) -> None:
    """Both fail: the last error is raised, its note says how many attempts and hedges ran."""
    first, last = ConnectionError("first"), ConnectionError("last")
    tail = Tail(("raise", 0.2, first), ("raise", 0.2, last))
    sup.register("dep", tail, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            with pytest.raises(ConnectionError) as caught:
                await sup.call("dep")
            status = sup.status("dep")
    assert caught.value is last
    assert [
        "ringfence: hedged call on 'dep': 1 attempt and 1 hedge ran; this is the last error"
    ] == caught.value.__notes__
    assert (2, 2) == (status.calls, status.failures)


async def test_a_retry_follows_when_every_attempt_failed(sup: Supervisor) -> None:
    """Attempt 1 and its hedge fail; the retry (attempt 2) answers before its delay."""
    tail = Tail(("raise", 0.2, ConnectionError("a")), ("raise", 0.05, ConnectionError("b")), 0.01)
    sup.register(
        "dep",
        tail,
        hedge=Hedge(delay=0.1),
        retry=Retry(attempts=2, backoff=lambda attempt, rng: 0.5, budget=None),
    )
    with guard():
        async with sup:
            assert (2, 0.01) == await sup.call("dep")
            status = sup.status("dep")
    assert (1, 1, 0) == (status.retries, status.hedges, status.hedge_wins)
    assert math.isclose(tail.started[2] - tail.started[0], 0.7, abs_tol=1e-6)


async def test_no_hedge_into_an_open_breaker(sup: Supervisor) -> None:
    """Another call's failure opens the breaker while the attempt runs: no hedge starts."""
    tail = Tail(0.5, ("raise", 0.0, ConnectionError("down")))
    sup.register("dep", tail, hedge=Hedge(delay=0.1), breaker=Breaker(failure_threshold=1))
    with guard():
        async with sup:
            async with anyio.create_task_group() as tg:
                results: list[object] = []

                async def slow() -> None:
                    results.append(await sup.call("dep"))

                tg.start_soon(slow)
                await tail.entered.wait()
                with pytest.raises(ConnectionError):
                    await sup.call("dep")
                assert "open" == sup.status("dep").state
            status = sup.status("dep")
    assert [(0, 0.5)] == results
    assert (2, 0) == (len(tail.started), status.hedges)


async def test_no_hedge_into_an_isolated_breaker(sup: Supervisor) -> None:
    """Isolated while the attempt runs: no hedge; the attempt's answer is still the call's."""
    tail = Tail(0.5)
    sup.register("dep", tail, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            async with anyio.create_task_group() as tg:
                results: list[object] = []

                async def slow() -> None:
                    results.append(await sup.call("dep"))

                tg.start_soon(slow)
                await tail.entered.wait()
                await sup.isolate("dep")
            with pytest.raises(BreakerOpen):
                await sup.call("dep")
            status = sup.status("dep")
    assert ([(0, 0.5)], 1, 0) == (results, len(tail.started), status.hedges)


async def test_no_hedge_into_a_pause(sup: Supervisor) -> None:
    """A 429 with Retry-After pauses the dependency while the attempt runs: no hedge."""

    class TooMany(Exception):
        status_code = 429
        headers = {"retry-after": "30"}

    tail = Tail(0.5, ("raise", 0.0, TooMany()))
    sup.register("dep", tail, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            async with anyio.create_task_group() as tg:
                tg.start_soon(sup.call, "dep")
                await tail.entered.wait()
                with pytest.raises(TooMany):
                    await sup.call("dep")
                assert sup.status("dep").paused_until is not None
            status = sup.status("dep")
    assert (2, 0) == (len(tail.started), status.hedges)


async def test_no_hedge_without_a_free_slot_and_none_queued(sup: Supervisor) -> None:
    """A full bulkhead (one slot, queue places free): the hedge does not start nor queue."""
    tail = Tail(0.5)
    sup.register(
        "dep", tail, hedge=Hedge(delay=0.1), bulkhead=Bulkhead(max_concurrent=1, max_queued=5)
    )
    with guard():
        async with sup:
            assert (0, 0.5) == await sup.call("dep")
            status = sup.status("dep")
    assert (1, 0, 0, 0) == (len(tail.started), status.hedges, status.queued, status.rejected)


async def test_no_hedge_without_a_rate_limit_turn(sup: Supervisor) -> None:
    """One turn a minute, taken by the attempt: the hedge does not start (nor wait)."""
    tail = Tail(0.5)
    sup.register("dep", tail, hedge=Hedge(delay=0.1), rate_limit=RateLimit(1, per=60))
    with guard():
        async with sup:
            assert (0, 0.5) == await sup.call("dep")
            status = sup.status("dep")
    assert (1, 0, 0) == (len(tail.started), status.hedges, status.rejected)


async def test_a_hedge_takes_a_rate_limit_turn(sup: Supervisor) -> None:
    """With turns to spare the hedge runs and takes one: one unit left of three."""
    tail = Tail(0.5, 0.01)
    sup.register("dep", tail, hedge=Hedge(delay=0.1), rate_limit=RateLimit(3, per=3600))
    with guard():
        async with sup:
            assert (1, 0.01) == await sup.call("dep")
            status = sup.status("dep")
    assert 1 == status.hedges
    assert math.isclose(status.rate_limit[0], 1.0, abs_tol=1e-3)


async def test_a_sheddable_calls_hedge_leaves_the_reserve_to_higher_priorities(
    sup: Supervisor,
) -> None:
    """`reserve=0.5` keeps the last 5 of 10 units for calls above SHEDDABLE. A sheddable
    call whose attempt took the last unit above the reserve starts no hedge, which would
    take a reserved unit (nor is it refused for trying); a default call's hedge, in the
    same bucket, takes its unit."""
    tail = Tail(0.01, 0.01, 0.01, 0.01, 0.5, 0.5, 0.01)
    sup.register(
        "dep", tail, hedge=Hedge(delay=0.1), rate_limit=RateLimit(10, per=3600, reserve=0.5)
    )
    with guard():
        async with sup:
            for _ in range(4):
                await sup.call("dep")  # default level: 6 units left
            with sup.priority(Priority.SHEDDABLE):
                assert (4, 0.5) == await sup.call("dep")  # its attempt: 5 left, all reserved
            status = sup.status("dep")
            assert (0, 0, {}) == (status.hedges, status.rejected, status.rejected_by_priority)
            assert math.isclose(status.rate_limit[0], 5.0, abs_tol=1e-2)
            assert (6, 0.01) == await sup.call("dep")  # default: attempt and hedge, 3 left
            status = sup.status("dep")
    assert (1, 0, 7) == (status.hedges, status.rejected, len(tail.started))
    assert math.isclose(status.rate_limit[0], 3.0, abs_tol=1e-2)


async def test_no_hedge_when_the_retry_budget_is_spent(sup: Supervisor) -> None:
    """Hedges spend the retry budget: with one retry allowed, the second call gets none."""
    tail = Tail(0.5, 0.01, 0.5)
    budget = Budget(ratio=0.0, min_per_second=0.1, window=10.0)  # one retry per 10 s
    sup.register("dep", tail, hedge=Hedge(delay=0.1), retry=Retry(attempts=1, budget=budget))
    with guard():
        async with sup:
            assert (1, 0.01) == await sup.call("dep")
            assert (2, 0.5) == await sup.call("dep")
            status = sup.status("dep")
    assert (1, 3) == (status.hedges, len(tail.started))
    assert status.budget is not None
    assert (1, 1) == (status.budget.retries, status.budget.refused)


async def test_the_callers_cancellation_cancels_every_attempt(sup: Supervisor) -> None:
    """Cancelled at 0.2 s with the attempt and a hedge running: both cancelled, nothing counted."""
    tail = Tail(10.0, 10.0)
    sup.register("dep", tail, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            with anyio.move_on_after(0.2) as scope:
                await sup.call("dep")
            status = sup.status("dep")
    assert scope.cancelled_caught
    assert ([0, 1], 0, 0) == (sorted(tail.cancelled), status.calls, status.in_flight)


async def test_leaving_the_supervisor_cuts_every_attempt_off(sup: Supervisor) -> None:
    """The supervisor leaves while the attempt and its hedge run: SupervisorClosed, all cut."""
    tail = Tail(10.0, 10.0)
    sup.register("dep", tail, hedge=Hedge(delay=0.1))
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await sup.call("dep")
        except SupervisorClosed as exc:
            errors.append(exc)

    with guard():
        async with anyio.create_task_group() as tg, sup:
            tg.start_soon(call)
            await anyio.sleep(0.2)  # virtual: the hedge has started
            assert 2 == len(tail.started)
    assert (1, [0, 1]) == (len(errors), sorted(tail.cancelled))


async def test_the_attempt_timeout_bounds_each_contender(sup: Supervisor) -> None:
    """Each contender has its own attempt timeout: both time out, the last error is raised."""
    tail = Tail(10.0, 10.0)
    sup.register("dep", tail, hedge=Hedge(delay=0.1), timeout=Timeout(attempt=0.3))
    with guard():
        async with sup:
            with pytest.raises(AttemptTimeout):
                await sup.call("dep")
            status = sup.status("dep")
    assert (2, 2, 1) == (status.failures, len(tail.started), status.hedges)


async def test_a_quantile_delay_follows_the_latencies(sup: Supervisor) -> None:
    """
    Hedge.quantile(0.5, floor=0.1, cap=1): before 20 latencies the delay is the cap (no hedge
    for a 0.5 s answer); after twenty 0.05 s answers it is their median clamped up to the
    floor, 0.1 s, and a 0.5 s attempt is hedged then.
    """
    tail = Tail(0.5, *[0.05] * 20, 0.5, 0.05)
    sup.register("dep", tail, hedge=Hedge(delay=Hedge.quantile(0.5, floor=0.1, cap=1.0)))
    with guard():
        async with sup:
            assert (0, 0.5) == await sup.call("dep")
            assert 0 == sup.status("dep").hedges
            for _ in range(20):
                await sup.call("dep")
            assert (22, 0.05) == await sup.call("dep")
            status = sup.status("dep")
    assert (1, 1) == (status.hedges, status.hedge_wins)
    assert math.isclose(tail.started[22] - tail.started[21], 0.1, abs_tol=1e-6)


async def test_reconfigure_turns_hedging_on_and_off(sup: Supervisor) -> None:
    """reconfigure(hedge=...) applies to the next call; hedge=None turns it off."""
    tail = Tail(0.5, 0.5, 0.01, 0.5)
    sup.register("dep", tail)
    with guard():
        async with sup:
            assert (0, 0.5) == await sup.call("dep")
            await sup.reconfigure("dep", hedge=Hedge(delay=0.1))
            assert (2, 0.01) == await sup.call("dep")
            await sup.reconfigure("dep", hedge=None)
            assert (3, 0.5) == await sup.call("dep")
            status = sup.status("dep")
    assert (1, 1) == (status.hedges, status.hedge_wins)


async def test_protect_takes_a_hedge(sup: Supervisor) -> None:
    """@protect(hedge=...) registers a hedged dependency."""
    tail = Tail(10.0, 0.01)

    @sup.protect("dep", hedge=Hedge(delay=0.1))
    async def dep() -> tuple[int, float]:
        return await tail()

    with guard():
        async with sup:
            assert (1, 0.01) == await dep()
    assert 1 == sup.status("dep").hedge_wins


async def test_bad_hedge_argument(sup: Supervisor) -> None:
    """A hedge that is not a policies.Hedge: TypeError naming it, at register and reconfigure."""
    with pytest.raises(TypeError, match=r"^'hedge' must be a policies.Hedge or None, got 0.1"):
        sup.register("dep", Tail(), hedge=0.1)  # type: ignore[call-overload]
    sup.register("dep", Tail())
    async with sup:
        with pytest.raises(TypeError, match=r"^'hedge' must be a policies.Hedge or None"):
            await sup.reconfigure("dep", hedge="fast")  # type: ignore[arg-type]


# -- streams ------------------------------------------------------------------------------------


class TailStream:
    """A streaming dependency: call n waits its step's seconds, then yields n, n+100."""

    def __init__(self, *firsts: float) -> None:
        self.firsts: deque[float] = deque(firsts)
        self.started: list[float] = []
        self.closed: list[tuple[int, object]] = []
        self.cancelled: list[int] = []

    async def __call__(self, between: float = 0.0) -> Any:
        n = len(self.started)
        self.started.append(anyio.current_time())
        first = self.firsts.popleft() if self.firsts else 0.01
        try:
            await anyio.sleep(first)
            yield n
            await anyio.sleep(between)
            yield n + 100
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(n)
            raise
        finally:
            self.closed.append((n, anyio.get_current_task().id))


async def test_a_stream_is_hedged_to_its_first_item(sup: Supervisor) -> None:
    """
    The first attempt's first item would take 10 s; a hedge at 0.1 s has it in 0.02 s: the
    items are the hedge's, the stalled attempt was cancelled and counted nothing, and the
    winner's slot is held until the stream ends.
    """
    gen = TailStream(10.0, 0.02)
    sup.register("llm", gen, hedge=Hedge(delay=0.1), bulkhead=Bulkhead(max_concurrent=4))
    with guard():
        async with sup:
            start = anyio.current_time()
            async with sup.stream("llm") as items:
                first = await items.__anext__()
                to_first = anyio.current_time() - start
                assert 1 == sup.status("llm").in_flight
                rest = [item async for item in items]
            status = sup.status("llm")
    assert ([1, 101], [0]) == ([first, *rest], gen.cancelled)
    assert math.isclose(to_first, 0.12, abs_tol=1e-6)
    assert (1, 0, 1, 1, 0) == (
        status.calls,
        status.failures,
        status.hedges,
        status.hedge_wins,
        status.in_flight,
    )
    assert sorted(n for n, _ in gen.closed) == [0, 1]


async def test_reconfigure_hedges_the_policy_loop_of_calls_and_streams(sup: Supervisor) -> None:
    """
    A dependency already on the policy loop (a retry) takes the hedged loop from the next
    call and the next stream once reconfigured with a hedge, and leaves it with hedge=None:
    the loop is chosen when the policies change, not tested per call.
    """
    calls = Tail(0.5, 0.5, 0.01, 0.5)
    streams = TailStream(0.5, 0.5, 0.02, 0.5)
    retry = Retry(attempts=2)
    sup.register("dep", calls, retry=retry)
    sup.register("llm", streams, retry=retry)

    async def first_item() -> int:
        async with sup.stream("llm") as items:
            return int(await items.__anext__())

    with guard():
        async with sup:
            assert ((0, 0.5), 0) == (await sup.call("dep"), await first_item())
            for name in ("dep", "llm"):
                await sup.reconfigure(name, hedge=Hedge(delay=0.1))
            assert ((2, 0.01), 2) == (await sup.call("dep"), await first_item())
            for name in ("dep", "llm"):
                await sup.reconfigure(name, hedge=None)
            assert ((3, 0.5), 3) == (await sup.call("dep"), await first_item())
            hedged = [(s.hedges, s.hedge_wins) for s in map(sup.status, ("dep", "llm"))]
    assert [(1, 1), (1, 1)] == hedged
    assert [1] == calls.cancelled == streams.cancelled


async def test_nothing_is_hedged_after_the_first_item(sup: Supervisor) -> None:
    """A slow second item (1 s) is waited for: no hedge once an item reached the caller."""
    gen = TailStream(0.01)
    sup.register("llm", gen, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            async with sup.stream("llm", 1.0) as items:
                assert [0, 100] == [item async for item in items]
            status = sup.status("llm")
    assert (1, 0) == (len(gen.started), status.hedges)


async def test_a_late_first_item_is_closed_in_the_callers_task(
    sup: Supervisor, is_trio: bool
) -> None:
    """
    Attempt and hedge get their first items at the same instant (0.3 s): one wins, the other
    is closed by the caller's task (its generator's ``finally`` runs there), counting nothing.
    """
    gen = TailStream(0.3, 0.2)
    sup.register("llm", gen, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            caller = anyio.get_current_task().id
            async with sup.stream("llm") as items:
                first = await items.__anext__()
                loser = 1 - first
                assert loser in [n for n, _ in gen.closed]
                closed_by = dict(gen.closed)[loser]
                # Which one got its item "too late" is the scheduler's choice (trio shuffles a
                # batch): a contender still waiting is cancelled in its own task; one whose
                # item came is closed here, by the caller's task (asyncio's FIFO order).
                if is_trio:
                    assert closed_by == caller or loser in gen.cancelled
                else:
                    assert (closed_by, gen.cancelled) == (caller, [])
            status = sup.status("llm")
    assert (1, 0, 0) == (status.calls, status.failures, status.in_flight)


async def test_a_hedged_stream_fails_when_every_attempt_failed(sup: Supervisor) -> None:
    """Both attempts fail before their first item: the last error, with the hedges' note."""

    async def broken(n: list[int]) -> Any:
        n.append(0)
        await anyio.sleep(0.2 if len(n) == 1 else 0.15)
        raise ConnectionError(f"broken {len(n)}")
        yield  # pragma: no cover

    sup.register("llm", broken, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            with pytest.raises(ConnectionError, match="broken 2") as caught:
                async with sup.stream("llm", []):
                    pass  # pragma: no cover
            status = sup.status("llm")
    assert "1 attempt and 1 hedge ran" in caught.value.__notes__[0]
    assert (2, 2, 0) == (status.calls, status.failures, status.in_flight)


async def test_cancelling_a_hedged_stream_cancels_every_attempt(sup: Supervisor) -> None:
    """The caller gives up at 0.2 s: both openings are cancelled, nothing counted, slots back."""
    gen = TailStream(10.0, 10.0)
    sup.register("llm", gen, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            with anyio.move_on_after(0.2):
                async with sup.stream("llm"):
                    pass  # pragma: no cover
            status = sup.status("llm")
    assert ([0, 1], 0, 0) == (sorted(gen.cancelled), status.calls, status.in_flight)


# -- sync dependencies ------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])  # real time: threads run
async def test_a_sync_dependency_is_hedged_and_the_losers_thread_keeps_its_slot(
    sup: Supervisor,
) -> None:
    """
    A sync callable: the first call's thread is stuck; the hedge's thread answers. The call
    returns the hedge's answer; the stuck thread keeps its slot until it ends.
    """
    release = threading.Event()
    calls: list[int] = []
    lock = threading.Lock()

    def blocking() -> int:
        with lock:
            n = len(calls)
            calls.append(n)
        if n == 0:
            release.wait(30)
        return n

    sup.register("sync", blocking, hedge=Hedge(delay=0.1), bulkhead=Bulkhead(max_concurrent=2))
    with guard():
        async with sup:
            assert 1 == await sup.call("sync")
            status = sup.status("sync")
            assert (1, 1, 1) == (status.in_flight, status.hedges, status.hedge_wins)
            release.set()
            while sup.status("sync").in_flight:  # the thread's end is delivered to the loop
                await checkpoint()
                await anyio.to_thread.run_sync(lambda: None)
    assert 1 == sup.status("sync").calls
