"""
Supervisors sharing state through a real redis-server: several replicas in one process, each
with its own ``RedisShared`` (its own replica id, connection and sync actor), exactly as
separate processes would. Waiting is by ticks (``wait_tick()``) and events, never by sleeps;
the multi-process figures are in ``benchmarks/shared.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

from policies import Breaker, RateLimit, State, Timeout
from supervisor import (
    BreakerOpen,
    DependencyPaused,
    HealthStatus,
    RateLimited,
    Supervisor,
)
from supervisor.integrations.redis import RedisShared
from supervisor.integrations.redis._server import RedisServer

from .conftest import HANG, INTERVAL, guard

pytestmark = pytest.mark.anyio


def replica(url: str, namespace: str = "svc", **options: Any) -> tuple[Supervisor, RedisShared]:
    """
    A supervisor with a ``RedisShared`` of its own. Its Redis deadline (``timeout``) is the
    hang guard's unless a test is about the deadline and passes its own: a tick on a busy
    machine may take longer than the default quarter second, and a tick failed by its
    deadline would degrade the replica, and end a ``wait_tick()``, for no reason of the
    test's.
    """
    options.setdefault("sync_interval", INTERVAL)
    options.setdefault("timeout", HANG)
    shared = RedisShared(url, namespace, **options)
    return Supervisor(shared=shared), shared


async def until(shared: RedisShared, condition: Callable[[], bool], ticks: int = 500) -> None:
    """Wait, tick by tick, until *condition* holds (at most *ticks* ticks)."""
    for _ in range(ticks):
        if condition():
            return
        await shared.wait_tick()
    raise AssertionError(f"not true after {ticks} ticks")


def degraded_by_something(shared: RedisShared) -> bool:
    """Degraded for a reason of its own (not only for want of a first answer from Redis)."""
    reason = shared.degraded()
    return reason is not None and "no answer from Redis yet" not in reason


def aggregate_calls(shared: RedisShared, name: str) -> int | None:
    """The live replicas' calls of *name* in the shared window, as the last tick saw them."""
    entry = shared.cluster_status()["dependencies"].get(name)
    return None if entry is None else int(entry["calls"])


async def ok() -> str:
    return "ok"


class TooManyRequests(Exception):
    """What an LLM client raises on a 429 (classify reads status_code and retry_after)."""

    status_code = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__("429 Too Many Requests")
        self.retry_after = retry_after


# -- rate limits ------------------------------------------------------------------------------


async def test_replicas_share_one_limit(redis_server: RedisServer) -> None:
    """Two replicas calling as fast as they can admit the limit's burst once, not twice."""
    limit = RateLimit(10, per=3600)  # a burst of 10; the next unit in six minutes
    admitted = [0, 0]
    with guard():
        async with AsyncExitStack() as stack:
            pairs = [replica(redis_server.url) for _ in range(2)]
            for sup, _ in pairs:
                sup.register("llm", ok, rate_limit=limit)
                await stack.enter_async_context(sup)
            for _ in range(400):
                for i, (sup, _shared) in enumerate(pairs):
                    try:
                        await sup.call("llm")
                        admitted[i] += 1
                    except RateLimited:
                        pass
                if sum(admitted) >= 10:
                    break
                await pairs[0][1].wait_tick()
            for _ in range(10):  # and nothing more, however long they keep asking
                for sup, _ in pairs:
                    with pytest.raises(RateLimited):
                        await sup.call("llm")
                await pairs[0][1].wait_tick()
    assert 10 == sum(admitted)
    assert all(n > 0 for n in admitted)  # both replicas had turns


async def test_a_shared_limit_shows_in_status_and_cluster_status(redis_server: RedisServer) -> None:
    """status().rate_limit reads the leased units; cluster_status() says where they come from."""
    sup, shared = replica(redis_server.url)
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    with guard():
        async with sup:
            await until(
                shared, lambda: shared.cluster_status()["limits"]["llm"][0]["mode"] == "lease"
            )
            await sup.call("llm")
            status = shared.cluster_status()
            assert shared.replica_id in status["replicas"]
            assert 1 == status["live_replicas"]
            assert status["connected"]
            assert status["degraded"] is None
            assert "server" == status["clock"]
            assert 1 == len(sup.status("llm").rate_limit)


