"""
Issue 20, part 1: does ``Bulkhead(max_concurrent=AdaptiveLimit())`` find a dependency's knee?

A simulated dependency answers in 20 ms up to ``knee`` calls in flight; past it, each extra
call adds 20 ms / knee (it queues inside: capacity is ``knee / 20 ms`` calls per second,
whatever the concurrency). An open-loop Poisson load (seeded) drives it through the real
supervisor, on trio with ``MockClock(autojump_threshold=0)``: virtual time, so the numbers
are exact and the same on every machine.

Phases (30 s):

1. 0-10 s: 1200 calls/s, knee 16 (capacity 800/s): overload.
2. 10-20 s: 1200 calls/s, knee 8 (the dependency loses half its capacity: 400/s).
3. 20-30 s: 300 calls/s, knee 8: below capacity.

Subjects: ``Bulkhead(max_concurrent=AdaptiveLimit())`` (all defaults, ``max_queued=0``) and
fixed limits from a sweep, with the same queue. Reported: goodput (successful calls per
second, whole run), p99 latency of successes per phase against the unloaded 20 ms, and for
the adaptive limit its settling time after each change: the first moment from which the
limit stays within ±25 % of the knee to the end of the overload phase.

    python -m benchmarks.adaptive
"""

from __future__ import annotations

import math
import random
from typing import Any

from policies import AdaptiveLimit, Bulkhead
from supervisor import BulkheadFull, Supervisor

__all__ = ("PHASES", "run", "simulate")

UNLOADED = 0.020
#: (start, end, arrivals per second, knee)
PHASES: tuple[tuple[float, float, float, int], ...] = (
    (0.0, 10.0, 1200.0, 16),
    (10.0, 20.0, 1200.0, 8),
    (20.0, 30.0, 300.0, 8),
)
SWEEP = (4, 6, 8, 12, 16, 20, 24, 32, 48, 64, 128, 200)


def _p99(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def simulate(max_concurrent: int | AdaptiveLimit, seed: int = 20) -> dict[str, Any]:
    """One run on virtual time: per-call records and the limit every 100 ms."""
    import trio
    import trio.testing

    records: list[tuple[float, float, bool]] = []  # (start, latency, succeeded)
    limits: list[tuple[float, int | None]] = []
    rng = random.Random(seed)

    async def main() -> None:
        running = 0
        knee = PHASES[0][3]

        async def dependency() -> None:
            nonlocal running
            running += 1
            try:
                await trio.sleep(UNLOADED * max(1.0, running / knee))
            finally:
                running -= 1

        sup = Supervisor()
        sup.register("dep", dependency, bulkhead=Bulkhead(max_concurrent=max_concurrent))

        async def one() -> None:
            start = trio.current_time()
            try:
                await sup.call("dep")
            except BulkheadFull:
                records.append((start, 0.0, False))
            else:
                records.append((start, trio.current_time() - start, True))

        async def watch() -> None:
            while True:
                limits.append((trio.current_time(), sup.status("dep").limit))
                await trio.sleep(0.1)

        async with sup, trio.open_nursery() as calls:
            calls.start_soon(watch)
            now = 0.0
            for start, end, rate, phase_knee in PHASES:
                knee = phase_knee
                now = start
                while True:
                    now += rng.expovariate(rate)
                    if now >= end:
                        break
                    await trio.sleep_until(now)
                    calls.start_soon(one)
            await trio.sleep_until(PHASES[-1][1])
            calls.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return {"records": records, "limits": limits}


def _settling(limits: list[tuple[float, int | None]], start: float, end: float, knee: int) -> float:
    """
    Seconds from *start* until the limit stays within ±25 % of *knee* up to *end*: judged on
    the median of each 0.5 s, so the machine's probes (one 50 ms window at half the limit,
    every 30 windows) do not count as leaving the band.
    """
    settled = math.inf
    points = [(at, limit) for at, limit in limits if start <= at < end and limit is not None]
    for i in range(len(points)):
        at = points[i][0]
        span = sorted(limit for t, limit in points if at <= t < at + 0.5)
        median = span[len(span) // 2]
        if not 0.75 * knee <= median <= 1.25 * knee:
            settled = math.inf
        elif settled == math.inf:
            settled = at - start
    return settled


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    records = run["records"]
    duration = PHASES[-1][1] - PHASES[0][0]
    goodput = sum(1 for _, _, ok in records if ok) / duration
    p99 = []
    for start, end, _, _ in PHASES:
        p99.append(_p99([lat for at, lat, ok in records if ok and start <= at < end]))
    return {"goodput": goodput, "p99": p99}


def run() -> dict[str, Any]:
    fixed = {limit: summarise(simulate(limit)) for limit in SWEEP}
    adaptive_run = simulate(AdaptiveLimit())
    adaptive = summarise(adaptive_run)
    limits = adaptive_run["limits"]
    settling = [_settling(limits, start, end, knee) for start, end, _, knee in PHASES[:2]]
    best = max(fixed, key=lambda limit: fixed[limit]["goodput"])
    within = [limit for limit in fixed if max(fixed[limit]["p99"]) <= 2 * UNLOADED]
    best_within = max(within, key=lambda limit: fixed[limit]["goodput"])
    return {
        "best_within": best_within,
        "fixed": fixed,
        "adaptive": adaptive,
        "best": best,
        "settling": settling,
        "limits": limits,
    }


def _report(result: dict[str, Any]) -> str:
    phases = " | ".join(f"p99 {s:g}-{e:g} s" for s, e, _, _ in PHASES)
    lines = [
        f"| subject | goodput (calls/s) | {phases} |",
        "|---|---:|" + "---:|" * len(PHASES),
    ]

    def row(name: str, summary: dict[str, Any]) -> str:
        p99 = " | ".join(f"{v * 1000:.1f} ms" for v in summary["p99"])
        return f"| {name} | {summary['goodput']:.1f} | {p99} |"

    lines.append(row("AdaptiveLimit() (defaults)", result["adaptive"]))
    for limit, summary in result["fixed"].items():
        lines.append(row(f"fixed {limit}", summary))
    best = result["fixed"][result["best"]]
    adaptive = result["adaptive"]
    ratio = adaptive["goodput"] / best["goodput"]
    worst_p99 = max(adaptive["p99"])
    lines += [
        "",
        f"best fixed limit: {result['best']} ({best['goodput']:.1f} calls/s);"
        f" adaptive goodput / best fixed: {ratio:.3f} (goal >= 0.90)",
        f"best fixed limit with p99 <= 2x unloaded in every phase: {result['best_within']}"
        f" ({result['fixed'][result['best_within']]['goodput']:.1f} calls/s); adaptive /"
        f" it: {adaptive['goodput'] / result['fixed'][result['best_within']]['goodput']:.3f}",
        f"adaptive p99, worst phase: {worst_p99 * 1000:.1f} ms = {worst_p99 / UNLOADED:.2f}x"
        " the unloaded 20 ms (goal <= 2x)",
        "settling within ±25 % of the knee: "
        + ", ".join(
            f"{s:.1f} s after t={start:g} s (knee {knee})"
            for s, (start, _, _, knee) in zip(result["settling"], PHASES, strict=False)
        )
        + " (goal <= 10 s)",
        "adaptive limit, every second: "
        + " ".join(str(limit) for at, limit in result["limits"] if abs(at - round(at)) < 1e-6),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(_report(run()))
