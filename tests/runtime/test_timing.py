"""Time-driven behaviour, on trio's autojumping MockClock: exact virtual times."""

from __future__ import annotations

import math
import random

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from policies import Breaker, BreakHistory, Bulkhead, Retry, Timeout, backoff, break_duration
from supervisor import BreakerOpen, DeadlineExceeded, Supervisor

from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> object:
    """trio only: these tests are about virtual time."""
    from trio.testing import MockClock

    return ("trio", {"clock": MockClock(autojump_threshold=0)})


def offsets(times: list[float]) -> list[float]:
    return [round(t - times[0], 9) for t in times]


async def test_backoff_schedule_is_followed_exactly(sup: Supervisor) -> None:
    """Exponential backoff 0.2 * 2**n: attempts at 0, 0.2, 0.6, 1.4 virtual seconds."""
    fake = Fake(*[ConnectionError("x")] * 3, "done")
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=4, backoff=backoff.exponential(base=0.2, factor=2.0, cap=10.0)),
    )
    with guard():
        async with sup:
            assert await sup.call("dep") == "done"
    assert offsets(fake.times) == [0.0, 0.2, 0.6, 1.4]


async def test_jittered_schedule_is_reproducible_with_a_seeded_rng() -> None:
    """The supervisor's injected rng drives jitter: the same seed, the same schedule."""
    schedules = []
    for _ in range(2):
        sup = Supervisor(rng=random.Random(7))
        fake = Fake(*[ConnectionError("x")] * 3)
        sup.register(
            "dep", fake, retry=Retry(attempts=4, backoff=backoff.full(backoff.exponential()))
        )
        with guard():
            async with sup:
                await sup.call("dep")
        schedules.append(offsets(fake.times))
    assert schedules[0] == schedules[1]
    assert len(set(schedules[0])) == 4


async def test_retry_after_is_honoured_as_minimum_delay(sup: Supervisor) -> None:
    """An exception's retry_after (seconds) stretches the backoff to at least that long."""

    class RateLimited(Exception):
        retry_after = 5.0

    fake = Fake(RateLimited(), "ok")
    sup.register("dep", fake, retry=Retry(attempts=2, backoff=backoff.constant(0.1)))
    with guard():
        async with sup:
            await sup.call("dep")
    assert offsets(fake.times) == [0.0, 5.0]


async def test_break_of_300_seconds_then_half_open(sup: Supervisor) -> None:
    """A 300 s break: rejected until 300 s, with retry_after counting down; then a probe."""
    fake = Fake(ConnectionError("x"), "recovered")
    sup.register("dep", fake, breaker=Breaker(failure_threshold=1, break_duration=300.0))
    with guard(1000):
        async with sup:
            with pytest.raises(ConnectionError):
                await sup.call("dep")
            opened_at = anyio.current_time()
            await anyio.sleep(120)
            with pytest.raises(BreakerOpen) as caught:
                await sup.call("dep")
            assert pytest.approx(caught.value.retry_after) == 180.0
            await anyio.sleep(180 - (anyio.current_time() - opened_at - 120))
            assert sup.status("dep").state == "half_open"
            assert await sup.call("dep") == "recovered"
    status = sup.status("dep")
    assert [t.target for t in status.transitions] == ["open", "half_open", "closed"]
    assert pytest.approx(status.transitions[1].at - status.transitions[0].at) == 300.0


async def test_failed_probes_grow_the_break_exponentially(sup: Supervisor) -> None:
    """exponential(30, 1.5, cap 300): breaks of 30, 45, 67.5 ... then capped at 300."""
    fake = Fake(*[ConnectionError("x")] * 9)
    sup.register(
        "dep",
        fake,
        breaker=Breaker(
            failure_threshold=1,
            break_duration=break_duration.exponential(30.0, factor=1.5, cap=300.0),
        ),
    )
    breaks = []
    with guard(5000):
        async with sup:
            for _ in range(9):
                with pytest.raises(ConnectionError):
                    await sup.call("dep")
                breaks.append(sup.status("dep").break_duration)
                await anyio.sleep(sup.status("dep").break_duration or 0)
    assert breaks == [30.0, 45.0, 67.5, 101.25, 151.875, 227.8125, 300.0, 300.0, 300.0]


async def test_user_break_duration_receives_the_history(sup: Supervisor) -> None:
    """A callable break duration gets one BreakHistory record per opening."""
    seen: list[BreakHistory] = []

    def duration(history: BreakHistory) -> float:
        seen.append(history)
        return 10.0 * history.openings

    fake = Fake(ConnectionError("a"), ConnectionError("b"), "ok", ConnectionError("c"))
    sup.register("dep", fake, breaker=Breaker(failure_threshold=1, break_duration=duration))
    with guard(1000):
        async with sup:
            await anyio.sleep(5)
            for expected in (ConnectionError, ConnectionError, None, ConnectionError):
                if expected is None:
                    assert await sup.call("dep") == "ok"
                else:
                    with pytest.raises(expected):
                        await sup.call("dep")
                await anyio.sleep(sup.status("dep").break_duration or 0)
    assert [(h.openings, h.previous, h.closed_for) for h in seen] == [
        (1, None, 5.0),
        (2, 10.0, None),
        (1, 20.0, 20.0),
    ]


async def test_total_deadline_stops_a_retry_whose_backoff_would_end_past_it(
    sup: Supervisor,
) -> None:
    """Timeout(total=10): a retry whose backoff would end past the deadline is not started."""
    fake = Fake(ConnectionError("1"), ConnectionError("2"), "never")
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=3, backoff=backoff.constant(6.0)),
        timeout=Timeout(total=10.0),
    )
    with guard():
        async with sup:
            start = anyio.current_time()
            with pytest.raises(
                DeadlineExceeded, match=r"^call to 'dep' exceeded its 10s deadline$"
            ) as caught:
                await sup.call("dep")
            assert anyio.current_time() - start == 6.0  # gave up at once, not at 10 s
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert str(caught.value.__cause__) == "2"
    assert fake.count == 2


