"""
One replica of the multi-process test, as a process of its own:

    python -m tests.integrations.redis._worker URL NAMESPACE REPLICAS shared|local

It waits (tick by tick) until REPLICAS replicas are live, then calls a rate-limited dependency
as fast as it may, tick after tick, until the replicas have admitted the limit's burst
together (shared: as their summaries say; local: itself), then for 20 more ticks, and prints
``{"admitted": n}``.
"""

from __future__ import annotations

import json
import sys

import anyio

from policies import RateLimit
from supervisor import RateLimited, Supervisor
from supervisor.integrations.redis import RedisShared

LIMIT = RateLimit(40, per=3600)  # a burst of 40; the next unit in a minute and a half


async def ok() -> str:
    return "ok"


async def main(url: str, namespace: str, replicas: int, mode: str) -> int:
    # The local run also syncs (heartbeats, so the replicas can wait for each other), but its
    # limit is the supervisor's own: what four replicas without shared limits admit.
    # A Redis deadline longer than the run's: on a busy machine a tick past the default
    # quarter second would put this replica on its local share of the limit for a while.
    shared = RedisShared(url, namespace, sync_interval=0.02, timeout=60.0)
    local = Supervisor()
    sup = Supervisor(shared=shared)
    target = sup if mode == "shared" else local
    target.register("llm", ok, rate_limit=LIMIT)
    admitted = 0

    def together() -> int:
        if mode == "local":
            return admitted
        summaries = shared.cluster_status()["replicas"].values()
        return sum(int(s["dependencies"]["llm"]["calls"]) for s in summaries)

    with anyio.fail_after(60):
        async with sup, local:
            while shared.cluster_status()["live_replicas"] != replicas:
                await shared.wait_tick()
            more = 20
            while more:
                while True:
                    try:
                        await target.call("llm")
                    except RateLimited:
                        break
                    admitted += 1
                await shared.wait_tick()
                if together() >= LIMIT.rate:
                    more -= 1
    return admitted


if __name__ == "__main__":
    url, namespace, replicas, mode = sys.argv[1:5]
    print(json.dumps({"admitted": anyio.run(main, url, namespace, int(replicas), mode)}))
