"""
The shared state around a replica's life: before Redis first answers, across a tick that
fails, across a restart under a fixed ``replica_id``, and across a ``reconfigure`` of its rate
limits. A real redis-server, several replicas in one process; waiting is by ticks, never by
sleeps (see ``conftest.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import coredis
import pytest

from policies import Breaker, RateLimit, State
from supervisor import HealthStatus, RateLimited
from supervisor.integrations.redis import RedisShared
from supervisor.integrations.redis._keys import Keys
from supervisor.integrations.redis._server import RedisServer

from .conftest import guard
from .test_shared import TooManyRequests, failing, ok, replica, until

pytestmark = pytest.mark.anyio


#: Redis's TIME in milliseconds (the scripts' clock), rounded up.
NOW_MS = "local t = redis.call('TIME') return t[1] * 1000 + math.ceil(t[2] / 1000)"


def own_limits(shared: RedisShared, name: str) -> list[Any]:
    """*name*'s limits in this replica's own summary, as the last tick read it from Redis."""
    summary = shared.cluster_status()["replicas"][shared.replica_id]
    return list(summary["dependencies"][name]["limits"])


def limit_modes(shared: RedisShared, name: str) -> list[str]:
    """Each of *name*'s shared limits' mode here (lease, local, connecting)."""
    status = shared.cluster_status()
    return [entry["mode"] for entry in status["limits"].get(name, [])]


# -- before the first answer ------------------------------------------------------------------


async def test_degraded_until_redis_first_answers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """No answer yet (limits 'connecting'): degraded, and says so; healthy once it answers.
    A server that hangs is no reason for coredis to log an error at every reconnect."""
    sup, shared = replica(redis_server.url, timeout=0.2)
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    caplog.set_level(logging.DEBUG, logger="coredis")
    with guard():
        redis_server.pause()
        try:
            async with sup:
                health = sup.health()
                assert HealthStatus.DEGRADED == health.status
                assert "shared state: no answer from Redis yet" in (health.reason or "")
                assert ["connecting"] == limit_modes(shared, "llm")
                # The first attempt fails (a deadline, or a handshake that never ends).
                await until(shared, lambda: "yet" not in (shared.degraded() or ""))
                assert shared.degraded() is not None
                for _ in range(3):  # reconnect attempts to a server that answers nothing
                    await shared.wait_tick()
                redis_server.resume()
                await until(shared, lambda: shared.degraded() is None)
                assert HealthStatus.HEALTHY == sup.health().status
        finally:
            redis_server.resume()
    errors = [r for r in caplog.records if r.name == "coredis" and r.levelno >= logging.ERROR]
    assert [] == [r.getMessage() for r in errors]


# -- a tick that fails ------------------------------------------------------------------------


async def test_a_429_whose_tick_fails_reaches_the_others_later(redis_server: RedisServer) -> None:
    """A's 429 comes while Redis is stopped, and the ticks carrying it fail: once Redis is
    back, B pauses too (nothing lost)."""
    a, a_shared = replica(redis_server.url, timeout=0.2)
    b, b_shared = replica(redis_server.url, timeout=0.2)

    async def limited() -> str:
        raise TooManyRequests(retry_after=60)

    a.register("llm", limited)
    b.register("llm", ok)
    with guard():
        async with a, b:
            await a_shared.wait_tick()
            await b_shared.wait_tick()
            redis_server.pause()
            try:
                with pytest.raises(TooManyRequests):
                    await a.call("llm")
                await until(a_shared, lambda: a_shared.degraded() is not None)
                # The tick after the one that failed began after the 429, and fails too.
                await a_shared.wait_tick()
                await a_shared.wait_tick()
                assert a_shared.degraded() is not None
            finally:
                redis_server.resume()
            await until(b_shared, lambda: b.status("llm").pause_remaining > 0)
            assert b.status("llm").pause_remaining > 30


# -- operators ----------------------------------------------------------------------------------


async def test_the_first_cluster_reset_ever_resets_the_other_replicas(
    redis_server: RedisServer,
) -> None:
    """No command was ever sent for 'llm': A's reset(scope='cluster') resets B too."""
    a, a_shared = replica(redis_server.url)
    b, b_shared = replica(redis_server.url)
    a.register("llm", ok, breaker=Breaker(failure_threshold=2))
    b.register("llm", failing, breaker=Breaker(failure_threshold=2))
    with guard():
        async with a, b:
            await a_shared.wait_tick()
            await b_shared.wait_tick()
            await b_shared.wait_tick()  # B has read the (empty) control
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    await b.call("llm")
            assert State.OPEN == b.status("llm").state
            await a.reset("llm", scope="cluster")
            await until(b_shared, lambda: b.status("llm").state is State.CLOSED)