# -- pause --------------------------------------------------------------------------------------


async def test_a_429_on_one_replica_pauses_every_replica(redis_server: RedisServer) -> None:
    """Retry-After seen by one replica: the other pauses too, told by the cluster."""
    a, a_shared = replica(redis_server.url)
    b, b_shared = replica(redis_server.url)

    async def limited() -> str:
        raise TooManyRequests(retry_after=30)

    a.register("llm", limited)
    b.register("llm", ok, timeout=Timeout(total=1.0))
    with guard():
        async with a, b, b.events(kinds=[DependencyPaused]) as events:
            await a_shared.wait_tick()
            await b_shared.wait_tick()
            with pytest.raises(TooManyRequests):
                await a.call("llm")
            event = await events.__anext__()
            assert isinstance(event, DependencyPaused)
            assert "cluster" == event.source
            assert 25 < event.retry_after <= 30
            assert b.status("llm").pause_remaining > 25
            with pytest.raises(RateLimited):  # the pause outlasts the call's deadline
                await b.call("llm")
            assert 1 == b.status("llm").rejected_by["paused"]


# -- the shared open verdict --------------------------------------------------------------------


async def failing() -> str:
    raise ConnectionError("down")


def tolerant() -> Breaker:
    """A local breaker that never opens within these tests: only the shared verdict does."""
    return Breaker(failure_ratio=1.0, min_throughput=10_000)


async def test_the_aggregate_failure_ratio_opens_every_replica(redis_server: RedisServer) -> None:
    """Failures on two replicas cross the shared ratio: both refuse calls until a reset,
    while their local breakers stay closed."""
    # The line is all twenty calls: a replica's tick may come before the other replica's
    # first heartbeat (one live replica needs one failing replica) or halfway through its
    # calls, and a lower volume would open on whichever part had been reported by then.
    options = {"open_ratio": 0.5, "open_min_volume": 20, "open_for": 600.0}
    pairs = [replica(redis_server.url, **options) for _ in range(2)]
    for sup, _ in pairs:
        sup.register("flaky", failing, breaker=tolerant())
    (a, a_shared), (b, b_shared) = pairs
    with guard():
        async with a, b:
            for sup, _ in pairs:
                for _ in range(10):
                    with pytest.raises(ConnectionError):
                        await sup.call("flaky")
            await until(a_shared, lambda: b.status("flaky").shared_open_until is not None)
            await until(a_shared, lambda: a.status("flaky").shared_open_until is not None)
            for sup, _ in pairs:
                with pytest.raises(BreakerOpen):
                    await sup.call("flaky")
                status = sup.status("flaky")
                assert State.CLOSED == status.state
                assert 1 == status.rejected_by["shared_open"]
            verdict = b_shared.cluster_status()["dependencies"]["flaky"]["open"]
            assert verdict is not None
            assert 20 == verdict["calls"]
            assert 20 == verdict["failures"]
            assert 500 < verdict["remaining"] <= 600
            # One operator reset, every replica: calls reach the dependency again.
            await a.reset("flaky", scope="cluster")
            await until(b_shared, lambda: b.status("flaky").shared_open_until is None)
            for sup, _ in pairs:
                with pytest.raises(ConnectionError):
                    await sup.call("flaky")


async def test_one_sick_replica_does_not_open_the_others(redis_server: RedisServer) -> None:
    """All the failures on one replica (a broken network of its own): its local breaker
    opens, the healthy replica keeps calling."""
    a, _a_shared = replica(redis_server.url, open_min_volume=10)
    b, b_shared = replica(redis_server.url, open_min_volume=10)
    a.register("llm", failing, breaker=Breaker(failure_threshold=5))
    b.register("llm", ok, breaker=Breaker(failure_threshold=5))
    with guard():
        async with a, b:
            for _ in range(5):
                with pytest.raises(ConnectionError):
                    await a.call("llm")
            for _ in range(5):
                await b.call("llm")
            await until(b_shared, lambda: aggregate_calls(b_shared, "llm") == 10)
            for _ in range(5):
                await b_shared.wait_tick()
            aggregate = b_shared.cluster_status()["dependencies"]["llm"]
            assert (10, 5, 1) == (aggregate["calls"], aggregate["failures"], aggregate["failing"])
            assert aggregate["open"] is None
            assert State.OPEN == a.status("llm").state
            assert "ok" == await b.call("llm")


