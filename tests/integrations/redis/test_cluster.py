"""
The shared state on a real Redis Cluster (three redis-server nodes joined by ``redis-cli
--cluster create``, started by the tests): through ``redis+cluster://`` or ``cluster=True``
the replicas share limits and verdicts wherever the namespace's slot lives; pointed at one
node without cluster mode, ``check()`` and ``health()`` say what to change.

Each test's namespace hashes to a slot the URL's node does *not* serve, so every command of
the test needs the cluster's routing (a plain client gets ``MOVED``).
"""

from __future__ import annotations

import gc
import itertools
from contextlib import AsyncExitStack

import coredis
import coredis.exceptions
import pytest

from policies import RateLimit, State
from supervisor import BreakerOpen, RateLimited
from supervisor.integrations.redis import RedisShared, SharedStateError
from supervisor.integrations.redis._server import RedisCluster, RedisServer

from .conftest import guard
from .test_shared import degraded_by_something, failing, ok, replica, tolerant, until

pytestmark = pytest.mark.anyio

_names = itertools.count()


async def elsewhere(cluster: RedisCluster, prefix: str) -> str:
    """A fresh namespace whose slot lives on another node than the one in ``cluster.url``."""
    async with coredis.Redis.from_url(cluster.url) as node:
        while True:
            namespace = f"{prefix}-{next(_names)}"
            try:
                await node.exists([f"ringfence:{{{namespace}}}:meta"])
            except coredis.exceptions.MovedError:
                return namespace


async def serves(node: RedisServer, namespace: str) -> bool:
    """Whether *node* serves *namespace*'s slot (a plain client there gets no MOVED)."""
    async with coredis.Redis.from_url(f"redis://127.0.0.1:{node.port}") as client:
        try:
            await client.exists([f"ringfence:{{{namespace}}}:meta"])
        except coredis.exceptions.MovedError:
            return False
    return True


def cluster_url(cluster: RedisCluster) -> str:
    return cluster.url.replace("redis://", "redis+cluster://", 1)


async def test_replicas_share_one_limit_through_the_cluster(redis_cluster: RedisCluster) -> None:
    """Two replicas (one by URL scheme, one by argument) admit the limit's burst once."""
    namespace = await elsewhere(redis_cluster, "limit")
    limit = RateLimit(10, per=3600)  # a burst of 10; the next unit in six minutes
    admitted = [0, 0]
    with guard():
        async with AsyncExitStack() as stack:
            pairs = [
                replica(cluster_url(redis_cluster), namespace),
                replica(redis_cluster.urls[1], namespace, cluster=True),
            ]
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
            for _, shared in pairs:
                assert shared.degraded() is None
                assert 2 == shared.cluster_status()["live_replicas"]
    assert 10 == sum(admitted)
    assert all(n > 0 for n in admitted)  # both replicas had turns


async def test_a_shared_open_reaches_the_other_replica(redis_cluster: RedisCluster) -> None:
    """Failures on one replica and the other through the cluster open both."""
    namespace = await elsewhere(redis_cluster, "open")
    options = {"open_ratio": 0.5, "open_min_volume": 20, "open_for": 600.0}
    pairs = [replica(cluster_url(redis_cluster), namespace, **options) for _ in range(2)]
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
                assert State.CLOSED == sup.status("flaky").state
            verdict = b_shared.cluster_status()["dependencies"]["flaky"]["open"]
            assert verdict is not None
            assert (20, 20) == (verdict["calls"], verdict["failures"])


async def test_check_passes_on_a_cluster(redis_cluster: RedisCluster) -> None:
    """check() through the cluster: scripts on every node, TIME, the namespace's keys."""
    namespace = await elsewhere(redis_cluster, "check")
    sup, shared = replica(cluster_url(redis_cluster), namespace, clock="server")
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    with guard():
        await shared.check()
        async with sup:
            await until(
                shared, lambda: shared.cluster_status()["limits"]["llm"][0]["mode"] == "lease"
            )
        await shared.check()  # the keys the replica wrote are ringfence's own