async def test_total_deadline_cuts_a_running_attempt(sup: Supervisor) -> None:
    """The total deadline cuts the attempt that is running when it passes; not counted."""
    fake = Fake(ConnectionError("first"), Gate())
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=3, backoff=backoff.constant(1.0)),
        timeout=Timeout(attempt=9.5, total=10.0),
    )
    with guard():
        async with sup:
            start = anyio.current_time()
            with pytest.raises(DeadlineExceeded) as caught:
                await sup.call("dep")
            assert anyio.current_time() - start == 10.0
    assert str(caught.value.__cause__) == "first"
    status = sup.status("dep")
    assert (status.calls, status.failures) == (1, 1)


async def test_total_deadline_covers_the_queue(sup: Supervisor) -> None:
    """A call still queued when its total deadline passes fails with DeadlineExceeded."""
    calls: list[float] = []

    async def hog() -> str:
        calls.append(anyio.current_time())
        with anyio.CancelScope(shield=True):  # overruns its own deadline, holding the slot
            await anyio.sleep(20)
        return "late"

    sup.register(
        "dep", hog, timeout=Timeout(total=10.0), bulkhead=Bulkhead(max_concurrent=1, max_queued=1)
    )
    with guard(100):
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(sup.call, "dep")
            await wait_all_tasks_blocked()
            await anyio.sleep(4)
            start = anyio.current_time()
            with pytest.raises(DeadlineExceeded):
                await sup.call("dep")
            assert anyio.current_time() - start == 10.0
            assert sup.status("dep").queued == 0
    assert len(calls) == 1


async def test_attempt_timeout_fires_at_the_exact_virtual_time(sup: Supervisor) -> None:
    """Timeout(attempt=2.5) cuts the attempt at exactly 2.5 s and counts a failure."""
    fake = Fake(Gate())
    sup.register("dep", fake, timeout=Timeout(attempt=2.5))
    with guard():
        async with sup:
            start = anyio.current_time()
            with pytest.raises(TimeoutError):
                await sup.call("dep")
            assert anyio.current_time() - start == 2.5
    assert dict(sup.status("dep").errors) == {"AttemptTimeout": 1}


async def test_slow_successes_count_as_failures(sup: Supervisor) -> None:
    """Breaker(slow_call=1): successes slower than 1 s count as failures and can open it."""
    fake = Fake(("sleep", 2.0, "slow"), ("sleep", 2.0, "slow"))
    sup.register("dep", fake, breaker=Breaker(failure_threshold=2, slow_call=1.0))
    with guard():
        async with sup:
            assert await sup.call("dep") == "slow"
            assert await sup.call("dep") == "slow"
    status = sup.status("dep")
    assert (status.state, status.calls, status.failures, status.slow_calls) == ("open", 2, 2, 2)
    assert status.latency.p50 == 2.0


async def test_adaptive_break_shrinks_after_sustained_health(sup: Supervisor) -> None:
    """adaptive(): a flapping dependency gets longer breaks; a long healthy spell, shorter."""
    fake = Fake(ConnectionError("1"), "ok", ConnectionError("2"), "ok", ConnectionError("3"))
    sup.register(
        "dep",
        fake,
        breaker=Breaker(
            failure_threshold=1,
            break_duration=break_duration.adaptive(10.0, factor=2.0, cap=300.0, healthy_after=60.0),
        ),
    )
    breaks = []
    with guard(5000):
        async with sup:
            for step in range(5):
                try:
                    await sup.call("dep")
                except ConnectionError:
                    breaks.append(sup.status("dep").break_duration)
                    await anyio.sleep(sup.status("dep").break_duration or 0)
                if step == 3:
                    await anyio.sleep(130)  # two healthy periods
    assert breaks == [10.0, 20.0, 10.0]
    assert math.isfinite(breaks[-1])


async def test_herd_when_the_break_elapses_lets_exactly_the_probes_through(
    sup: Supervisor,
) -> None:
    """10,000 callers arriving the instant a 30 s break ends: exactly 2 probes run."""
    gate = Gate()
    fake = Fake(ConnectionError("x"), gate, gate)
    sup.register(
        "dep", fake, breaker=Breaker(failure_threshold=1, half_open_probes=2, break_duration=30.0)
    )
    rejected: list[float] = []

    async def caller() -> None:
        try:
            await sup.call("dep")
        except BreakerOpen as exc:
            rejected.append(exc.retry_after)

    with guard(100):
        async with sup:
            with pytest.raises(ConnectionError):
                await sup.call("dep")
            await anyio.sleep(30)
            async with anyio.create_task_group() as tg:
                for _ in range(10_000):
                    tg.start_soon(caller)
                await wait_all_tasks_blocked()
                assert 1 + 2 == fake.count
                gate.open()
    assert [0.0] * 9_998 == rejected
    assert ["open", "half_open", "closed"] == [t.target for t in sup.status("dep").transitions]


async def test_deadline_exceeded_goes_to_the_fallback(sup: Supervisor) -> None:
    """DeadlineExceeded reaches the fallback, which answers at the deadline."""
    seen: list[str] = []

    def fallback(exc: BaseException) -> str:
        seen.append(type(exc).__name__)
        return "cached"

    sup.register("dep", Fake(Gate()), timeout=Timeout(total=3.0), fallback=fallback)
    with guard():
        async with sup:
            start = anyio.current_time()
            assert "cached" == await sup.call("dep")
            assert 3.0 == anyio.current_time() - start
    assert ["DeadlineExceeded"] == seen
