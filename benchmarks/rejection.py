"""
Question 3: what does a rejected call cost? An open breaker, and a full bulkhead.

A rejection must be cheaper than, or close to, a successful call: an open breaker exists to
answer fast. Ratios are to ringfence's own success path and to a bare await, same run.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import anyio

from policies import Breaker, Bulkhead
from supervisor import BreakerOpen, BulkheadFull, Supervisor

from ._harness import Table, cli, header, median
from ._subjects import dep

__all__ = ("run",)


async def _time_rejections(fn: Any, error: type[Exception], calls: int) -> float:
    gc.collect()
    start = time.perf_counter_ns()
    for i in range(calls):
        try:
            await fn(i)
        except error:
            pass
    return (time.perf_counter_ns() - start) / calls


async def _measure(calls: int, rounds: int) -> dict[str, float]:
    gate = anyio.Event()

    async def blocked(x: int) -> int:
        await gate.wait()
        return x

    supervisor = Supervisor()
    ok = supervisor.register("ok", dep, breaker=Breaker(), bulkhead=Bulkhead(max_concurrent=8))
    opened = supervisor.register(
        "open", dep, breaker=Breaker(), bulkhead=Bulkhead(max_concurrent=8)
    )
    full = supervisor.register(
        "full", blocked, breaker=Breaker(), bulkhead=Bulkhead(max_concurrent=1, max_queued=0)
    )
    # A peer for scale: circuitbreaker's own open-breaker rejection.
    from circuitbreaker import CircuitBreaker, CircuitBreakerError

    async def failing(x: int) -> int:
        raise ConnectionError

    peer = CircuitBreaker(failure_threshold=1, recovery_timeout=3600)(failing)
    try:
        await peer(0)
    except ConnectionError:
        pass
    samples: dict[str, list[float]] = {}
    async with supervisor, anyio.create_task_group() as tg:
        await supervisor.isolate("open")
        tg.start_soon(full, 0)
        await anyio.wait_all_tasks_blocked()
        for _ in range(rounds):
            for name, fn, error in (
                ("bare await", dep, Exception),
                ("ringfence success path", ok, Exception),
                ("ringfence open breaker (BreakerOpen)", opened, BreakerOpen),
                ("ringfence full bulkhead (BulkheadFull)", full, BulkheadFull),
                ("circuitbreaker open breaker (CircuitBreakerError)", peer, CircuitBreakerError),
            ):
                samples.setdefault(name, []).append(await _time_rejections(fn, error, calls))
        gate.set()
    return {name: median(values) for name, values in samples.items()}


def run(backend: str, *, quick: bool) -> tuple[str, dict[str, Any]]:
    calls, rounds = (5_000, 3) if quick else (50_000, 9)
    results = anyio.run(_measure, calls, rounds, backend=backend)
    success = results["ringfence success path"]
    table = Table(["call", "ns/call (median)", "vs ringfence success", "vs bare await"])
    for name, value in results.items():
        table.add(
            name,
            f"{value:,.0f}",
            f"{value / success:.2f}x",
            f"{value / results['bare await']:.1f}x",
        )
    text = (
        header("rejection: open breaker and full bulkhead", backend)
        + f"\n{calls:,} calls per round, {rounds} interleaved rounds; rejections raise and are caught.\n\n"
        + table.markdown()
    )
    return text, {"ns": results}


if __name__ == "__main__":
    cli(run)