async def test_a_replica_restarted_under_its_id_keeps_its_cluster_isolation(
    redis_server: RedisServer,
) -> None:
    """'Replicas that start later isolate it too': also the one that isolated it, restarted
    under a fixed replica_id."""
    a, a_shared = replica(redis_server.url, replica_id="pod-a")
    a.register("llm", ok)
    with guard():
        async with a:
            await a_shared.wait_tick()
            await a.isolate("llm", reason="maintenance", scope="cluster")
        again, again_shared = replica(redis_server.url, replica_id="pod-a")
        again.register("llm", ok)
        async with again:
            await until(again_shared, lambda: again.status("llm").state is State.ISOLATED)
            assert "cluster: maintenance" == again.status("llm").transitions[-1].reason


async def test_a_replica_restarted_under_its_id_keeps_its_earlier_pause(
    redis_server: RedisServer,
) -> None:
    """pod-a was told Retry-After: 60 and restarted: it keeps to that pause too."""
    a, a_shared = replica(redis_server.url, replica_id="pod-a")

    async def limited() -> str:
        raise TooManyRequests(retry_after=60)

    a.register("llm", limited)
    with guard():
        async with a:
            await a_shared.wait_tick()
            with pytest.raises(TooManyRequests):
                await a.call("llm")
            await until(
                a_shared,
                lambda: bool(a_shared.cluster_status()["dependencies"]["llm"]["pause_remaining"]),
            )
        again, again_shared = replica(redis_server.url, replica_id="pod-a")
        again.register("llm", ok)
        async with again:
            await until(again_shared, lambda: again.status("llm").pause_remaining > 0)
            assert again.status("llm").pause_remaining > 30


# -- reconfigure --------------------------------------------------------------------------------


async def test_a_removed_limit_gives_back_what_it_holds_and_stops_leasing(
    redis_server: RedisServer,
) -> None:
    """reconfigure(rate_limit=None): the limits' last leases give back their units (the
    shared schedule is back to now), and nothing is leased for them any more."""
    sup, shared = replica(redis_server.url)
    sup.register("llm", ok, rate_limit=[RateLimit(100, per=1), RateLimit(1000, per=60)])
    keys = [Keys("svc").limit("llm", index) for index in (0, 1)]
    with guard():
        async with sup, coredis.Redis.from_url(redis_server.url) as admin:
            await until(shared, lambda: limit_modes(shared, "llm") == ["lease", "lease"])
            await sup.reconfigure("llm", rate_limit=None)
            # A tick retires them; its heartbeat's summary (made before) may list them still,
            # and so may a tick already in flight: the next ticks' summaries do not.
            await until(shared, lambda: [] == limit_modes(shared, "llm"))
            await until(shared, lambda: [] == own_limits(shared, "llm"))
            now_ms = float(await admin.eval(NOW_MS, keys=[], args=[]))  # the scripts' clock
            tats = [float(await admin.hget(key, "tat") or 0) for key in keys]
            assert all(tat <= now_ms for tat in tats), (tats, now_ms)
            for _ in range(5):
                await shared.wait_tick()
            assert tats == [float(await admin.hget(key, "tat") or 0) for key in keys]


async def test_a_limit_moved_to_another_index_does_not_inherit_its_schedule(
    redis_server: RedisServer,
) -> None:
    """[1/hour, 100/s] -> [100/s]: the 100/s limit (now at index 0) is not held back for an
    hour by the hourly limit's schedule, stored at that index."""
    sup, shared = replica(redis_server.url)
    hourly, per_second = RateLimit(1, per=3600, burst=1), RateLimit(100, per=1)
    sup.register("llm", ok, rate_limit=[hourly, per_second])
    with guard():
        async with sup:
            await until(shared, lambda: limit_modes(shared, "llm") == ["lease", "lease"])
            went = False
            for _ in range(100):
                try:
                    await sup.call("llm")
                except RateLimited:
                    await shared.wait_tick()
                else:
                    went = True
                    break
            assert went  # the hourly quota is spent: its schedule is an hour ahead
            await sup.reconfigure("llm", rate_limit=[per_second])
            admitted = 0
            for _ in range(50):
                await shared.wait_tick()
                try:
                    await sup.call("llm")
                    admitted += 1
                except RateLimited:
                    pass
            assert admitted >= 40, f"a 100/s limit admitted {admitted} of 50 spaced calls"
            assert [] == shared.cluster_status()["warnings"]  # a reconfigure, no disagreement
