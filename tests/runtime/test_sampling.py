"""
The latency window is a sample; what decides and what is counted is exact (issue 18).

An attempt reads the clock only when something uses the reading: the latency sample (every
attempt while fewer than 1,024 have ended, then those starting while that count is a
multiple of 16), slow-call detection (then every attempt), a breaker that is not closed, a
windowed breaker, a timer. ``status().calls`` has its own counter.
"""

from __future__ import annotations

import anyio
import pytest

from policies import Breaker
from supervisor import Supervisor

from ._virtual_loop import on_virtual_time
from .conftest import guard

pytestmark = pytest.mark.anyio

ALL = 1024  # attempts timed before sampling starts
MORE = 160  # then one in 16: 10 of these


async def ok(x: int) -> int:
    return x


async def test_calls_are_exact_and_the_latency_window_samples(
    sup: Supervisor, each_path: str
) -> None:
    sup.register("dep", ok, breaker=Breaker(failure_threshold=5))
    with guard():
        async with sup:
            for i in range(ALL + MORE):
                assert i == await sup.call("dep", i)
            status = sup.status("dep")
            sampled = sup._actors["dep"]._latency.count
    assert (ALL + MORE, 0) == (status.calls, status.failures)
    assert ALL + MORE // 16 == sampled
    assert ALL == status.latency.samples  # the ring is full: the sample is 1,024 latencies


async def test_failures_are_counted_exactly_past_the_sample(
    sup: Supervisor, each_path: str
) -> None:
    calls = 0

    async def every_third_fails(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls % 3 == 0:
            raise ConnectionError(x)
        return x

    sup.register("dep", every_third_fails, breaker=Breaker(failure_threshold=5))
    with guard():
        async with sup:
            for i in range(ALL + MORE + 2):
                try:
                    await sup.call("dep", i)
                except ConnectionError:
                    pass
            status = sup.status("dep")
    assert (ALL + MORE + 2, (ALL + MORE + 2) // 3) == (status.calls, status.failures)
    assert ("closed", {"ConnectionError": (ALL + MORE + 2) // 3}) == (status.state, status.errors)


@on_virtual_time()  # a stalled machine cannot make an immediate answer look slow
async def test_slow_call_detection_times_every_attempt(sup: Supervisor, each_path: str) -> None:
    """Past the first 1,024 attempts, an attempt the sample skips is still checked."""
    unit = 1.0
    slow_at = ALL + 5  # (ALL + 5) % 16 != 0: not in the sample under the plain rule
    calls = 0

    async def slow_once(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == slow_at:
            await anyio.sleep(2 * unit)
        return x

    sup.register("dep", slow_once, breaker=Breaker(failure_threshold=1_000, slow_call=unit))
    with guard():
        async with sup:
            for i in range(ALL + 20):
                await sup.call("dep", i)
            status = sup.status("dep")
    assert (ALL + 20, 1, 1) == (status.calls, status.slow_calls, status.failures)
