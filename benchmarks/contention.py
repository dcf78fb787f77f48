"""
Question 2: does throughput stay flat as concurrent callers grow (the lock-contention question)?

N callers each make 20 calls at once; the dependency is ``await sleep(0)`` (one trip through
the scheduler). Per subject and N: throughput (calls/s over the whole burst) and per-call
latency p50/p99, medians over interleaved rounds. Reference designs written here: a breaker
guarded by the backend's Lock, and one guarded by threading.Lock called from worker threads.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any

import anyio

from ._harness import Table, cli, header, median
from ._subjects import (
    Call,
    aiobreaker_,
    async_lock_breaker,
    bare,
    circuitbreaker_,
    dep_yield,
    hyx_breaker,
    purgatory_,
    ringfence_breaker_bulkhead,
    thread_lock_breaker,
)

__all__ = ("run",)

CALLS_EACH = 20
SUBJECTS: dict[str, Callable[[], AbstractAsyncContextManager[Call]]] = {
    "bare await": partial(bare, dep_yield),
    "ringfence breaker+bulkhead": partial(
        ringfence_breaker_bulkhead, dep_yield, max_concurrent=100_000
    ),
    "circuitbreaker": partial(circuitbreaker_, dep_yield),
    "aiobreaker": partial(aiobreaker_, dep_yield),
    "purgatory": partial(purgatory_, dep_yield),
    "hyx breaker": partial(hyx_breaker, dep_yield),
    "reference: Lock-guarded breaker": partial(async_lock_breaker, dep_yield),
    "reference: threading.Lock breaker in threads": thread_lock_breaker,
}
# Worker-thread hops cost ~300 us each here: larger herds take minutes (--quick: seconds).
THREAD_LIMIT, QUICK_THREAD_LIMIT = 1_000, 100


async def _burst(fn: Call, callers: int) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def caller() -> None:
        for i in range(CALLS_EACH):
            start = time.perf_counter()
            await fn(i)
            latencies.append(time.perf_counter() - start)

    gc.collect()
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(callers):
            tg.start_soon(caller)
    elapsed = time.perf_counter() - start
    return callers * CALLS_EACH / elapsed, latencies


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def _measure(
    sizes: list[int], rounds: int, thread_limit: int
) -> tuple[dict[tuple[str, int], dict[str, float]], dict[str, str]]:
    results: dict[tuple[str, int], dict[str, list[float]]] = {}
    failures: dict[str, str] = {}
    for size in sizes:
        for round_ in range(rounds):
            names = list(SUBJECTS)
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                if name in failures or (
                    name.startswith("reference: threading") and size > thread_limit
                ):
                    continue
                try:
                    async with SUBJECTS[name]() as fn:
                        throughput, latencies = await _burst(fn, size)
                except Exception as exc:
                    failures[name] = type(exc).__name__
                    continue
                cell = results.setdefault((name, size), {"tput": [], "p50": [], "p99": []})
                cell["tput"].append(throughput)
                cell["p50"].append(_quantile(latencies, 0.50))
                cell["p99"].append(_quantile(latencies, 0.99))
    return {
        key: {metric: median(values) for metric, values in cell.items()}
        for key, cell in results.items()
    }, failures


def run(backend: str, *, quick: bool) -> tuple[str, dict[str, Any]]:
    sizes = [1, 10, 100, 1_000] if quick else [1, 10, 100, 1_000, 10_000]
    rounds = 1 if quick else 5
    thread_limit = QUICK_THREAD_LIMIT if quick else THREAD_LIMIT
    results, failures = anyio.run(_measure, sizes, rounds, thread_limit, backend=backend)
    table = Table(["subject", "callers", "calls/s", "vs bare", "p50 µs", "p99 µs", "p99 vs bare"])
    for name in SUBJECTS:
        if name in failures:
            table.add(name, "all", f"cannot run on {backend}: {failures[name]}", "", "", "", "")
            continue
        for size in sizes:
            cell = results.get((name, size))
            base = results.get(("bare await", size))
            if cell is None or base is None:
                table.add(name, f"{size:,}", "skipped (thread hops too slow)", "", "", "", "")
                continue
            table.add(
                name,
                f"{size:,}",
                f"{cell['tput']:,.0f}",
                f"{cell['tput'] / base['tput']:.2f}x",
                f"{cell['p50'] * 1e6:,.1f}",
                f"{cell['p99'] * 1e6:,.1f}",
                f"{cell['p99'] / base['p99']:.2f}x",
            )
    text = (
        header("contention: N concurrent callers x 20 calls, dependency `await sleep(0)`", backend)
        + f"\nMedians of {rounds} interleaved rounds.\n\n"
        + table.markdown()
    )
    return text, {"results": results, "sizes": sizes, "failures": failures}


if __name__ == "__main__":
    cli(run)
