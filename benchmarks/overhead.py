"""
Question 1: what does a protected call cost on the success path, one caller at a time?

Every subject is entered at once, then timed in interleaved rounds (subject order rotates),
so drift on this shared machine hits all of them alike; the table quotes medians and the
ratio to a bare ``await`` measured in the same run.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio

from ._harness import Table, cli, header, median, time_sequential
from ._subjects import OVERHEAD_SUBJECTS, Call

__all__ = ("run",)


async def _measure(calls: int, rounds: int) -> tuple[dict[str, float], dict[str, str]]:
    samples: dict[str, list[float]] = {}
    failures: dict[str, str] = {}
    async with AsyncExitStack() as stack:
        entered: dict[str, Call] = {}
        for name, factory in OVERHEAD_SUBJECTS.items():
            try:
                fn = await stack.enter_async_context(factory())
                await fn(0)  # some peers only fail at their first call
                entered[name] = fn
            except Exception as exc:  # a peer that cannot run here
                failures[name] = type(exc).__name__
        names = list(entered)
        for round_ in range(rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                samples.setdefault(name, []).append(await time_sequential(entered[name], calls))
    return {name: median(values) for name, values in samples.items()}, failures


def run(backend: str, *, quick: bool) -> tuple[str, dict[str, Any]]:
    calls, rounds = (5_000, 3) if quick else (50_000, 9)
    results, failures = anyio.run(_measure, calls, rounds, backend=backend)
    bare = results["bare await"]
    table = Table(["subject", "ns/call (median)", "ratio to bare await"])
    for name in OVERHEAD_SUBJECTS:
        if name in results:
            table.add(name, f"{results[name]:,.0f}", f"{results[name] / bare:.1f}x")
        else:
            table.add(name, f"cannot run on {backend}: {failures[name]}", "")
    text = (
        header("overhead: success path, one caller", backend)
        + f"\n{calls:,} sequential calls per round, {rounds} interleaved rounds.\n\n"
        + table.markdown()
    )
    return text, {"ns": results, "failures": failures}


if __name__ == "__main__":
    cli(run)