# -- operator control ---------------------------------------------------------------------------


async def test_isolate_and_reset_with_scope_cluster(redis_server: RedisServer) -> None:
    """An isolation reaches every replica, also one that starts later; a reset lifts it."""
    a, a_shared = replica(redis_server.url)
    b, b_shared = replica(redis_server.url)
    for sup in (a, b):
        sup.register("llm", ok)
    with guard():
        async with a, b:
            await b_shared.wait_tick()
            await a.isolate("llm", reason="maintenance", scope="cluster")
            await until(b_shared, lambda: b.status("llm").state is State.ISOLATED)
            assert "cluster: maintenance" == b.status("llm").transitions[-1].reason
            c, c_shared = replica(redis_server.url)
            c.register("llm", ok)
            async with c:
                await until(c_shared, lambda: c.status("llm").state is State.ISOLATED)
                await b.reset("llm", scope="cluster")
                await until(c_shared, lambda: c.status("llm").state is State.CLOSED)
                await until(a_shared, lambda: a.status("llm").state is State.CLOSED)
                assert "ok" == await c.call("llm")


async def test_a_cluster_isolate_redis_cannot_hear_says_so(redis_server: RedisServer) -> None:
    """Redis away: the isolation stands here, and the operator is told the others may not
    follow."""
    from supervisor.integrations.redis import SharedStateError

    # The short deadline is the subject: an unsent command waits 2 * timeout + interval.
    sup, shared = replica(redis_server.url, timeout=0.25)
    sup.register("llm", ok)
    with guard():
        async with sup:
            await shared.wait_tick()
            redis_server.kill()
            await until(shared, lambda: degraded_by_something(shared))
            with pytest.raises(SharedStateError, match=r"^isolate of 'llm' on this replica stands"):
                await sup.isolate("llm", reason="maintenance", scope="cluster")
            assert State.ISOLATED == sup.status("llm").state


# -- Redis down, slow, restarted ----------------------------------------------------------------


async def test_redis_killed_then_back(redis_server: RedisServer) -> None:
    """SIGKILL: degraded with the reason, local limits at the last known split, calls go on;
    Redis back (empty, its scripts forgotten): shared again."""
    sup, shared = replica(redis_server.url)
    sup.register("llm", ok, rate_limit=RateLimit(10_000, per=1))
    sup.register("plain", ok)
    with guard():
        async with sup:
            await until(
                shared, lambda: shared.cluster_status()["limits"]["llm"][0]["mode"] == "lease"
            )
            redis_server.kill()
            await until(shared, lambda: degraded_by_something(shared))
            health = sup.health()
            assert HealthStatus.DEGRADED == health.status
            assert health.reason is not None
            assert "cannot reach Redis" in health.reason
            assert "split by 1 replica" in health.reason
            assert "ok" == await sup.call("plain")
            assert "local" == shared.cluster_status()["limits"]["llm"][0]["mode"]
            await shared.wait_tick()  # the local bucket starts empty: give it a tick to fill
            assert "ok" == await sup.call("llm")
            redis_server.start()
            await until(shared, lambda: shared.degraded() is None)
            assert HealthStatus.HEALTHY == sup.health().status
            await until(
                shared, lambda: shared.cluster_status()["limits"]["llm"][0]["mode"] == "lease"
            )