async def test_a_cluster_node_without_cluster_mode_says_so(redis_cluster: RedisCluster) -> None:
    """A plain redis:// URL to a cluster node whose namespace lives elsewhere (MOVED): check()
    and health() name the cluster and what to write instead."""
    namespace = await elsewhere(redis_cluster, "plain")
    sup, shared = replica(redis_cluster.url, namespace)
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    hint = r"is part of a Redis Cluster .*use a redis\+cluster:// .*cluster=True"
    with guard():
        with pytest.raises(SharedStateError, match=hint):
            await shared.check()
        async with sup:
            await until(shared, lambda: degraded_by_something(shared))
            assert "is part of a Redis Cluster" in (sup.health().reason or "")


async def test_cluster_mode_on_a_server_that_is_not_a_cluster(redis_tcp: RedisServer) -> None:
    """redis+cluster:// to a plain server: check() says it is not a cluster."""
    url = redis_tcp.url.replace("redis://", "redis+cluster://", 1)
    _, shared = replica(url)
    with guard(), pytest.raises(SharedStateError, match=r"is not a Redis Cluster.*redis://"):
        await shared.check()


def test_cluster_mode_needs_tcp() -> None:
    """A cluster over a unix socket does not exist: refused at once, naming the schemes."""
    with pytest.raises(ValueError, match=r"a Redis Cluster is reached over TCP"):
        RedisShared("unix:///run/redis.sock", "svc", cluster=True)
    with pytest.raises(TypeError, match=r"'cluster' must be a bool, got 'yes'"):
        RedisShared("redis://localhost", "svc", cluster="yes")  # type: ignore[arg-type]


def test_the_cluster_shows_in_repr() -> None:
    shared = RedisShared("rediss+cluster://user:hunter2@node-1:7000", "svc")
    assert shared.cluster
    assert "cluster=True" in repr(shared)
    assert "hunter2" not in repr(shared)


async def test_an_unreachable_cluster_is_degraded_not_dead() -> None:
    """Nothing listens at the cluster URL: check() and health() say so; calls go on; the
    connections tried leave nothing open behind them (no ResourceWarning under -W error)."""
    from .test_hostile import closed_port

    sup, shared = replica(f"redis+cluster://127.0.0.1:{closed_port()}")
    sup.register("plain", ok)
    with guard():
        with pytest.raises(SharedStateError, match=r"^cannot use Redis at redis\+cluster://"):
            await shared.check()
        async with sup:
            await until(shared, lambda: degraded_by_something(shared))
            for _ in range(3):
                await shared.wait_tick()
            assert "cannot reach Redis at redis+cluster://" in (shared.degraded() or "")
            assert "ok" == await sup.call("plain")
    gc.collect()


async def test_a_cluster_node_that_stops_answering(redis_cluster: RedisCluster) -> None:
    """The node holding the namespace's slot stopped (SIGSTOP): degraded by the deadline;
    resumed: shared again."""
    namespace = await elsewhere(redis_cluster, "stop")
    sup, shared = replica(cluster_url(redis_cluster), namespace, timeout=0.3)
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    sup.register("plain", ok)
    (node,) = [n for n in redis_cluster.nodes if await serves(n, namespace)]
    with guard():
        async with sup:
            await until(shared, lambda: shared.degraded() is None)
            node.pause()
            try:
                await until(shared, lambda: degraded_by_something(shared))
                assert "did not answer within 0.3 s" in (shared.degraded() or "")
                assert "ok" == await sup.call("plain")
                assert "local" == shared.cluster_status()["limits"]["llm"][0]["mode"]
            finally:
                node.resume()
            await until(shared, lambda: shared.degraded() is None)


@pytest.mark.parametrize("error", [coredis.exceptions.AskError, coredis.exceptions.MovedError])
def test_an_ask_or_a_moved_names_the_cluster_mode(error: type[Exception]) -> None:
    """ASK (a slot migrating) is a redirection as MOVED is: the same advice."""
    from supervisor.integrations.redis._client import explain

    text = explain(error("15495 127.0.0.1:7001"), "redis://node:7000", connecting=False)
    assert text is not None
    assert text.startswith("Redis at redis://node:7000 is part of a Redis Cluster")
    assert f"({error.__name__}: 15495 127.0.0.1:7001)" in text
