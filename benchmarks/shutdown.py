"""
What leaving the supervisor costs per call still running, counted by valgrind (callgrind), for
comparing trees: on asyncio the fast path registers nothing per call, and shutdown walks every
task's await chain to find its attempts (``_backends._asyncio_general.cut_fast``).

    python -m benchmarks.shutdown [--tree DIR ...]

In a fresh process (garbage collector off, ``PYTHONHASHSEED=0``) N callers, each in its own
task, are parked in the dependency (on a future of their own); then either the supervisor is
left with all of them running ("cut") or they are let go first ("done"). Each is run for N =
1,000 and 3,000: the difference over 2,000 is the count per call, the whole call's life
included; "cut - done" is what the cut at shutdown costs per call, beyond ending normally.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .instructions import collected

__all__ = ("count",)

_CHILD = """
import asyncio, gc, sys
gc.disable()
sys.path.insert(0, ".")
from supervisor import Supervisor, SupervisorClosed
from policies import Bulkhead

async def main(n, cut):
    sup = Supervisor()
    futures = []

    async def dep():
        future = asyncio.get_running_loop().create_future()
        futures.append(future)
        await future

    sup.register("dep", dep, bulkhead=Bulkhead(max_concurrent=n + 1))

    async def caller():
        try:
            await sup.call("dep")
        except SupervisorClosed:
            pass

    async with sup:
        tasks = [asyncio.ensure_future(caller()) for _ in range(n)]
        while len(futures) < n:
            await asyncio.sleep(0)
        if not cut:
            for future in futures:
                future.set_result(None)
            await asyncio.gather(*tasks)
    await asyncio.gather(*tasks)

asyncio.run(main(int(sys.argv[1]), sys.argv[2] == "cut"))
"""


def _collected(tree: Path, calls: int, mode: str) -> int:
    return collected(tree, _CHILD, str(calls), mode)


def count(tree: Path, mode: str) -> int:
    """Instructions per call in *tree*, the supervisor left with the calls running ("cut")
    or after they ended ("done")."""
    return (_collected(tree, 3000, mode) - _collected(tree, 1000, mode)) // 2000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path, default=[])
    args = parser.parse_args(argv)
    trees = [Path.cwd(), *args.tree]
    print("| instructions per call (asyncio) | " + " | ".join(map(str, trees)) + " |")
    print("|---|" + "---:|" * len(trees))
    counts = {mode: [count(tree, mode) for tree in trees] for mode in ("cut", "done")}
    for mode, row in counts.items():
        print(f"| {mode} | " + " | ".join(f"{n:,}" for n in row) + " |")
    extra = [cut - done for cut, done in zip(counts["cut"], counts["done"], strict=True)]
    print("| cut - done | " + " | ".join(f"{n:,}" for n in extra) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