async def test_redis_stopped_answers_nothing_then_resumes(redis_server: RedisServer) -> None:
    """SIGSTOP: calls never wait for Redis; the tick's deadline says degraded; SIGCONT:
    the next tick's answers are its own (a fresh connection) and all is shared again."""
    sup, shared = replica(redis_server.url, timeout=0.2)
    sup.register("plain", ok)
    sup.register("llm", ok, rate_limit=RateLimit(10_000, per=1))
    with guard():
        async with sup:
            await shared.wait_tick()
            redis_server.pause()
            try:
                for _ in range(100):
                    assert "ok" == await sup.call("plain")
                await until(shared, lambda: degraded_by_something(shared))
                assert "did not answer within 0.2 s" in (shared.degraded() or "")
            finally:
                redis_server.resume()
            await until(shared, lambda: shared.degraded() is None)
            assert 1 == shared.cluster_status()["live_replicas"]


async def test_leaving_while_redis_answers_nothing_does_not_hang(
    redis_server: RedisServer,
) -> None:
    """The supervisor leaves at once though a round trip is in flight."""
    sup, shared = replica(redis_server.url, timeout=30.0)
    sup.register("plain", ok)
    with guard(10):
        async with sup:
            await shared.wait_tick()
            redis_server.pause()
            await anyio.lowlevel.checkpoint()
    redis_server.resume()


async def test_forgotten_scripts_are_loaded_again(redis_server: RedisServer) -> None:
    """SCRIPT FLUSH between two ticks (NOSCRIPT): the tick loads them and carries on."""
    import coredis

    sup, shared = replica(redis_server.url)
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    with guard():
        async with sup, coredis.Redis.from_url(redis_server.url) as admin:
            assert await shared.wait_tick()
            await admin.script_flush()
            assert await shared.wait_tick()
            assert shared.degraded() is None


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://localhost:6379", "the scheme must be redis://, rediss:// or unix://"),
        ("redis://", "the URL needs a host"),
        ("unix://", "needs the socket's path"),
        ("redis://localhost:notaport", "Port could not be cast"),
    ],
)
def test_a_wrong_url_is_refused_at_once(url: str, problem: str) -> None:
    """Known at construction: a ValueError naming the argument and what is wrong."""
    with pytest.raises(ValueError, match=r"^'url' is not a Redis URL: ") as caught:
        RedisShared(url, "svc")
    assert problem in str(caught.value)


def test_the_password_stays_out_of_messages() -> None:
    """The URL's password is never repeated."""
    with pytest.raises(ValueError, match=r"redis://user:\*\*\*@") as caught:
        RedisShared("redis://user:hunter2@/0", "svc")
    assert "hunter2" not in str(caught.value)


async def test_a_rate_limit_reserve_is_refused_on_a_shared_supervisor() -> None:
    """
    A fleet's limits keep no reserve for higher priorities (issue 20): a reserve on one would be
    ignored, so register and reconfigure refuse it, naming the dependency; local ones keep it.
    """
    sup = Supervisor(shared=RedisShared("redis://localhost", "svc"))
    with pytest.raises(ValueError, match=r"^'llm': RateLimit\(reserve=0.1\) is kept by local"):
        sup.register("llm", ok, rate_limit=RateLimit(10, reserve=0.1))
    assert sup.dependencies == ()
    sup.register("llm", ok, rate_limit=RateLimit(10))
    with pytest.raises(ValueError, match=r"^'llm': RateLimit\(reserve=0.2\)"):
        await sup.reconfigure("llm", rate_limit=[RateLimit(5), RateLimit(10, reserve=0.2)])
    alone = Supervisor()
    alone.register("llm", ok, rate_limit=RateLimit(10, reserve=0.1))  # local: kept
    assert alone.dependencies == ("llm",)


@pytest.mark.parametrize("namespace", ["", "a{b}", "with space", "x" * 201])
def test_a_namespace_that_cannot_be_a_hash_tag_is_refused(namespace: str) -> None:
    """A namespace becomes a Redis Cluster hash tag: no braces, no whitespace."""
    with pytest.raises(ValueError, match=r"^'namespace' must be 1 to 200 printable"):
        RedisShared("redis://localhost", namespace)


