"""Shared plumbing: headers, interleaved timing with medians, tables."""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from pathlib import Path

__all__ = [
    "Table",
    "cli",
    "header",
    "out_dir",
    "time_sequential",
    "versions",
]

PACKAGES = (
    "ringfence",
    "anyio",
    "trio",
    "attrs",
    "structlog",
    "circuitbreaker",
    "aiobreaker",
    "purgatory",
    "hyx",
    "tenacity",
    "stamina",
    "pyresilience",
)


def versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def header(question: str, backend: str) -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"## {question} ({backend})\n\n"
        f"- machine: {platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} cores, shared\n"
        f"- Python {sys.version.split()[0]} ({platform.python_implementation()}), backend {backend}\n"
        f"- {versions()}\n"
    )


def out_dir(quick: bool) -> Path:
    path = Path(__file__).parent / ("out" if quick else "results")
    path.mkdir(parents=True, exist_ok=True)
    return path


async def time_sequential(fn: Callable[[int], Awaitable[object]], calls: int) -> float:
    """Nanoseconds per call for *calls* sequential awaits of ``fn(i)`` (GC collected first)."""
    gc.collect()
    start = time.perf_counter_ns()
    for i in range(calls):
        await fn(i)
    return (time.perf_counter_ns() - start) / calls


class Table:
    """A markdown table that also prints."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.rows: list[list[str]] = []

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cli(run: Callable[..., tuple[str, object]]) -> None:
    """``python -m benchmarks.<question> [--backend trio] [--quick]``: one question alone."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(run(args.backend, quick=args.quick)[0])
