"""
Breaker(slow_call=...): a call counts as slow the moment it has run longer than slow_call,
while still running (issue 20, part 2), once. On both backends, on virtual time: trio's
MockClock, and asyncio on a VirtualClockLoop that jumps the same way.
"""

from __future__ import annotations

import anyio
import pytest

from policies import Breaker, Timeout
from supervisor import AttemptTimeout, BreakerOpen, Supervisor

from ._virtual_loop import anyio_backend as anyio_backend  # both backends, virtual time
from ._virtual_loop import wait_idle
from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio


async def hang() -> None:
    await anyio.sleep_forever()


async def start_calls(
    tg: anyio.abc.TaskGroup, sup: Supervisor, n: int, errors: list[object]
) -> None:
    async def one() -> None:
        try:
            await sup.call("dep")
        except Exception as exc:
            errors.append(exc)  # (a cancellation is not: the test cancels them at the end)

    for _ in range(n):
        tg.start_soon(one)
    await wait_idle()


@pytest.mark.parametrize(
    "breaker",
    [
        Breaker(failure_threshold=3, slow_call=1.0, break_duration=60.0),
        Breaker(failure_ratio=0.5, min_throughput=3, slow_call=1.0, break_duration=60.0),
    ],
    ids=["count", "ratio"],
)
async def test_hung_calls_open_the_breaker_while_they_hang(
    sup: Supervisor, breaker: Breaker, path: str
) -> None:
    """Three calls hang (no timeout): the breaker opens 1 s after they started, and the
    next caller is refused at once; in ratio mode the slow calls enter the window then."""
    sup.register("dep", hang, breaker=breaker)
    errors: list[object] = []
    with guard(100):
        async with sup, anyio.create_task_group() as tg:
            started = anyio.current_time()
            await start_calls(tg, sup, 3, errors)
            assert sup.status("dep").state == "closed"
            await anyio.sleep(1.0)
            await wait_idle()  # (the timer due at the same instant has run)
            status = sup.status("dep")
            assert (status.state, status.slow_calls, status.failures) == ("open", 3, 3)
            (opened,) = [t for t in status.transitions if t.target == "open"]
            assert opened.at - started == 1.0
            before = anyio.current_time()
            with pytest.raises(BreakerOpen):
                await sup.call("dep")
            assert anyio.current_time() == before
            tg.cancel_scope.cancel()
    status = sup.status("dep")
    # Cancelled hung calls stay counted once, as slow; nothing more.
    assert (status.slow_calls, status.failures, status.calls) == (3, 3, 3)
    assert errors == []


async def test_a_slow_call_is_counted_once_however_it_ends(sup: Supervisor, path: str) -> None:
    """Slow, then success: one slow call; slow, then its own error: one failure; slow, then
    cut by the attempt timeout: one failure. The breaker hears one failure for each."""
    gate = Gate()
    fake = Fake(("sleep", 2.0, "late"), ("sleep", 2.0, ConnectionError("x")), gate)
    sup.register(
        "dep",
        fake,
        breaker=Breaker(failure_threshold=4, slow_call=1.0),
        timeout=Timeout(attempt=3.0),
    )
    with guard(100):
        async with sup:
            assert await sup.call("dep") == "late"
            with pytest.raises(ConnectionError):
                await sup.call("dep")
            with pytest.raises(AttemptTimeout):
                await sup.call("dep")
            status = sup.status("dep")
            assert status.state == "closed"
            assert status.consecutive_failures == 3
    assert (status.calls, status.slow_calls, status.failures) == (3, 3, 3)
    assert dict(status.errors) == {"ConnectionError": 1, "AttemptTimeout": 1}
    assert (status.latency.p50, status.latency.p99, status.latency.samples) == (2.0, 3.0, 3)


async def test_a_fast_call_is_not_slow(sup: Supervisor, path: str) -> None:
    """A call that ends before slow_call leaves no trace: its timer does not fire later."""
    fake = Fake(("sleep", 0.5, "ok"))
    sup.register("dep", fake, breaker=Breaker(failure_threshold=1, slow_call=1.0))
    with guard(100):
        async with sup:
            assert await sup.call("dep") == "ok"
            await anyio.sleep(5.0)
            status = sup.status("dep")
    assert (status.state, status.slow_calls, status.failures) == ("closed", 0, 0)


async def test_a_hung_probe_reopens_the_breaker(sup: Supervisor) -> None:
    """Half-open: a probe that hangs past slow_call fails the probe then, not at its end."""
    fake = Fake(ConnectionError("x"), Gate())
    sup.register(
        "dep", fake, breaker=Breaker(failure_threshold=1, slow_call=1.0, break_duration=5.0)
    )
    with guard(100):
        async with sup, anyio.create_task_group() as tg:
            with pytest.raises(ConnectionError):
                await sup.call("dep")
            await anyio.sleep(5.0)
            errors: list[object] = []
            await start_calls(tg, sup, 1, errors)
            assert sup.status("dep").state == "half_open"
            await anyio.sleep(1.0)
            await wait_idle()
            assert sup.status("dep").state == "open"
            assert [t.reason for t in sup.status("dep").transitions][-1] == "probe_failed"
            tg.cancel_scope.cancel()
