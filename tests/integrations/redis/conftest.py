"""
Tests of the shared state on a real redis-server (Debian's), each test with a server of its
own: a child process in a temporary directory, on a unix socket there (or 127.0.0.1 and a free
port), never a system service. Without redis-server these tests skip and say how to install
it; under CI=true they fail instead, since CI must run them (.ci/run installs it).

The tests run on asyncio and on trio. trio runs on its real clock here: virtual time would
jump while a reply from Redis is on its way, and every deadline would fire at once. So nothing
is timed: tests wait for the sync actor's next tick (``RedisShared.wait_tick()``) or for an
event, under a hang guard, never for a sleep.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest

from supervisor.integrations.redis._server import (
    INSTALL_HINT,
    RedisCluster,
    RedisServer,
    find_redis_cli,
    find_redis_server,
)

#: Hang guard, real seconds (both backends run on real time here).
HANG = float(os.environ.get("RINGFENCE_TEST_HANG", "30"))
#: Sync interval of the tests' replicas: short, so a test waits for few real milliseconds.
INTERVAL = 0.02


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Both backends, on real time (see the module docstring)."""
    return str(request.param)


def need_redis_server(*, cli: bool = False) -> None:
    """Skip (fail under CI=true) without a redis-server (and with *cli*, a redis-cli) to run."""
    if find_redis_server() is not None and (not cli or find_redis_cli() is not None):
        return
    hint = INSTALL_HINT
    if find_redis_server() is not None:
        hint = "redis-cli was not found: install it (Debian/Ubuntu: `sudo apt-get install redis-tools`)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {hint}", pytrace=False)
    pytest.skip(hint)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a unix socket, started for this test."""
    need_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_tcp() -> Iterator[RedisServer]:
    """A private redis-server on 127.0.0.1 and a free port (and a unix socket)."""
    need_redis_server()
    with RedisServer(tcp=True) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster_session() -> Iterator[RedisCluster]:
    """One 3-node Redis Cluster for the session (joining one takes seconds)."""
    need_redis_server(cli=True)
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(redis_cluster_session: RedisCluster) -> RedisCluster:
    """A 3-node Redis Cluster (the session's: tests keep to namespaces of their own)."""
    return redis_cluster_session


@contextmanager
def guard(seconds: float = HANG) -> Iterator[None]:
    """Fail, instead of hanging, when the body has not finished in *seconds*."""
    with anyio.fail_after(seconds):
        yield
