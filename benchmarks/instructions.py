"""
Instructions per call on the success path, counted by valgrind (callgrind): a measure that
does not move with the load on a shared machine, for comparing two trees of ringfence.

    python -m benchmarks.instructions [--backend trio] [--tree DIR ...] [SUBJECT ...]

Each subject (a name from ``benchmarks._subjects.OVERHEAD_SUBJECTS``) is run for 1,000 and
for 3,000 sequential calls in a fresh process under callgrind, with the garbage collector
off and ``PYTHONHASHSEED=0``; the difference over 2,000 calls is the count per call (the
start-up cancels out). ``--tree`` runs the same subjects from other checkouts (``git
worktree add``), so a change is compared with its base in one run. Needs valgrind
(Debian's ``valgrind``); the counts are repeatable to the instruction on one machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ("collected", "count")

_CHILD = """
import gc, sys
gc.disable()
sys.path.insert(0, ".")
import anyio
from benchmarks._subjects import OVERHEAD_SUBJECTS

async def main(name, n):
    async with OVERHEAD_SUBJECTS[name]() as fn:
        for i in range(n):
            await fn(i)

anyio.run(main, sys.argv[1], int(sys.argv[2]), backend=sys.argv[3])
"""

_DEFAULT = (
    "ringfence breaker+bulkhead",
    "ringfence full stack",
    "ringfence breaker+bulkhead+1 rate limit",
)


_VALGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")


def collected(tree: Path, child: str, *argv: str) -> int:
    """Instructions the Python program *child* (given *argv*) runs in *tree*, by callgrind."""
    run = subprocess.run(
        [*_VALGRIND, sys.executable, "-c", child, *argv],
        cwd=tree,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        msg = f"no instruction count from valgrind: {run.stderr[-500:]}"
        raise RuntimeError(msg)
    return int(found.group(1))


def _collected(tree: Path, subject: str, calls: int, backend: str) -> int:
    return collected(tree, _CHILD, subject, str(calls), backend)


def count(tree: Path, subject: str, backend: str = "asyncio") -> int:
    """Instructions per call of *subject* in *tree* (a checkout of ringfence)."""
    return (
        _collected(tree, subject, 3000, backend) - _collected(tree, subject, 1000, backend)
    ) // 2000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("subjects", nargs="*", default=list(_DEFAULT))
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--tree", action="append", type=Path, default=[])
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind")
        return 2
    trees = [Path(__file__).resolve().parent.parent, *args.tree]
    print(f"| subject ({args.backend}) | " + " | ".join(str(t) for t in trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for subject in args.subjects:
        counts = [count(tree, subject, args.backend) for tree in trees]
        print(f"| {subject} | " + " | ".join(f"{c:,}" for c in counts) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
