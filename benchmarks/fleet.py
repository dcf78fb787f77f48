"""
Does the shared state's cost grow linearly with the fleet (issue 22, item 4)?

N replica processes (4, 8, 16), each a supervisor with ``RedisShared`` and ``deps``
dependencies (a breaker and a shared rate limit each, every one called a few times a second),
against one private redis-server. For each fleet size, over the same window:

- **bytes per replica per tick**: Redis's network bytes in and out (``INFO stats``) divided by
  the ticks the replicas made; the goal is flat (within +-20 %) from 4 to 16 replicas;
- **Redis CPU**: ``used_cpu_user + used_cpu_sys`` over the window, as a share of one core,
  and the microseconds Redis spent per script call (``INFO commandstats``, ``EVALSHA``);
- **replicas' CPU**: the worker processes' CPU time over the window, in cores (on a machine
  with fewer cores than that asks for, ticks miss their deadline for want of CPU, not of
  Redis);
- **failed ticks**: ticks past their deadline (``timeout``) or refused; each one puts a replica
  on its local limits until the next answer. The goal is none at 16 x 50.

``--tree DIR`` (repeatable) runs the same workers against other checkouts of ringfence (its
base, say) in the same run, one after the other on a fresh server each:

    python -m benchmarks.fleet [--quick] [--deps 50] [--sizes 4,8,16] [--tree DIR ...]

The worker is ``benchmarks/_fleet_worker.py``, run as a script with the tree on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ._harness import Table, header, out_dir

__all__ = ("run",)

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "_fleet_worker.py"


def _info(url_socket: str) -> dict[str, float]:
    import redis

    with redis.Redis(unix_socket_path=url_socket) as admin:
        stats = admin.info("stats")
        cpu = admin.info("cpu")
        scripts = admin.info("commandstats").get("cmdstat_evalsha", {})
    return {
        "scripts": float(scripts.get("calls", 0)),
        "script_usec": float(scripts.get("usec", 0)),
        "in": float(stats["total_net_input_bytes"]),
        "out": float(stats["total_net_output_bytes"]),
        "cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        "at": time.time(),
    }


def _one(tree: Path, replicas: int, deps: int, duration: float, interval: float) -> dict[str, Any]:
    from supervisor.integrations.redis._server import RedisServer

    with RedisServer() as server:
        config = {
            "url": server.url,
            "namespace": "fleet",
            "replicas": replicas,
            "deps": deps,
            "interval": interval,
            "duration": duration,
            "call_every": 0.2,
        }
        env = {**os.environ, "PYTHONPATH": str(tree)}
        processes = [
            subprocess.Popen(
                [sys.executable, str(WORKER), json.dumps(config)],
                cwd=tree,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(replicas)
        ]
        for process in processes:
            assert process.stdout is not None
            if not process.stdout.readline():  # {"ready": true}: every replica is live
                for other in processes:
                    other.kill()
                err = process.communicate(timeout=60)[1]
                msg = f"a worker failed before the run ({process.returncode}): {err[-3000:]}"
                raise RuntimeError(msg)
        start = time.time() + 0.5  # one start for all, a moment ahead for the line to reach them
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(f"{start!r}\n")
            process.stdin.flush()
        socket_path = str(server.socket_path)
        time.sleep(max(0.0, start - time.time()))
        first = _info(socket_path)
        time.sleep(max(0.0, start + duration - time.time()))
        last = _info(socket_path)
        results = []
        for process in processes:
            out, err = process.communicate(timeout=300)
            if process.returncode != 0:
                msg = f"a worker failed ({process.returncode}): {err[-3000:]}"
                raise RuntimeError(msg)
            results.append(json.loads(out.strip().splitlines()[-1]))
    window = last["at"] - first["at"]
    ok = sum(r["ticks"]["ok"] for r in results)
    failed = sum(r["ticks"]["failed"] for r in results)
    ticks = ok + failed  # in the same window: from the start to its end
    return {
        "replicas": replicas,
        "deps": deps,
        "window": window,
        "ticks": ok + failed,
        "failed": failed,
        "in_per_tick": (last["in"] - first["in"]) / ticks,
        "out_per_tick": (last["out"] - first["out"]) / ticks,
        "out_per_s": (last["out"] - first["out"]) / window,
        "cpu": (last["cpu"] - first["cpu"]) / window,
        "usec_per_script": (last["script_usec"] - first["script_usec"])
        / max(1.0, last["scripts"] - first["scripts"]),
        "replicas_cpu": sum(r["cpu"] for r in results) / window,
        "calls": sum(r["calls"]["admitted"] for r in results),
    }


def run(
    trees: list[Path], *, sizes: list[int], deps: int, duration: float, interval: float
) -> tuple[str, list[dict[str, Any]]]:
    rows = []
    for size in sizes:
        for tree in trees:  # interleaved: the machine's load drifts alike for both
            row = _one(tree, size, deps, duration, interval)
            row["tree"] = str(tree)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    table = Table(
        [
            "tree",
            "replicas x deps",
            "bytes out / replica / tick",
            "bytes in / replica / tick",
            "Redis out",
            "Redis CPU",
            "µs per script",
            "replicas' CPU",
            "ticks",
            "failed ticks",
        ]
    )
    for row in rows:
        table.add(
            row["tree"],
            f"{row['replicas']} x {row['deps']}",
            f"{row['out_per_tick']:,.0f}",
            f"{row['in_per_tick']:,.0f}",
            f"{row['out_per_s'] / 1e6:.2f} MB/s",
            f"{row['cpu']:.1%}",
            f"{row['usec_per_script']:.1f}",
            f"{row['replicas_cpu']:.2f} cores",
            row["ticks"],
            f"{row['failed']} ({row['failed'] / max(row['ticks'], 1):.1%})",
        )
    load = os.getloadavg()
    text = (
        header("shared state: traffic against fleet size (ringfence[redis])", "asyncio")
        + f"- load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n"
        + f"- sync_interval {interval:g} s, {duration:g} s per run, a fresh redis-server per"
        " run, every dependency called every 0.2 s\n\n" + table.markdown()
    )
    return text, rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--deps", type=int, default=50)
    parser.add_argument("--sizes", default="4,8,16")
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--tree", action="append", type=Path, default=[])
    args = parser.parse_args()
    trees = [ROOT, *(tree.resolve() for tree in args.tree)]
    sizes = [int(s) for s in args.sizes.split(",")]
    text, rows = run(
        trees,
        sizes=sizes,
        deps=args.deps,
        duration=5.0 if args.quick else 12.0,
        interval=args.interval,
    )
    print(text)
    directory = out_dir(args.quick)
    (directory / "fleet.md").write_text(text)
    (directory / "fleet.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
