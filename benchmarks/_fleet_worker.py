"""
One replica of ``benchmarks.fleet``, run as a script (``python PATH CONFIG``) so that the tree
it runs against is the one on ``PYTHONPATH`` (``--tree``: a change against its base, one run).

It registers ``deps`` dependencies (each with a breaker and a shared ``RateLimit``), waits,
tick by tick, until every replica is live, says ``{"ready": true}`` and reads the run's start
(wall clock) from stdin; from then on, for ``duration`` seconds, it calls each dependency every
``call_every`` seconds and counts its ticks: answered, and failed (a tick past its deadline or
refused: the replica fell back to local limits for a while). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio


async def _ok() -> str:
    return "ok"


async def main(config: dict[str, Any]) -> dict[str, Any]:
    from policies import RateLimit
    from supervisor import RateLimited, Supervisor
    from supervisor.integrations.redis import RedisShared

    shared = RedisShared(config["url"], config["namespace"], config["interval"])
    sup = Supervisor(shared=shared)
    names = [f"dep{i:02d}" for i in range(config["deps"])]
    for name in names:
        sup.register(name, _ok, rate_limit=RateLimit(1000, per=1))
    start = end = 0.0
    ticks = {"ok": 0, "failed": 0}
    calls = {"admitted": 0, "refused": 0}

    async def caller() -> None:
        while time.time() < end:
            for name in names:
                try:
                    await sup.call(name)
                    calls["admitted"] += 1
                except RateLimited:
                    calls["refused"] += 1
            await anyio.sleep(config["call_every"])

    async def watch() -> None:
        while time.time() < end:
            answered = await shared.wait_tick()
            if time.time() > end:
                break
            if answered:
                ticks["ok"] += 1
            else:
                ticks["failed"] += 1

    async with sup:
        with anyio.fail_after(config["duration"] + 120):
            # Every replica live, or a minute: on a loaded machine ticks past their deadline
            # may keep a fleet from ever being all live at once (the run then counts them).
            with anyio.move_on_after(60):
                while (shared.cluster_status()["live_replicas"] or 0) < config["replicas"]:
                    await shared.wait_tick()
            print(json.dumps({"ready": True}), flush=True)
            start = float(await anyio.to_thread.run_sync(sys.stdin.readline))
            end = start + config["duration"]
            await anyio.sleep(max(0.0, start - time.time()))
            cpu = time.process_time()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                tasks.start_soon(caller)
            cpu = time.process_time() - cpu
    return {"ticks": ticks, "calls": calls, "cpu": cpu}


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, json.loads(sys.argv[1]))))
