"""
A fleet on a real redis-server (issue 22): what each replica receives per tick does not grow
with the fleet, and clocks: the replicas' own clocks are never used silently, a skewed clock is
reported, and on the replicas' clocks one skewed replica cannot hold back the others' limits
by more than ``max_clock_skew``. Waiting is by ticks, never by sleeps.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

import pytest

from policies import RateLimit
from supervisor import RateLimited, Supervisor
from supervisor.integrations.redis import RedisShared
from supervisor.integrations.redis._keys import Keys
from supervisor.integrations.redis._server import RedisServer

from .conftest import guard
from .test_shared import ok, replica, until

pytestmark = pytest.mark.anyio


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


def skewed(url: str, seconds: float, **options: Any) -> tuple[Supervisor, RedisShared]:
    """A replica whose clock is *seconds* off (the wall time its scripts' clock starts from)."""
    sup, shared = replica(url, **options)
    shared._sync._wall0 += seconds
    return sup, shared


# -- traffic ------------------------------------------------------------------------------------


async def test_summaries_travel_only_when_cluster_status_asks(redis_server: RedisServer) -> None:
    """Ticks nobody reads bring no other replica's summary; cluster_status() asks for them and
    the next tick brings every live replica's."""
    trio_ = [replica(redis_server.url) for _ in range(3)]
    for sup, _ in trio_:
        sup.register("llm", ok)
    (_, a), (b_sup, b), (_, c) = trio_
    with guard():
        async with AsyncExitStack() as stack:
            for sup, _ in trio_:
                await stack.enter_async_context(sup)
            await until(a, lambda: a._sync.replicas == 3)
            for _ in range(3):
                await a.wait_tick()
            assert {} == a._sync.summaries  # nobody asked: nothing but the count came back
            assert [a.replica_id] == list(a.cluster_status()["replicas"])  # its own, at once
            await b_sup.call("llm")
            await a.wait_tick()
            await until(b, lambda: b.cluster_status()["replicas"][b.replica_id] is not None)
            await until(
                a,
                lambda: (
                    a.cluster_status()["replicas"]
                    .get(b.replica_id, {})
                    .get("dependencies", {})
                    .get("llm", {})
                    .get("calls")
                    == 1
                ),
            )
            status = a.cluster_status()
            assert {a.replica_id, b.replica_id, c.replica_id} == set(status["replicas"])
            assert status["replicas_wall"] is not None


# -- clocks ---------------------------------------------------------------------------------------


async def test_time_refused_is_degraded_and_logged(
    no_time_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """clock="auto" on the replicas' clocks works, but says so: degraded, and a log line."""
    sup, shared = replica(no_time_url)
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    with guard(), caplog.at_level(logging.WARNING, logger="ringfence"):
        async with sup:
            await until(
                shared, lambda: shared.cluster_status()["limits"]["llm"][0]["mode"] == "lease"
            )
            assert "client" == shared.cluster_status()["clock"]
            assert "Redis refuses TIME to scripts" in (shared.degraded() or "")
            assert "Redis refuses TIME to scripts" in (sup.health().reason or "")
            assert 0.0 == pytest.approx(shared.cluster_status()["clock_skew"]["this"], abs=0.5)
    logged = [r.getMessage() for r in caplog.records if "ringfence.shared_clock" in r.getMessage()]
    assert 1 == len(logged)  # once, not at every tick


@pytest.mark.parametrize("time_allowed", [True, False], ids=["server-clock", "client-clocks"])
async def test_a_skewed_replica_is_reported(
    redis_server: RedisServer, no_time_url: str, time_allowed: bool
) -> None:
    """One replica 5 s fast among three: its skew is measured at each heartbeat. On Redis's
    TIME it is harmless (a warning); on the replicas' clocks it is degraded, saying why."""
    url = redis_server.url if time_allowed else no_time_url
    pairs = [replica(url), replica(url), skewed(url, 5.0)]
    for sup, _ in pairs:
        sup.register("llm", ok)
    (_, a), _, (_, fast) = pairs
    with guard():
        async with AsyncExitStack() as stack:
            for sup, _ in pairs:
                await stack.enter_async_context(sup)
            await until(a, lambda: a._sync.replicas == 3 and fast._sync.replicas == 3)
            await until(fast, lambda: (fast.cluster_status()["clock_skew"]["this"] or 0) > 4)
            await until(a, lambda: (a.cluster_status()["clock_skew"]["fleet"] or 0) > 4)
            assert abs(a.cluster_status()["clock_skew"]["this"]) < 1
            assert any("off the live replicas' median" in w for w in a.cluster_status()["warnings"])
            reason = fast.degraded() or ""
            if time_allowed:
                assert "off the live replicas' median" not in reason
                assert any("harmless" in w for w in fast.cluster_status()["warnings"])
            else:
                assert "off the live replicas' median" in reason
                assert "clamp" in reason


async def test_a_fast_idle_replica_cannot_hold_the_limit_back(
    redis_server: RedisServer, no_time_url: str
) -> None:
    """On the replicas' clocks, an idle replica 5 s fast used to move the shared schedule 5 s
    ahead with its standing lease (the fleet admitted nothing for 5 s). Its time is clamped to
    the fleet's median + max_clock_skew (1 s): the schedule moves at most that far."""
    import redis

    limit = RateLimit(100, per=1)
    keys = Keys("svc")
    pairs = [replica(no_time_url), replica(no_time_url)]
    with guard():
        async with AsyncExitStack() as stack:
            for sup, _ in pairs:
                sup.register("llm", ok, rate_limit=limit)
                await stack.enter_async_context(sup)
            (_, a), (_, b) = pairs
            await until(a, lambda: a._sync.replicas == 2 and b._sync.replicas == 2)
            fast_sup, fast = skewed(no_time_url, 5.0)
            fast_sup.register("llm", ok, rate_limit=limit)
            await stack.enter_async_context(fast_sup)
            await until(fast, lambda: fast.cluster_status()["limits"]["llm"][0]["mode"] == "lease")
            await fast.wait_tick()
            with redis.Redis(unix_socket_path=str(redis_server.socket_path)) as admin:
                tat = float(admin.hget(keys.limit("llm", 0), "tat") or 0)
                seconds, micros = admin.time()
            ahead = tat - (seconds * 1000 + micros / 1000)
            assert ahead < 2000  # 1 s of clamp, a horizon, a standing lease: not 5 s


# -- replicas without Redis -------------------------------------------------------------------------


def readme_block() -> str:
    """The README's Redis example, as written."""
    from pathlib import Path

    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("## Beyond one process", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


async def test_the_readme_redis_block_serves_its_first_call(redis_server: RedisServer) -> None:
    """The README's block as written (its URL pointed at the test's server): the first call,
    made as soon as the supervisor is entered, before Redis first answers, is served."""
    code = readme_block()
    assert 'RedisShared("redis://redis:6379/0"' in code
    assert "        ...\n" in code + "\n"
    code = code.replace("redis://redis:6379/0", redis_server.url)
    code = code.replace("        ...", "        calls.append(await supervisor.call('llm'))")
    namespace: dict[str, Any] = {"calls": []}

    async def ask_llm() -> str:
        return "a summary"

    namespace["ask_llm"] = ask_llm
    exec(compile(code, "README.md", "exec"), namespace)
    with guard():
        await namespace["main"]()
    assert ["a summary"] == namespace["calls"]


async def test_expected_replicas_split_a_replica_that_never_reached_redis() -> None:
    """Redis unreachable from the start: with expected_replicas=4 a replica admits a quarter
    of the limit (its share of the burst, at once), and says so; without, the whole of it."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: connections are refused at once
    url = f"redis://127.0.0.1:{port}/0"
    for expected, split, share in ((4, "4 replicas", 25), (None, "1 replica", 100)):
        sup, shared = replica(url, expected_replicas=expected)
        sup.register("llm", ok, rate_limit=RateLimit(100, per=3600))  # refills in 36 s a unit
        with guard():
            async with sup:
                await until(shared, lambda s=shared: "cannot reach Redis" in (s.degraded() or ""))
                assert f"split by {split}" in (shared.degraded() or "")
                admitted = 0
                for _ in range(150):
                    try:
                        await sup.call("llm")
                        admitted += 1
                    except RateLimited:
                        pass
                assert share == admitted


def test_expected_replicas_must_be_a_positive_int() -> None:
    with pytest.raises(ValueError, match="'expected_replicas' must be an int >= 1, got 0"):
        RedisShared("redis://localhost", "svc", expected_replicas=0)
    with pytest.raises(TypeError, match=r"'expected_replicas' must be an int >= 1, got 2\.0"):
        RedisShared("redis://localhost", "svc", expected_replicas=2.0)  # type: ignore[arg-type]
