"""
Question 4: how many bytes does a queued call cost, and does memory stay flat over a soak?

Bytes per queued call come from tracemalloc: 10,000 calls queued behind a full bulkhead,
against 10,000 tasks waiting on a plain event (the cost of a waiting task itself), each in
its own run, median over 5,000, 10,000 and 15,000. The soak
runs calls through the full stack and samples traced memory as it goes.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import anyio

from policies import Breaker, Bulkhead, Retry, Timeout, backoff
from supervisor import Supervisor

from ._harness import Table, cli, header, median
from ._subjects import dep_yield, fallback

__all__ = ("run",)


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def _waiting_bytes(count: int, queued: bool) -> float:
    """
    Bytes per task started after the setup: *count* calls queued behind a full bulkhead, or
    (the baseline) *count* tasks waiting on a plain event. Each is measured in its own run
    with the same number of tasks, so the event loop's and task group's own tables grow
    through the same sizes in both and their resizes cancel out.
    """
    gate = anyio.Event()

    async def blocked(x: int) -> int:
        await gate.wait()
        return x

    supervisor = Supervisor()
    handle = supervisor.register(
        "dep", blocked, bulkhead=Bulkhead(max_concurrent=1, max_queued=count)
    )
    async with supervisor, anyio.create_task_group() as tg:
        tg.start_soon(handle, -1)
        await anyio.wait_all_tasks_blocked()
        before = _traced()
        for i in range(count):
            if queued:
                tg.start_soon(handle, i)
            else:
                tg.start_soon(gate.wait)
        await anyio.wait_all_tasks_blocked()
        if queued:
            assert count == supervisor.status("dep").queued
        per_task = (_traced() - before) / count
        gate.set()
    return per_task


def _queued_bytes(count: int, backend: str) -> tuple[float, float]:
    """Bytes per queued call and per plain waiting task: medians over three counts."""
    queued, bare = [], []
    for n in (count // 2, count, count * 3 // 2):
        bare.append(anyio.run(_waiting_bytes, n, False, backend=backend))
        queued.append(anyio.run(_waiting_bytes, n, True, backend=backend))
    return median(queued), median(bare)


async def _soak(calls: int, samples: int) -> list[tuple[int, int]]:
    supervisor = Supervisor()
    # The dependency yields to the scheduler, as real I/O does: trio prunes the stale
    # entries of its deadline heap from its run loop, so a loop that never yields would
    # show trio's lazy deletion, not a leak of ours.
    handle = supervisor.register(
        "dep",
        dep_yield,
        retry=Retry(attempts=3, backoff=backoff.constant(0.0)),
        breaker=Breaker(failure_ratio=0.5, min_throughput=10, sampling=30.0),
        timeout=Timeout(attempt=10.0, total=30.0),
        bulkhead=Bulkhead(max_concurrent=8, max_queued=32),
        fallback=fallback,
    )
    points: list[tuple[int, int]] = []
    step = calls // samples
    async with supervisor:
        for i in range(calls):
            await handle(i)
            if (i + 1) % step == 0:
                points.append((i + 1, _traced()))
    return points


def run(backend: str, *, quick: bool) -> tuple[str, dict[str, Any]]:
    count, soak_calls = (2_000, 100_000) if quick else (10_000, 1_000_000)
    # Warm up first: the modules a run imports on first use (anyio's trio backend pulls in
    # trio.testing, and with it parts of pytest: ~10 MB) must not count as ringfence's.
    _queued_bytes(8, backend)
    tracemalloc.start()
    try:
        queued, bare_task = _queued_bytes(count, backend)
        points = anyio.run(_soak, soak_calls, 10, backend=backend)
    finally:
        tracemalloc.stop()
    table = Table(["measure", "value"])
    table.add("bytes per queued call (total, incl. its task)", f"{queued:,.0f}")
    table.add("bytes per task waiting on a plain event (baseline)", f"{bare_task:,.0f}")
    table.add("ringfence's own bytes per queued call", f"{queued - bare_task:,.0f}")
    first = points[1][1] if len(points) > 1 else points[0][1]
    growth = points[-1][1] - first
    table.add(f"soak: traced memory after {points[1][0]:,} calls", f"{first:,} B")
    table.add(f"soak: traced memory after {points[-1][0]:,} calls", f"{points[-1][1]:,} B")
    table.add("soak: growth between those samples", f"{growth:+,} B")
    text = (
        header("memory: queued calls and a soak", backend)
        + f"\n{count // 2:,}, {count:,} and {count * 3 // 2:,} queued calls (median); soak of {soak_calls:,} calls through the full stack.\n\n"
        + table.markdown()
    )
    return text, {
        "queued": queued,
        "bare_task": bare_task,
        "own": queued - bare_task,
        "points": points,
        "growth": growth,
    }


if __name__ == "__main__":
    cli(run)