async def test_an_unreachable_redis_is_degraded_not_dead() -> None:
    """Nothing listens there: degraded with the reason; calls go on; check() says it too."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the replica connects
    from supervisor.integrations.redis import SharedStateError

    sup, shared = replica(f"redis://127.0.0.1:{port}/0")  # refused at once, never timed out
    sup.register("plain", ok)
    with guard():
        with pytest.raises(SharedStateError, match=r"^cannot use Redis at redis://127.0.0.1"):
            await shared.check()
        async with sup:
            await until(shared, lambda: degraded_by_something(shared))
            assert "cannot reach Redis at redis://127.0.0.1" in (shared.degraded() or "")
            assert "ok" == await sup.call("plain")


async def test_another_format_in_the_namespace(redis_server: RedisServer) -> None:
    """Keys of another ringfence version: degraded, and check() says what to do."""
    import coredis

    from supervisor.integrations.redis import SharedStateError

    sup, shared = replica(redis_server.url, namespace="old")
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    with guard():
        async with coredis.Redis.from_url(redis_server.url) as admin:
            await admin.hset("ringfence:{old}:meta", {"format": "0"})
        with pytest.raises(SharedStateError, match="holds ringfence key format 0"):
            await shared.check()
        async with sup:
            await until(shared, lambda: degraded_by_something(shared))
            assert "used by another ringfence version" in (shared.degraded() or "")
            assert "local" == shared.cluster_status()["limits"]["llm"][0]["mode"]


async def test_another_applications_keys_in_the_way(redis_server: RedisServer) -> None:
    """A key of ours holding something else: degraded, naming it; check() lists it."""
    import coredis

    from supervisor.integrations.redis import SharedStateError

    sup, shared = replica(redis_server.url, namespace="taken")
    sup.register("llm", ok)
    with guard():
        async with coredis.Redis.from_url(redis_server.url) as admin:
            await admin.set("ringfence:{taken}:replicas", "not a sorted set")
        with pytest.raises(SharedStateError, match=r"ringfence:\{taken\}:replicas \(string\)"):
            await shared.check()
        async with sup:
            await until(shared, lambda: degraded_by_something(shared))
            assert "holds another application's data" in (shared.degraded() or "")


async def test_check_passes_on_a_fit_server(redis_server: RedisServer) -> None:
    """A fresh namespace on a plain server: nothing to say."""
    _, shared = replica(redis_server.url, clock="server")
    with guard():
        await shared.check()


# -- clocks ---------------------------------------------------------------------------------------


@pytest.fixture
def no_time_url(redis_server: RedisServer) -> str:
    """A user that may not call TIME (scripts included), on the test's server."""
    import redis

    with redis.Redis(unix_socket_path=str(redis_server.socket_path)) as admin:
        admin.acl_setuser(
            "app",
            enabled=True,
            passwords=["+secret"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-time"],
        )
    return f"unix://app:secret@{redis_server.socket_path}"


async def test_time_refused_with_clock_server_is_degraded(no_time_url: str) -> None:
    """clock="server" and no TIME: degraded, saying so; check() raises at once."""
    from supervisor.integrations.redis import SharedStateError

    sup, shared = replica(no_time_url, clock="server")
    sup.register("llm", ok)
    with guard():
        with pytest.raises(SharedStateError, match="refuses TIME to scripts"):
            await shared.check()
        async with sup:
            await until(shared, lambda: degraded_by_something(shared))
            assert "refuses TIME to scripts" in (shared.degraded() or "")


async def test_a_wall_clock_jump_on_a_client_clock_replica(
    no_time_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica whose wall clock jumps an hour keeps the time it started with (so the shared
    limit still works) and says degraded, since the replicas must agree on the time."""
    import time as real_time
    import types

    from supervisor.integrations.redis import _sync

    sup, shared = replica(no_time_url)
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    with guard():
        async with sup:
            await until(shared, lambda: shared.cluster_status()["clock"] == "client")
            jumped = types.SimpleNamespace(
                time=lambda: real_time.time() + 3600, monotonic=real_time.monotonic
            )
            monkeypatch.setattr(_sync, "time", jumped)
            await until(shared, lambda: "wall clock moved +3600" in (shared.degraded() or ""))
            assert "lease" == shared.cluster_status()["limits"]["llm"][0]["mode"]
