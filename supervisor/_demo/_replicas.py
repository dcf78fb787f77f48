"""
``ringfence demo --replicas N``: N replicas of a service pacing one shared rate limit.

The demo starts its own redis-server (a unix socket in a temporary directory; never a system
service) and N replica processes. Each replica is a supervisor with
``shared=RedisShared(...)`` whose clients call a stand-in "LLM API" as fast as they may under
``RateLimit(rate, per=1)``: the limit of one API key that all replicas share. Each second the
demo prints what each replica admitted and what they admitted together: together they keep to
the one limit (N local limits would admit N times as much), and a replica with more callers
does not get the others' share for good, since each takes its turn from the one schedule in
Redis.

Each replica reports a JSON line per second on its stdout; ``python -m
supervisor._demo._replicas`` is the replica's entry point (the parent passes its settings as
one JSON argument). The run starts when every replica has said it is ready (every replica
live in Redis): the parent then sends them all one start time on their stdin, so a slow
machine starting the interpreters late shortens nobody's run.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, Final, TextIO

import attrs

__all__ = ("ReplicasConfig", "ReplicasResult", "run_replicas")

#: the stand-in API's latency, seconds (uniform)
_LATENCY: Final = (0.005, 0.03)


@attrs.frozen(kw_only=True)
class ReplicasConfig:
    replicas: int = 3
    duration: float = 20.0
    clients: int = 20  # in all, split over the replicas (the first ones get the rest)
    rate: float = 30.0  # the shared limit: calls per second
    sync_interval: float = 0.25
    backend: str = "asyncio"
    seed: int = 7


@attrs.frozen(kw_only=True)
class ReplicasResult:
    """What the replicas admitted, second by second (``per_second[s][replica]``)."""

    config: ReplicasConfig
    per_second: list[list[int]]
    refused: int
    lost: int
    degraded: list[str]

    @property
    def admitted(self) -> int:
        return sum(map(sum, self.per_second))


def _clients_of(config: ReplicasConfig, index: int) -> int:
    share, rest = divmod(config.clients, config.replicas)
    return max(1, share + (1 if index < rest else 0))


# ==============================================================================================
# One replica (a process of its own)


def _emit(line: dict[str, Any]) -> None:
    """A report to the parent: one JSON line on stdout."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def _replica(settings: dict[str, Any]) -> None:
    import anyio

    from policies import RateLimit
    from supervisor import RateLimited, Supervisor
    from supervisor.integrations.redis import RedisShared

    rng = random.Random(settings["seed"])
    shared = RedisShared(settings["url"], "ringfence-demo", settings["sync_interval"])
    supervisor = Supervisor(shared=shared)

    async def ask_llm() -> str:  # the stand-in API: it answers, a little later
        await anyio.sleep(rng.uniform(*_LATENCY))
        return "an answer"

    llm = supervisor.register("llm", ask_llm, rate_limit=RateLimit(settings["rate"], per=1))
    counts = {"admitted": 0, "refused": 0, "started": 0, "ended": 0}
    start = end = 0.0  # set once every replica is in (the parent says when)

    async def client() -> None:
        while time.time() < end:
            counts["started"] += 1
            try:
                await llm()
                counts["admitted"] += 1
            except RateLimited:
                counts["refused"] += 1
                await anyio.sleep(0.01)  # a client that keeps asking
            finally:
                counts["ended"] += 1

    async def report() -> None:
        second = 0
        while time.time() < end:
            second += 1
            await anyio.sleep(max(0.0, start + second - time.time()))
            line = {
                "second": second,
                "admitted": counts["admitted"],
                "refused": counts["refused"],
                "degraded": shared.degraded(),
            }
            _emit(line)

    async with supervisor:
        while (shared.cluster_status()["live_replicas"] or 0) < settings["replicas"]:
            await shared.wait_tick()  # everyone is in before anyone calls
        _emit({"ready": True})
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:  # the parent is gone
            return
        start = float(line)
        end = start + settings["duration"]
        await anyio.sleep(max(0.0, start - time.time()))
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(report)
            for _ in range(settings["clients"]):
                tasks.start_soon(client)
    _emit({"done": True, "lost": counts["started"] - counts["ended"]})


# ==============================================================================================
# The parent


