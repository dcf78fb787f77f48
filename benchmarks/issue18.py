"""
Issue 18's targets as same-run ratios, for two checkouts of ringfence side by side.

    python -m benchmarks.issue18 [--backend trio] [--runs 5] [--tree DIR ...]

Each run is one fresh process per tree, the trees alternating (A B A B ...), so drift on this
shared machine hits them alike. In a process every subject is entered at once and timed in
interleaved rounds (order rotating) by the thread's CPU time, and each ratio is taken to a
reference timed in the same process:

* P1: ringfence breaker+bulkhead / ``circuitbreaker``'s decorator, one caller;
* full stack (retry + breaker + attempt timeout + bulkhead + fallback) / ``circuitbreaker``;
* the retry budget's own cost (``RetryBudget.on_call``, once per call) / ``circuitbreaker``:
  a loop calling it, less the same loop without the call (timed right after it, in the same
  round), so the loop's own iterations are not counted as the budget's;
* trio: ringfence breaker+bulkhead / (``circuitbreaker`` + one bare ``CancelScope``, i.e.
  circuitbreaker + scope - bare await);
* P3: 10,000 callers x 20 calls of ``await sleep(0)``: throughput / a bare await's.

The table gives, per tree, the median of the runs' ratios and their range. Needs the
``bench`` extra (``circuitbreaker``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

__all__ = ("main",)

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script: see main()
    sys.path.pop(0)  # this directory: its modules are the tree's benchmarks package

_CALLS, _ROUNDS = 20_000, 5
_P3_CALLERS, _P3_ROUNDS = 10_000, 3


async def _child(backend: str) -> dict[str, float]:
    import anyio

    from benchmarks._subjects import (
        OVERHEAD_SUBJECTS,
        bare,
        dep_yield,
        ringfence_breaker_bulkhead,
    )
    from benchmarks.contention import CALLS_EACH
    from policies import Budget

    names = ["bare await", "circuitbreaker", "ringfence breaker+bulkhead", "ringfence full stack"]
    if backend == "trio":
        names.append("reference: bare await in the backend's cancel scope")
    samples: dict[str, list[float]] = {name: [] for name in [*names, "budget"]}
    async with AsyncExitStack() as stack:
        entered = {n: await stack.enter_async_context(OVERHEAD_SUBJECTS[n]()) for n in names}
        for fn in entered.values():
            for i in range(2_000):  # warm, and past the latency window's first 1,024
                await fn(i)
        for round_ in range(_ROUNDS):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                fn = entered[name]
                start = time.thread_time_ns()
                for i in range(_CALLS):
                    await fn(i)
                samples[name].append((time.thread_time_ns() - start) / _CALLS)
            # The budget's own cost: its loop, less the same loop without the call, timed
            # next to it (the loop's own iterations and arguments are not the budget's).
            budget = Budget().machine()
            on_call = budget.on_call
            start = time.thread_time_ns()
            for i in range(_CALLS):
                on_call(i * 1e-6)
            with_budget = time.thread_time_ns() - start
            start = time.thread_time_ns()
            for i in range(_CALLS):
                i * 1e-6  # the loop's own work, without the call
            samples["budget"].append((with_budget - (time.thread_time_ns() - start)) / _CALLS)
    result = {name: statistics.median(values) for name, values in samples.items()}

    async def burst(fn: Callable[[int], Any]) -> float:
        async def caller() -> None:
            for i in range(CALLS_EACH):
                await fn(i)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(_P3_CALLERS):
                tg.start_soon(caller)
        return _P3_CALLERS * CALLS_EACH / (time.perf_counter() - start)

    p3: dict[str, list[float]] = {"bare": [], "ringfence": []}
    for round_ in range(_P3_ROUNDS):
        for name in ["bare", "ringfence"] if round_ % 2 == 0 else ["ringfence", "bare"]:
            factory = bare if name == "bare" else ringfence_breaker_bulkhead
            kwargs = {} if name == "bare" else {"max_concurrent": 100_000}
            async with factory(dep_yield, **kwargs) as fn:
                p3[name].append(await burst(fn))
    result["p3 bare"] = statistics.median(p3["bare"])
    result["p3 ringfence"] = statistics.median(p3["ringfence"])
    return result


def _ratios(ns: dict[str, float], backend: str) -> dict[str, float]:
    cb = ns["circuitbreaker"]
    ratios = {
        "P1 breaker+bulkhead / circuitbreaker": ns["ringfence breaker+bulkhead"] / cb,
        "full stack / circuitbreaker": ns["ringfence full stack"] / cb,
        "retry budget on_call / circuitbreaker": ns["budget"] / cb,
        "P3 10k callers: throughput / bare": ns["p3 ringfence"] / ns["p3 bare"],
        "ns: bare await": ns["bare await"],
        "ns: circuitbreaker": cb,
        "ns: breaker+bulkhead": ns["ringfence breaker+bulkhead"],
        "ns: full stack": ns["ringfence full stack"],
    }
    if backend == "trio":
        scope = ns["reference: bare await in the backend's cancel scope"] - ns["bare await"]
        ratios["trio: breaker+bulkhead / (circuitbreaker + one CancelScope)"] = ns[
            "ringfence breaker+bulkhead"
        ] / (cb + scope)
    return ratios


def _extra_path() -> list[str]:
    extra = os.environ.get("PYTHONPATH")
    return extra.split(os.pathsep) if extra else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import anyio

        print(json.dumps(anyio.run(_child, args.backend, backend=args.backend)))
        return 0
    trees = [Path(__file__).resolve().parent.parent, *args.tree]
    runs: dict[Path, list[dict[str, float]]] = {tree: [] for tree in trees}
    for run in range(args.runs):
        for tree in trees if run % 2 == 0 else trees[::-1]:
            # This file runs as a script, the measured tree first on the path: a base tree
            # need not have this module.
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--backend", args.backend],
                cwd=tree,
                env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), *_extra_path()])},
                capture_output=True,
                text=True,
                check=True,
            )
            runs[tree].append(_ratios(json.loads(out.stdout), args.backend))
    print(f"| {args.backend}, {args.runs} runs: median (range) | " + " | ".join(map(str, trees)))
    print("|---|" + "---:|" * len(trees))
    for key in runs[trees[0]][0]:
        cells = []
        for tree in trees:
            values = [r[key] for r in runs[tree]]
            fmt = "{:,.0f}" if key.startswith("ns:") else "{:.2f}"
            cells.append(
                f"{fmt.format(statistics.median(values))} "
                f"({fmt.format(min(values))}-{fmt.format(max(values))})"
            )
        print(f"| {key} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
