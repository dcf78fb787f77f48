"""
Does hedging cut the tail, and at what extra load? (issue 19)

    python -m benchmarks.hedging [--backend asyncio|trio|both] [--calls 2000] [--seed 19]

A dependency with a heavy tail: each attempt, independently, answers after a uniform 10-20 ms
(95 %) or after 500 ms (5 %). 2,000 calls one after another, each measured from the call to
its answer (for a stream: from ``async with`` to the first item), under three policies: no
hedging, ``Hedge(delay=0.05)`` and ``Hedge(delay=Hedge.quantile(0.95))``. The extra load is
``attempts / calls - 1`` (every attempt the dependency saw, cancelled losers included).

Everything runs on **virtual time**: trio's ``MockClock(autojump_threshold=0)`` and, on
asyncio, the tests' ``VirtualClockLoop`` (``tests/runtime/_virtual_loop.py``), which jumps to
the next timer whenever every task waits, as MockClock does. The latencies are therefore the
model's exactly (ringfence's own microseconds do not move a virtual clock), the run takes
seconds, and the same seed gives the same table on every machine. What it measures is the
policy's effect, not ringfence's CPU cost (``benchmarks.instructions`` measures that).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio

from policies import Hedge
from supervisor import Supervisor

from ._harness import Table, header

__all__ = ("POLICIES", "run")

ROOT = Path(__file__).resolve().parents[1]

#: the policies compared, by the label the table gives them
POLICIES: dict[str, Hedge | None] = {
    "no hedging": None,
    "Hedge(delay=0.05)": Hedge(delay=0.05),
    "Hedge.quantile(0.95)": Hedge(delay=Hedge.quantile(0.95)),
    "Hedge.quantile(0.95, cap=0.05)": Hedge(delay=Hedge.quantile(0.95, cap=0.05)),
}

FAST = (0.010, 0.020)  # a uniform answer, seconds
SLOW = 0.500  # the tail
TAIL = 0.05  # share of attempts in the tail


class HeavyTail:
    """The dependency model: each attempt draws its own latency; attempts are counted."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.attempts = 0

    def latency(self) -> float:
        self.attempts += 1
        if self.rng.random() < TAIL:
            return SLOW
        return self.rng.uniform(*FAST)

    async def call(self) -> str:
        await anyio.sleep(self.latency())
        return "answer"

    async def stream(self) -> AsyncIterator[str]:
        await anyio.sleep(self.latency())  # the time to the first token
        for token in ("first", "second", "third"):
            yield token


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def _measure(kind: str, hedge: Hedge | None, calls: int, seed: int) -> dict[str, float]:
    model = HeavyTail(seed)
    supervisor = Supervisor(rng=random.Random(seed))
    fn: Callable[[], Any] = model.call if kind == "call" else model.stream
    supervisor.register("dep", fn, hedge=hedge)
    latencies: list[float] = []
    async with supervisor:
        for _ in range(calls):
            start = anyio.current_time()
            if kind == "call":
                await supervisor.call("dep")
                latencies.append(anyio.current_time() - start)
            else:
                async with supervisor.stream("dep") as tokens:
                    await tokens.__anext__()
                    latencies.append(anyio.current_time() - start)
                    async for _ in tokens:
                        pass
        status = supervisor.status("dep")
    latencies.sort()
    return {
        "p50": _quantile(latencies, 0.50),
        "p95": _quantile(latencies, 0.95),
        "p99": _quantile(latencies, 0.99),
        "max": latencies[-1],
        "load": model.attempts / calls - 1,
        "hedges": status.hedges,
        "wins": status.hedge_wins,
    }


def _run_virtual(backend: str, kind: str, hedge: Hedge | None, calls: int, seed: int) -> Any:
    if backend == "trio":
        from trio.testing import MockClock

        options: dict[str, Any] = {"clock": MockClock(autojump_threshold=0)}
    else:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tests.runtime._virtual_loop import VirtualClockLoop

        options = {"loop_factory": VirtualClockLoop}
    return anyio.run(_measure, kind, hedge, calls, seed, backend=backend, backend_options=options)


def _seeds(backend: str, calls: int, seeds: int) -> str:
    """Each policy over *seeds* seeds (calls only): the spread of its p99 gain and load."""
    table = Table(
        ["policy", "p99 vs none: median (min-max)", "extra load: median (max)", "seeds >= 5x"]
    )
    for label, hedge in POLICIES.items():
        if hedge is None:
            continue
        gains, loads = [], []
        for seed in range(1, seeds + 1):
            base = _run_virtual(backend, "call", None, calls, seed)
            figures = _run_virtual(backend, "call", hedge, calls, seed)
            gains.append(base["p99"] / figures["p99"])
            loads.append(figures["load"])
        gains.sort()
        loads.sort()
        table.add(
            label,
            f"{gains[len(gains) // 2]:.1f}x ({gains[0]:.1f}-{gains[-1]:.1f}x)",
            f"{loads[len(loads) // 2] * 100:.1f} % ({loads[-1] * 100:.1f} %)",
            f"{sum(g >= 5 for g in gains)} of {seeds}",
        )
    return f"### calls over seeds 1-{seeds}, {calls:,} calls each\n\n" + table.markdown()


def run(
    backend: str, quick: bool = False, calls: int = 2000, seed: int = 19, seeds: int = 0
) -> tuple[str, dict[tuple[str, str], dict[str, float]]]:
    if quick:
        calls = min(calls, 500)
    results: dict[tuple[str, str], dict[str, float]] = {}
    sections = []
    for kind, what in (("call", "call latency"), ("stream", "stream: time to first item")):
        table = Table(
            [
                "policy",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "p99 vs none",
                "extra load",
                "hedges (won)",
            ]
        )
        for label, hedge in POLICIES.items():
            figures = results[(kind, label)] = _run_virtual(backend, kind, hedge, calls, seed)
            base = results[(kind, "no hedging")]
            table.add(
                label,
                *(f"{figures[q] * 1000:.1f}" for q in ("p50", "p95", "p99", "max")),
                f"{base['p99'] / figures['p99']:.1f}x lower" if hedge is not None else "-",
                f"{figures['load'] * 100:.1f} %",
                f"{figures['hedges']:.0f} ({figures['wins']:.0f})",
            )
        sections.append(f"### {what}, {calls:,} calls\n\n" + table.markdown())
    if seeds:
        sections.append(_seeds(backend, calls, seeds))
    text = (
        header("hedging a heavy-tailed dependency (virtual time)", backend)
        + f"- model: each attempt {FAST[0] * 1000:.0f}-{FAST[1] * 1000:.0f} ms (uniform,"
        f" {100 - TAIL * 100:.0f} %) or {SLOW * 1000:.0f} ms ({TAIL * 100:.0f} %), independent;"
        f" seed {seed}; calls one after another\n\n" + "\n".join(sections)
    )
    return text, results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hedging")
    parser.add_argument("--backend", choices=("asyncio", "trio", "both"), default="both")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--seeds", type=int, default=0, help="also a spread over seeds 1..N")
    args = parser.parse_args()
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    for backend in backends:
        print(run(backend, quick=args.quick, calls=args.calls, seed=args.seed, seeds=args.seeds)[0])


if __name__ == "__main__":
    main()