def run_replicas(
    config: ReplicasConfig,
    out: TextIO | None = None,
    *,
    server_factory: Callable[[], Any] | None = None,
) -> ReplicasResult:
    """
    Start a private redis-server and ``config.replicas`` replica processes, print what they
    admit each second, and return the figures.

    Raises:
        FileNotFoundError: no redis-server (the message says how to install one).
    """
    from supervisor.integrations.redis._server import RedisServer

    server = (server_factory or RedisServer)()
    server.start()
    try:
        return _run(config, server.url, out if out is not None else sys.stdout)
    finally:
        server.stop()


def _run(config: ReplicasConfig, url: str, out: TextIO) -> ReplicasResult:
    processes = []
    for index in range(config.replicas):
        settings = {
            "url": url,
            "replicas": config.replicas,
            "clients": _clients_of(config, index),
            "rate": config.rate,
            "sync_interval": config.sync_interval,
            "duration": config.duration,
            "seed": config.seed + index,
        }
        command = [sys.executable, "-m", "supervisor._demo._replicas", json.dumps(settings)]
        if config.backend == "trio":
            command.append("trio")
        processes.append(
            subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    # Every replica in Redis first, however long the interpreters took to start; then one
    # start time for all (a moment ahead, for the line to reach them).
    for process in processes:
        if _read(process, lambda line: "ready" in line) is None:
            for other in processes:
                other.kill()  # the others would wait for a start time forever
            errors = {id(other): other.communicate(timeout=60)[1] for other in processes}
            err = errors[id(process)]
            msg = f"a replica failed before the run ({process.returncode}): {err[-2000:]}"
            raise RuntimeError(msg)
    start = time.time() + 0.25
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(f"{start!r}\n")
        process.stdin.flush()
    names = [f"replica {i + 1} ({_clients_of(config, i)} clients)" for i in range(config.replicas)]
    out.write(
        f"{config.replicas} replicas share RateLimit({config.rate:g}, per=1) through a private"
        f" redis-server (sync every {config.sync_interval:g} s); alone, each would admit"
        f" {config.rate:g}/s.\n\n"
    )
    header = "  s  " + "".join(f"{name:>24}" for name in names) + f"{'together':>10}"
    out.write(header + "\n")
    previous = [0] * config.replicas
    refused_by = [0] * config.replicas
    per_second: list[list[int]] = []
    lost = 0
    degraded: list[str] = []
    seconds = math.ceil(config.duration)
    for second in range(1, seconds + 1):
        row = []
        for index, process in enumerate(processes):
            report = _read(process, lambda line: "second" in line)
            if report is None:
                row.append(0)
                continue
            row.append(report["admitted"] - previous[index])
            previous[index] = report["admitted"]
            refused_by[index] = report["refused"]
            if report["degraded"]:
                degraded.append(f"replica {index + 1}: {report['degraded']}")
        per_second.append(row)
        cells = "".join(f"{n:>24}" for n in row)
        out.write(f"{second:>3}  {cells}{sum(row):>10}\n")
        out.flush()
    for process in processes:
        final = _read(process, lambda line: "done" in line)
        lost += int(final["lost"]) if final else 0
        _, err = process.communicate(timeout=60)
        if process.returncode != 0:
            msg = f"a replica failed ({process.returncode}): {err[-2000:]}"
            raise RuntimeError(msg)
    return ReplicasResult(
        config=config,
        per_second=per_second,
        refused=sum(refused_by),
        lost=lost,
        degraded=degraded,
    )


def _read(
    process: subprocess.Popen[str], wanted: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    assert process.stdout is not None
    for raw in process.stdout:
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if wanted(line):
            return dict(line)
    return None


def summary(result: ReplicasResult) -> str:
    """The demo's closing lines."""
    config = result.config
    seconds = len(result.per_second)
    together = result.admitted
    limit = config.rate * seconds
    burst = config.rate
    lines = [
        "",
        f"Together the {config.replicas} replicas admitted {together:,} calls in {seconds} s:"
        f" {together / seconds:.1f}/s against the shared {config.rate:g}/s, or"
        f" {together / (limit + burst):.0%} of what one limit allows in {seconds} s"
        f" ({limit:,.0f}, plus its burst of {burst:,.0f}).",
        f"With a limit each they could have admitted {config.replicas * (limit + burst):,.0f}.",
        f"Calls lost or hung: {result.lost}.",
    ]
    if result.degraded:
        lines.append("Degraded meanwhile: " + "; ".join(sorted(set(result.degraded))))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import anyio

    backend = sys.argv[2] if len(sys.argv) > 2 else "asyncio"
    anyio.run(_replica, json.loads(sys.argv[1]), backend=backend)
