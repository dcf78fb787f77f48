"""
Question 6: do replicas that share state through Redis (``ringfence[redis]``) act as one?

Four worker processes (four replicas, each a supervisor with ``RedisShared``) and a private
redis-server (a unix socket in a temporary directory), on this machine:

1. **aggregate rate**: ``RateLimit(100, per=1)`` shared by four saturated replicas for 10 s
   admits between 95 % and 100 % of ``rate * duration + burst``; four local limits admit 4x.
2. **propagation**: a shared open (decided in Redis from the replicas' aggregate failure
   ratio) reaches the *other* replicas within two sync intervals: p50, p99, max.
3. **faults**: during one run Redis is SIGKILLed (and restarted empty a second later), then
   SIGSTOPped for 3 s: no call is lost or hangs, and the replicas are shared again (leases,
   not local fallbacks) within three sync intervals of Redis coming back.
4. **per-call cost** in one process: a supervisor with ``shared=`` against one without, for
   a plain dependency and a rate-limited one, as same-run ratios (target: within 1.2x); and
   both against a bare ``await`` (Part 1's success path, unchanged without ``shared=``).

    python -m benchmarks.shared [--quick] [--backend asyncio|trio] [--interval 0.25]

Timing claims live here, never in tests. Every figure is measured in the same run; the
multi-process parts run on asyncio (the backend only matters for part 4, which runs on the
chosen one).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from ._harness import Table, header, median, out_dir, time_sequential

__all__ = ("run",)

ROOT = Path(__file__).resolve().parents[1]
REPLICAS = 4
RATE = 100.0


# ==============================================================================================
# The worker: one replica, in a process of its own


async def _ok() -> str:
    return "ok"


async def _failing() -> str:
    raise ConnectionError("down")


async def _worker(config: dict[str, Any]) -> dict[str, Any]:
    from policies import Breaker, RateLimit
    from supervisor import BreakerOpen, RateLimited, Supervisor
    from supervisor.integrations.redis import RedisShared

    scenario = config["scenario"]
    interval = config["interval"]
    options: dict[str, Any] = {}
    if scenario == "open":
        options = {"open_ratio": 0.5, "open_min_volume": 20, "open_for": config["open_for"]}
    shared = RedisShared(config["url"], config["namespace"], interval, **options)
    sup = Supervisor(shared=shared)
    local = Supervisor()
    target = local if config["mode"] == "local" else sup
    if scenario == "open":
        target.register("flaky", _failing, breaker=Breaker(failure_ratio=1.0, min_throughput=10**6))
    else:
        target.register("llm", _ok, rate_limit=RateLimit(RATE, per=1))
    start, end = config["start"], config["start"] + config["duration"]
    admitted: list[float] = []
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counts = {"started": 0, "ended": 0}
    samples: list[dict[str, Any]] = []
    links: list[tuple[float, bool]] = []

    async def caller() -> None:
        name = "flaky" if scenario == "open" else "llm"
        while time.time() < end:
            counts["started"] += 1
            began = time.perf_counter()
            try:
                await target.call(name)
                admitted.append(time.time() - start)
            except (RateLimited, BreakerOpen, ConnectionError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                await anyio.sleep(0.002 if scenario != "open" else 0.02)
            except Exception as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            finally:
                counts["ended"] += 1
                latencies.append(time.perf_counter() - began)

    async def watch() -> None:
        seen: set[int] = set()
        while time.time() < end + interval:
            connected = await shared.wait_tick()
            links.append((time.time() - start, connected))
            if scenario == "open":
                entry = shared.cluster_status()["dependencies"].get("flaky") or {}
                verdict = entry.get("open")
                epoch = entry.get("epoch")
                if verdict and epoch not in seen and verdict["applied_after"] is not None:
                    seen.add(epoch)
                    samples.append(
                        {
                            "after": verdict["applied_after"],
                            "own": verdict["opened_by"] == shared.replica_id,
                        }
                    )

    async with sup, local:
        with anyio.fail_after(config["duration"] + 60):
            while (shared.cluster_status()["live_replicas"] or 0) < config["replicas"]:
                await shared.wait_tick()
            await anyio.sleep(max(0.0, start - time.time()))
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                for _ in range(config["tasks"]):
                    tasks.start_soon(caller)
        leased = [limit["leased"] for limit in shared.cluster_status()["limits"].get("llm", [])]
    return {
        "admitted": admitted,
        "errors": errors,
        "counts": counts,
        "max_latency": max(latencies, default=0.0),
        "samples": samples,
        "links": links,
        "leased": leased,
    }


def _launch(
    url: str,
    namespace: str,
    scenario: str,
    mode: str,
    duration: float,
    interval: float,
    **extra: Any,
) -> tuple[list[subprocess.Popen[str]], float]:
    start = time.time() + 4.0  # time for four interpreters to import and connect
    config = {
        "url": url,
        "namespace": namespace,
        "scenario": scenario,
        "mode": mode,
        "start": start,
        "duration": duration,
        "interval": interval,
        "replicas": REPLICAS,
        "tasks": 4,
        **extra,
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.shared", "--worker", json.dumps(config)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    return processes, start


def _collect(processes: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        if process.returncode != 0:
            msg = f"a worker failed ({process.returncode}): {err[-3000:]}"
            raise RuntimeError(msg)
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


# ==============================================================================================
# 1. aggregate rate


def _aggregate(url: str, duration: float, interval: float) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for mode in ("shared", "local"):
        processes, _ = _launch(url, f"rate-{mode}-{time.time()}", "rate", mode, duration, interval)
        results = _collect(processes)
        per = [sum(1 for t in r["admitted"] if 0 <= t < duration) for r in results]
        figures[mode] = {
            "admitted": sum(per),
            "per_replica": per,
            "lost": sum(r["counts"]["started"] - r["counts"]["ended"] for r in results),
        }
    figures["limit"] = RATE * duration
    figures["burst"] = RATE
    return figures


# ==============================================================================================
# 2. propagation of a shared open


def _propagation(url: str, duration: float, interval: float) -> dict[str, Any]:
    processes, _ = _launch(
        url, f"open-{time.time()}", "open", "shared", duration, interval, open_for=0.3
    )
    results = _collect(processes)
    others = sorted(s["after"] for r in results for s in r["samples"] if not s["own"])
    own = sorted(s["after"] for r in results for s in r["samples"] if s["own"])
    return {"others": others, "own": own}


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    index = min(len(values) - 1, math.ceil(q * len(values)) - 1)
    return sorted(values)[max(index, 0)]


# ==============================================================================================
# 3. faults


def _faults(server: Any, duration: float, interval: float, quick: bool) -> dict[str, Any]:
    # (what, at, back at): seconds from the start of the run
    plan = [("SIGKILL, restarted", 3.0, 4.0), ("SIGSTOP 3 s", 7.0, 10.0)]
    if quick:
        plan = [("SIGKILL, restarted", 1.5, 2.5), ("SIGSTOP 3 s", 3.5, 6.5)]
    processes, start = _launch(
        server.url, f"faults-{time.time()}", "rate", "shared", duration, interval
    )
    marks = []
    for what, at, back in plan:
        time.sleep(max(0.0, start + at - time.time()))
        if what.startswith("SIGKILL"):
            server.kill()
            time.sleep(max(0.0, start + back - time.time()))
            server.start()
        else:
            server.pause()
            time.sleep(max(0.0, start + back - time.time()))
            server.resume()
        marks.append((what, at, time.time() - start))
    results = _collect(processes)
    faults = []
    for what, at, back in marks:
        delays = []
        for r in results:
            first = next((t for t, ok in r["links"] if t >= back and ok), math.nan)
            delays.append(first - back)
        during = sum(1 for r in results for t in r["admitted"] if at + 0.5 <= t < back)
        after = sum(
            1
            for r in results
            for t in r["admitted"]
            if back + 3 * interval <= t < back + 3 * interval + 1
        )
        faults.append(
            {
                "what": what,
                "recovered": max(delays),
                "rate_during": during / max(back - at - 0.5, 1e-9),
                "rate_after": after,
            }
        )
    seconds = [
        sum(1 for r in results for t in r["admitted"] if s <= t < s + 1)
        for s in range(int(duration))
    ]
    return {
        "faults": faults,
        "per_second": seconds,
        "lost": sum(r["counts"]["started"] - r["counts"]["ended"] for r in results),
        "errors": {
            name: sum(r["errors"].get(name, 0) for r in results)
            for name in sorted({n for r in results for n in r["errors"]})
        },
        "max_latency": max(r["max_latency"] for r in results),
    }


# ==============================================================================================
# 4. per-call cost, in one process


async def _percall(url: str, calls: int, rounds: int) -> dict[str, float]:
    from policies import RateLimit
    from supervisor import RateLimited, Supervisor
    from supervisor.integrations.redis import RedisShared

    plain_sup = Supervisor()
    shared = RedisShared(url, f"percall-{time.time()}")
    shared_sup = Supervisor(shared=shared)
    subjects: dict[str, Callable[[int], Awaitable[object]]] = {}

    async def bare(_: int) -> object:
        return await _ok()

    subjects["bare await"] = bare
    huge = RateLimit(1e9, per=1)
    refused = [0]

    def tolerant(fn: Callable[[], Awaitable[object]]) -> Callable[[int], Awaitable[object]]:
        # A refusal (a lease too short) is counted, not raised: the round goes on. A try
        # block costs nothing on the path that does not raise (CPython 3.11).
        async def call(_: int) -> object:
            try:
                return await fn()
            except RateLimited:
                refused[0] += 1
                return None

        return call

    for label, sup in (("without shared=", plain_sup), ("with shared=", shared_sup)):
        subjects[f"plain, {label}"] = tolerant(sup.register("plain", _ok))
        subjects[f"rate-limited, {label}"] = tolerant(sup.register("limited", _ok, rate_limit=huge))
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    async with plain_sup, shared_sup:
        while shared.cluster_status()["limits"]["limited"][0]["mode"] != "lease":
            await shared.wait_tick()
        names = list(subjects)
        for name in names:  # warm up; a lease grows to the demand it saw over the last tick
            await time_sequential(subjects[name], calls)
            await shared.wait_tick()
        refused[0] = 0
        for round_ in range(rounds):
            # A call that never awaits I/O never yields to the event loop: nor does a timing
            # loop of them. Let the sync actor tick between rounds, as it would between the
            # requests of a real service.
            await shared.wait_tick()
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                samples[name].append(await time_sequential(subjects[name], calls))
    result = {name: median(values) for name, values in samples.items()}
    result["refused"] = float(refused[0])
    return result


# ==============================================================================================


def run(backend: str, *, quick: bool, interval: float = 0.25) -> tuple[str, dict[str, Any]]:
    from supervisor.integrations.redis._server import RedisServer

    duration = 4.0 if quick else 10.0
    calls, rounds = (5_000, 3) if quick else (30_000, 7)
    data: dict[str, Any] = {"interval": interval}
    with RedisServer() as server:
        data["percall"] = anyio.run(_percall, server.url, calls, rounds, backend=backend)
        data["aggregate"] = _aggregate(server.url, duration, interval)
        data["propagation"] = _propagation(server.url, 5.0 if quick else 20.0, interval)
        data["faults"] = _faults(server, 8.0 if quick else 14.0, interval, quick)
    return _report(backend, quick, data), data


def _report(backend: str, quick: bool, data: dict[str, Any]) -> str:
    interval = data["interval"]
    parts = [
        header("shared state across replicas (ringfence[redis])", backend),
        f"- {REPLICAS} worker processes, a private redis-server on a unix socket,"
        f" sync_interval {interval:g} s{' (quick run)' if quick else ''}\n",
    ]

    agg = data["aggregate"]
    limit, burst = agg["limit"], agg["burst"]
    table = Table(
        [
            "limits",
            "admitted in aggregate",
            "of rate x duration + burst",
            "of rate x duration",
            "per replica",
            "lost calls",
        ]
    )
    for mode, label in (
        ("shared", "one shared RateLimit(100, per=1)"),
        ("local", "four local RateLimit(100, per=1)"),
    ):
        figures = agg[mode]
        table.add(
            label,
            f"{figures['admitted']:,}",
            f"{figures['admitted'] / (limit + burst):.1%}",
            f"{figures['admitted'] / limit:.1%}",
            " / ".join(str(n) for n in figures["per_replica"]),
            figures["lost"],
        )
    parts.append(
        f"### 1. Aggregate rate ({limit / RATE:g} s, saturated replicas)\n\n" + table.markdown()
    )

    prop = data["propagation"]
    others = prop["others"]
    table = Table(["verdict reaches", "samples", "p50", "p99", "max", "p99 in sync intervals"])
    for label, values in (
        ("the other replicas", others),
        ("the replica that decided it", prop["own"]),
    ):
        p99 = _quantile(values, 0.99)
        table.add(
            label,
            len(values),
            f"{1000 * _quantile(values, 0.5):.0f} ms",
            f"{1000 * p99:.0f} ms",
            f"{1000 * max(values, default=math.nan):.0f} ms",
            f"{p99 / interval:.2f}",
        )
    parts.append(
        "### 2. Propagation of a shared open (from the verdict in Redis to the replica refusing calls)\n\n"
        + table.markdown()
    )

    faults = data["faults"]
    table = Table(
        [
            "fault",
            "shared again after Redis is back",
            "in sync intervals",
            "aggregate rate meanwhile",
            "admitted in the second after",
        ]
    )
    for fault in faults["faults"]:
        table.add(
            fault["what"],
            f"{1000 * fault['recovered']:.0f} ms",
            f"{fault['recovered'] / interval:.2f}",
            f"{fault['rate_during']:.0f}/s",
            fault["rate_after"],
        )
    parts.append(
        "### 3. Redis killed and stopped during a run\n\n"
        + table.markdown()
        + f"\nCalls lost or hung: **{faults['lost']}** (every call started ended); the slowest call"
        f" took {1000 * faults['max_latency']:.1f} ms; outcomes: {faults['errors']} besides the"
        f" admitted ones.\n\nAdmitted per second, all replicas: {faults['per_second']}\n"
    )

    per = data["percall"]
    bare = per["bare await"]
    table = Table(["subject", "ns/call (median)", "ratio to bare await", "with shared= / without"])
    for kind in ("plain", "rate-limited"):
        without = per[f"{kind}, without shared="]
        with_ = per[f"{kind}, with shared="]
        table.add(f"{kind}, without shared=", f"{without:,.0f}", f"{without / bare:.1f}x", "")
        table.add(
            f"{kind}, with shared=",
            f"{with_:,.0f}",
            f"{with_ / bare:.1f}x",
            f"{with_ / without:.2f}x",
        )
    parts.append(
        f"### 4. Per-call cost, one process ({backend})\n\n"
        + table.markdown()
        + f"\nCalls refused during the measurement (a lease too short): {per['refused']:.0f}.\n"
    )
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = anyio.run(_worker, json.loads(args.worker))
        print(json.dumps(result))
        return
    text, data = run(args.backend, quick=args.quick, interval=args.interval)
    print(text)
    directory = out_dir(args.quick)
    (directory / f"shared-{args.backend}.md").write_text(text)
    (directory / f"shared-{args.backend}.json").write_text(json.dumps(data, indent=1, default=str))


if __name__ == "__main__":
    main()
