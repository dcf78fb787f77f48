"""
A dependency that hangs (issue 20, part 2): when does the breaker see it?

    python -m benchmarks.hung [--tree DIR ...]

Virtual time (trio's ``MockClock(autojump_threshold=0)``, the real supervisor), so the figures
are exact and the same on every machine. A dependency whose calls never return, behind
``Breaker(failure_threshold=3, slow_call=1.0)`` (and the ratio form, ``failure_ratio=0.5,
min_throughput=3``) and no timeout: three callers start at 0 s; ``status()`` is read every
10 ms up to 60 s, and once it says open a fourth caller calls. The table gives, per tree, when
the breaker was seen open and how long that caller waited to learn it (``BreakerOpen``), or
"never" when it did not open within 60 s.
``--tree`` runs the same in other checkouts (one process each), so a change is compared with
its base.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

__all__ = ("main",)

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script: see main()
    sys.path.pop(0)  # this directory: its modules are the tree's benchmarks package

HORIZON = 60.0
POLL = 0.01  # how often status() is read (virtual seconds)


def measure(ratio: bool) -> tuple[float | None, float | None]:
    """(when the breaker was seen open, how long that caller waited), or Nones: never."""
    import anyio
    import trio.testing

    from policies import Breaker
    from supervisor import BreakerOpen, Supervisor

    found: list[tuple[float, float]] = []

    async def hang() -> None:
        await anyio.sleep_forever()

    async def run() -> None:
        if ratio:
            breaker = Breaker(failure_ratio=0.5, min_throughput=3, slow_call=1.0)
        else:
            breaker = Breaker(failure_threshold=3, slow_call=1.0)
        sup = Supervisor()
        sup.register("dep", hang, breaker=breaker)
        async with sup, anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(sup.call, "dep")
            start = anyio.current_time()
            while anyio.current_time() - start < HORIZON and not found:
                await anyio.sleep(POLL)
                if sup.status("dep").state != "open":
                    continue
                asked = anyio.current_time()  # the next caller, as soon as it is open
                try:
                    await sup.call("dep")
                except BreakerOpen:
                    found.append((asked - start, anyio.current_time() - asked))
            tg.cancel_scope.cancel()

    anyio.run(
        run, backend="trio", backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)}
    )
    return found[0] if found else (None, None)


def _row(seen: tuple[float | None, float | None]) -> str:
    at, waited = seen
    if at is None or waited is None:
        return f"never (not within {HORIZON:.0f} s)"
    return f"open by {at:.2f} s; the caller told in {waited * 1000:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child's run
    args = parser.parse_args(argv)
    if args.one:
        for ratio in (False, True):
            print(_row(measure(ratio)))
        return 0
    trees = [Path.cwd(), *args.tree]
    rows: dict[Path, list[str]] = {}
    for tree in trees:
        script = Path(__file__).resolve()
        run = subprocess.run(
            [sys.executable, str(script), "--one"],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},  # this tree's packages, not main's
            capture_output=True,
            text=True,
        )
        if run.returncode:
            sys.stderr.write(run.stderr)
            return run.returncode
        rows[tree] = run.stdout.splitlines()
    print("| breaker | " + " | ".join(str(tree) for tree in trees) + " |")
    print("|---|" + "---|" * len(trees))
    for i, label in enumerate(
        ("Breaker(failure_threshold=3, slow_call=1.0)", "Breaker(failure_ratio=0.5, slow_call=1.0)")
    ):
        print(f"| {label} | " + " | ".join(rows[tree][i] for tree in trees) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
