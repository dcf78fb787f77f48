"""
Run every benchmark question on asyncio and trio, write tables and plots, print the verdicts.

    python -m benchmarks            # full run: benchmarks/results/
    python -m benchmarks --quick    # under a minute, for CI: benchmarks/out/
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import structlog

from . import contention, memory, overhead, rejection
from ._harness import Table, out_dir
from ._subjects import BREAKERS, STACKS


def _plots(directory: Path, over: dict[str, Any], cont: dict[str, Any], backend: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    ns = over["ns"]
    names = sorted(ns, key=ns.get)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    colours = ["#1a7f37" if n.startswith("ringfence") else "#888888" for n in names]
    ax.barh(names, [ns[n] for n in names], color=colours)
    ax.set_xscale("log")
    ax.set_xlabel("ns per call (log scale; median)")
    ax.set_title(f"success-path cost per call, one caller ({backend})")
    for i, n in enumerate(names):
        ax.text(ns[n], i, f" {ns[n]:,.0f}", va="center", fontsize=8)
    fig.tight_layout()
    path = directory / f"overhead-{backend}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    results, sizes = cont["results"], cont["sizes"]
    subjects = sorted({name for name, _ in results})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in subjects:
        xs = [s for s in sizes if (name, s) in results]
        style = {"linewidth": 2.5} if name.startswith("ringfence") else {"linewidth": 1}
        left.plot(xs, [results[(name, s)]["tput"] for s in xs], marker="o", label=name, **style)
        right.plot(
            xs, [results[(name, s)]["p99"] * 1e6 for s in xs], marker="o", label=name, **style
        )
    for axis, label in ((left, "calls per second"), (right, "p99 latency, µs")):
        axis.set_xscale("log")
        axis.set_xlabel("concurrent callers (x 20 calls each)")
        axis.set_ylabel(label)
    right.set_yscale("log")
    left.legend(fontsize=7)
    fig.suptitle(f"contention: dependency `await sleep(0)` ({backend})")
    fig.tight_layout()
    path = directory / f"contention-{backend}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def _verdicts(
    over: dict[str, Any], cont: dict[str, Any], rej: dict[str, Any], mem: dict[str, Any]
) -> str:
    ns = over["ns"]
    table = Table(["target", "measured (asyncio, this run)", "holds"])

    def row(label: str, value: str, ok: bool) -> None:
        table.add(label, value, "yes" if ok else "**no**")

    p1 = ns["ringfence breaker+bulkhead"] / ns["circuitbreaker"]
    row("P1 breaker+bulkhead <= 1.0x circuitbreaker", f"{p1:.2f}x", p1 <= 1.0)
    peer_stacks = {n: ns[n] for n in STACKS if n in ns}
    fastest = min(peer_stacks, key=peer_stacks.__getitem__)
    p2 = ns["ringfence full stack"] / peer_stacks[fastest]
    row("P2 full stack <= 0.25x fastest peer stack", f"{p2:.2f}x ({fastest})", p2 <= 0.25)
    results, sizes = cont["results"], cont["sizes"]
    top = sizes[-1]
    bare = results[("bare await", top)]
    ours = results[("ringfence breaker+bulkhead", top)]
    peers = [results[(n, top)]["tput"] / bare["tput"] for n in BREAKERS if (n, top) in results]
    ratio = ours["tput"] / bare["tput"]
    best = max(peers) if peers else 0.0
    row(
        f"P3 {top:,} callers: throughput >= 0.85x bare and >= best peer; p99 <= 1.3x bare",
        f"{ratio:.2f}x bare (best peer {best:.2f}x); p99 {ours['p99'] / bare['p99']:.2f}x",
        ratio >= 0.85 and ratio >= best and ours["p99"] <= 1.3 * bare["p99"],
    )
    p4 = ours["tput"] / results[("ringfence breaker+bulkhead", 10)]["tput"]
    row(f"P4 throughput at {top:,} >= 0.9x at 10 callers", f"{p4:.2f}x", p4 >= 0.9)
    r = rej["ns"]
    p5 = r["ringfence open breaker (BreakerOpen)"] / r["ringfence success path"]
    row("P5 open-breaker rejection <= 1.5x success path", f"{p5:.2f}x", p5 <= 1.5)
    p6 = mem["own"]
    growth = mem["growth"]
    row(
        "P6 <= 1 KiB per queued call; no growth over the soak",
        f"{p6:,.0f} B own ({mem['queued']:,.0f} B with its task); soak growth {growth:+,} B",
        p6 <= 1024 and abs(growth) < 64 * 1024,
    )
    return "## Verdicts\n\n" + table.markdown()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (< 60 s)")
    parser.add_argument("--backend", choices=("asyncio", "trio", "both"), default="both")
    args = parser.parse_args()
    # ringfence's own log lines (an isolated breaker, rate-limited rejections) go to stderr:
    # stdout is the tables.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    # A peer that cannot run on trio raises before awaiting the coroutine it was handed.
    warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
    directory = out_dir(args.quick)
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    started = time.monotonic()
    sections: list[str] = []
    plots: list[Path] = []
    verdicts = ""
    for backend in backends:
        collected: dict[str, Any] = {}
        for name, module in (
            ("overhead", overhead),
            ("contention", contention),
            ("rejection", rejection),
            ("memory", memory),
        ):
            text, data = module.run(backend, quick=args.quick)
            print(text, flush=True)
            sections.append(text)
            collected[name] = data
        plots += _plots(directory, collected["overhead"], collected["contention"], backend)
        if backend == "asyncio":
            verdicts = _verdicts(
                collected["overhead"],
                collected["contention"],
                collected["rejection"],
                collected["memory"],
            )
            print(verdicts)
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    report = directory / "tables.md"
    report.write_text(
        f"# Benchmark tables\n\nReproduce with `{command}` (or `make bench`).\n\n"
        + verdicts
        + "\n"
        + "\n".join(sections)
    )
    print(f"tables: {report.resolve()}")
    for path in plots:
        print(f"plot: {path.resolve()}")
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
