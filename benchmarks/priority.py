"""
Issue 20, part 3: under overload, does ``supervisor.priority`` keep interactive calls served
while batch work yields?

A simulated dependency answers every call in 50 ms behind ``Bulkhead(max_concurrent=8,
max_queued=16)``: capacity 160 calls/s. Two open-loop Poisson streams (seeded) drive it
through the real supervisor, on trio with ``MockClock(autojump_threshold=0)``: virtual time,
so the figures are exact and the same on every machine.

* interactive: 60 calls/s, ``Priority.CRITICAL`` when priorities are on;
* batch: 200 calls/s, ``Priority.SHEDDABLE`` when priorities are on.

Offered 260 calls/s, 1.6x capacity, for 20 s. Subjects: the same load with no priority (every
call ``DEFAULT``: FIFO, a full queue refuses whoever arrives) and with priorities. A second
pair puts a ``RateLimit(150, burst=15, reserve=0.2)`` (no bulkhead queue: ``max_wait=0``) in
front instead, with and without the reserve. Reported per stream: goodput (successful calls
per second), the share refused, and the p50/p99 latency of successes (queueing included)
against the unloaded 50 ms.

    python -m benchmarks.priority
"""

from __future__ import annotations

import math
import random
from typing import Any

from policies import Bulkhead, Priority, RateLimit
from supervisor import BulkheadFull, RateLimited, Supervisor

__all__ = ("run", "simulate")

LATENCY = 0.050
DURATION = 20.0
#: stream name -> (arrivals per second, priority when priorities are on)
STREAMS: dict[str, tuple[float, Priority]] = {
    "interactive": (60.0, Priority.CRITICAL),
    "batch": (200.0, Priority.SHEDDABLE),
}


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def simulate(*, priorities: bool, limit: str = "bulkhead", seed: int = 20) -> dict[str, Any]:
    """One run on virtual time: per stream, (latency, succeeded) of every call."""
    import trio
    import trio.testing

    records: dict[str, list[tuple[float, bool]]] = {name: [] for name in STREAMS}

    async def main() -> None:
        async def dependency() -> None:
            await trio.sleep(LATENCY)

        sup = Supervisor()
        if limit == "bulkhead":
            sup.register("dep", dependency, bulkhead=Bulkhead(max_concurrent=8, max_queued=16))
        else:
            reserve = 0.2 if priorities else 0.0
            sup.register("dep", dependency, rate_limit=RateLimit(150, burst=15, reserve=reserve))

        async def one(name: str) -> None:
            level = STREAMS[name][1] if priorities else Priority.DEFAULT
            start = trio.current_time()
            try:
                with sup.priority(level):
                    await sup.call("dep")
            except (BulkheadFull, RateLimited):
                records[name].append((0.0, False))
            else:
                records[name].append((trio.current_time() - start, True))

        async def stream(name: str, rate: float, rng: random.Random) -> None:
            now = 0.0
            while True:
                now += rng.expovariate(rate)
                if now >= DURATION:
                    return
                await trio.sleep_until(now)
                calls.start_soon(one, name)

        async with sup, trio.open_nursery() as calls:
            for i, (name, (rate, _)) in enumerate(STREAMS.items()):
                calls.start_soon(stream, name, rate, random.Random(seed + i))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return records


def summarise(records: dict[str, list[tuple[float, bool]]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, calls in records.items():
        ok = [latency for latency, succeeded in calls if succeeded]
        out[name] = {
            "offered": len(calls) / DURATION,
            "goodput": len(ok) / DURATION,
            "refused": 1 - len(ok) / len(calls) if calls else math.nan,
            "p50": _quantile(ok, 0.50),
            "p99": _quantile(ok, 0.99),
        }
    return out


def run() -> dict[str, Any]:
    return {
        (limit, priorities): summarise(simulate(priorities=priorities, limit=limit))
        for limit in ("bulkhead", "rate_limit")
        for priorities in (False, True)
    }


def _report(result: dict[Any, Any]) -> str:
    lines = [
        "| limit | priorities | stream | offered/s | goodput/s | refused | p50 | p99 |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for (limit, priorities), streams in result.items():
        for name, s in streams.items():
            lines.append(
                f"| {limit} | {'on' if priorities else 'off'} | {name} | {s['offered']:.1f}"
                f" | {s['goodput']:.1f} | {s['refused'] * 100:.1f} % | {s['p50'] * 1000:.1f} ms"
                f" | {s['p99'] * 1000:.1f} ms |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(_report(run()))
