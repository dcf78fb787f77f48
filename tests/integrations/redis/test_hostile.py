"""
Hostile or broken state in Redis, secrets and TLS, on a real redis-server: values ringfence
never writes, planted in its keys, read as absent (and ``health()`` names the key), a pause or
a verdict planted for days lasts no longer than the replica's own settings allow,
``cluster_status()`` never raises; no form of password reaches a message, a log line or
``repr``; a TLS handshake that fails says so.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import coredis
import pytest

from policies import RateLimit, Retry
from supervisor import BreakerOpen, HealthStatus
from supervisor.integrations.redis import RedisShared, SharedStateError
from supervisor.integrations.redis._keys import Keys
from supervisor.integrations.redis._server import RedisCluster, RedisServer

from .conftest import guard
from .test_shared import degraded_by_something, ok, replica, until

pytestmark = pytest.mark.anyio

DAY_MS = 86_400_000


def lease_mode(shared: RedisShared) -> str:
    return str(shared.cluster_status()["limits"]["llm"][0]["mode"])


async def test_a_command_whose_seq_is_not_a_number(redis_server: RedisServer) -> None:
    """A non-numeric control seq: no command, said with its key; everything else shared
    (the limit leases); the next cluster command writes a number over it."""
    keys = Keys("seq").dependency("llm")
    async with coredis.Redis.from_url(redis_server.url) as admin:
        await admin.hset(keys.control, {"seq": "abc", "op": "isolate", "reason": "x"})
    sup, shared = replica(redis_server.url, "seq")
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    with guard():
        async with sup:
            await until(shared, lambda: degraded_by_something(shared))
            reason = sup.health().reason or ""
            assert f"{keys.control} holds \"seq='abc' op='isolate'\"" in reason
            assert "read as absent" in reason
            await until(shared, lambda: lease_mode(shared) == "lease")
            assert "ok" == await sup.call("llm")
            assert shared.cluster_status()["dependencies"]["llm"]["control"] is None
            await sup.isolate("llm", reason="maintenance", scope="cluster")
            await until(shared, lambda: shared.degraded() is None)
            control = shared.cluster_status()["dependencies"]["llm"]["control"]
            assert (1, "isolate") == (control["seq"], control["op"])


async def test_a_malformed_open_verdict(redis_server: RedisServer) -> None:
    """A verdict that is not one: calls go on, cluster_status() answers, health() names it."""
    keys = Keys("verdict").dependency("llm")
    async with coredis.Redis.from_url(redis_server.url) as admin:
        await admin.set(keys.open, "7 1700000000000 r2 forty 10", px=600_000)
    sup, shared = replica(redis_server.url, "verdict")
    sup.register("llm", ok)
    with guard():
        async with sup:
            await until(shared, lambda: degraded_by_something(shared))
            assert f"{keys.open} holds '7 1700000000000 r2 forty 10'" in (shared.degraded() or "")
            status = shared.cluster_status()
            assert status["dependencies"]["llm"]["open"] is None
            json.dumps(status)  # plain data
            assert "ok" == await sup.call("llm")
            assert sup.status("llm").shared_open_until is None


async def test_a_verdict_planted_for_a_day_lasts_open_for(redis_server: RedisServer) -> None:
    """A well-formed verdict with a day's TTL: applied, for this replica's open_for only."""
    keys = Keys("long-open").dependency("llm")
    async with coredis.Redis.from_url(redis_server.url) as admin:
        await admin.set(keys.open, "7 1700000000000 r2 40 10", px=DAY_MS)
    sup, shared = replica(redis_server.url, "long-open", open_for=60.0)
    sup.register("llm", ok)
    with guard():
        async with sup:
            await until(shared, lambda: sup.status("llm").shared_open_until is not None)
            with pytest.raises(BreakerOpen) as refused:
                await sup.call("llm")
            assert 0 < refused.value.retry_after <= 60
            assert 0 < shared.cluster_status()["dependencies"]["llm"]["open"]["remaining"] <= 60
            assert shared.degraded() is None


@pytest.mark.parametrize(("retry", "cap"), [(Retry(max_retry_after=20), 20.0), (None, 300.0)])
async def test_a_pause_planted_for_ten_days_is_capped(
    redis_server: RedisServer, retry: Retry | None, cap: float
) -> None:
    """A pause key with a 10-day TTL pauses for max_retry_after (300 s without a Retry),
    as a Retry-After hint of the replica's own would; cluster_status() says the same."""
    keys = Keys("long-pause").dependency("llm")
    async with coredis.Redis.from_url(redis_server.url) as admin:
        await admin.set(keys.pause, "intruder 0badcafe 1", px=10 * DAY_MS)
    sup, shared = replica(redis_server.url, "long-pause")
    sup.register("llm", ok, retry=retry)
    with guard():
        async with sup:
            await until(shared, lambda: sup.status("llm").pause_remaining > 0)
            assert cap - 5 < sup.status("llm").pause_remaining <= cap
            await shared.wait_tick()
            remaining = shared.cluster_status()["dependencies"]["llm"]["pause_remaining"]
            assert cap - 5 < remaining <= cap


async def test_garbage_in_the_scripts_own_numbers(redis_server: RedisServer) -> None:
    """Non-numbers in the epoch, a replica's report and a limit's schedule: the scripts read
    them as absent (and write numbers over them); nothing degrades, the limit leases."""
    keys = Keys("numbers")
    dependency = keys.dependency("llm")
    async with coredis.Redis.from_url(redis_server.url) as admin:
        await admin.hset(dependency.state, {"epoch": "abc"})
        await admin.hset(dependency.health, {"ghost": "x y z"})
        await admin.hset(keys.limit("llm", 0), {"tat": "soon", "h:ghost": "later"})
    sup, shared = replica(redis_server.url, "numbers")
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    with guard():
        async with sup:
            await until(shared, lambda: lease_mode(shared) == "lease")
            await sup.call("llm")
            await shared.wait_tick()
            assert shared.degraded() is None
            assert 1 == shared.cluster_status()["dependencies"]["llm"]["calls"]


# -- secrets ------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:{port}/0?password=hunter2",
        "redis://app:hunter2@127.0.0.1:{port}/0",
        "redis://127.0.0.1:{port}/0?db=0&password=hunter2",
    ],
)
async def test_no_password_in_any_message(url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The password, in the user information or as ?password=, is in neither check()'s error,
    health(), the degraded log line, cluster_status() nor repr."""
    url = url.format(port=closed_port())
    sup, shared = replica(url)
    sup.register("llm", ok)
    caplog.set_level(logging.INFO, logger="ringfence")
    seen = [repr(shared)]
    with guard():
        with pytest.raises(SharedStateError) as caught:
            await shared.check()
        seen.append(str(caught.value))
        async with sup:
            await until(shared, lambda: degraded_by_something(shared))
            seen.append(sup.health().reason or "")
            seen.append(json.dumps(shared.cluster_status()))
            seen.append(repr(sup.health()))
    seen += [record.getMessage() for record in caplog.records]
    assert any("shared_degraded" in text for text in seen)
    assert all("127.0.0.1" in text for text in seen[:3])
    assert [] == [text for text in seen if "hunter2" in text]


# -- TLS ------------------------------------------------------------------------------------------


async def test_tls_against_a_plain_server_says_so(redis_tcp: RedisServer) -> None:
    """rediss:// to a server without TLS: the handshake fails (or gets no TLS answer), and
    check() and health() say it is TLS, not 'Unable to establish a connection'."""
    url = redis_tcp.url.replace("redis://", "rediss://", 1)
    sup, shared = replica(url, timeout=0.5)
    sup.register("llm", ok)
    with guard():
        with pytest.raises(SharedStateError, match=r"^the TLS handshake with Redis at rediss://"):
            await shared.check()
        async with sup:
            await until(shared, lambda: degraded_by_something(shared))
            assert HealthStatus.DEGRADED == sup.health().status
            assert "the TLS handshake with Redis at rediss://" in (sup.health().reason or "")


async def test_tls_and_mutual_tls(redis_tls: tuple[str, str], tls_files: Path) -> None:
    """A TLS server: the URL's options as the README gives them reach it (the CA, the host
    name checked, and a client certificate where the server asks for one); without the CA
    the certificate is refused, without a client certificate the server closes, each said."""
    url, auth_clients = redis_tls
    ca = f"ssl_ca_certs={tls_files / 'ca.crt'}&ssl_check_hostname=true"
    client = f"&ssl_certfile={tls_files / 'client.crt'}&ssl_keyfile={tls_files / 'client.key'}"
    sup, shared = replica(f"{url}?{ca}{client}", clock="server")
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    with guard():
        await shared.check()
        async with sup:
            await until(shared, lambda: lease_mode(shared) == "lease")
            assert shared.degraded() is None
        _, untrusted = replica(url)
        with pytest.raises(SharedStateError, match=r"presented a TLS certificate this replica"):
            await untrusted.check()
        _, anonymous = replica(f"{url}?{ca}")
        if auth_clients == "no":
            await anonymous.check()
        else:
            with pytest.raises(SharedStateError, match=r"needs \?ssl_certfile=\.\.\.&ssl_keyfile"):
                await anonymous.check()


# -- ACL ------------------------------------------------------------------------------------------


README = Path(__file__).parents[3] / "README.md"


def readme_acl(namespace: str) -> list[str]:
    """The README's ACL rules (after the user name), for *namespace*, password "pw"."""
    (line,) = [line for line in README.read_text().splitlines() if line.startswith("user ")]
    _, _, *rules = line.split()
    return [
        ">pw" if rule.startswith(">") else rule.replace("{summarizer}", "{" + namespace + "}")
        for rule in rules
    ]


async def test_the_readme_acl_is_enough(redis_tcp: RedisServer) -> None:
    """A user with the README's rules: check() (TIME probe, keys to look over), every script
    (heartbeat, dependency with a shared open, lease, a 429's pause, isolate and reset), and
    scripts loaded again after SCRIPT FLUSH; nothing degraded, nothing in the ACL log."""
    from .test_shared import TooManyRequests, failing, tolerant

    async with coredis.Redis.from_url(redis_tcp.url) as admin:
        await admin.acl_setuser("app", *readme_acl("acl"))
        url = redis_tcp.url.replace("redis://", "redis://app:pw@", 1)
        options = {"open_ratio": 0.5, "open_min_volume": 5, "open_min_replicas": 1}
        sup, shared = replica(url, "acl", clock="server", **options)

        async def limited() -> str:
            raise TooManyRequests(retry_after=30)

        sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
        sup.register("flaky", failing, breaker=tolerant())
        sup.register("limited", limited)
        with guard():
            await shared.check()
            async with sup:
                await until(shared, lambda: lease_mode(shared) == "lease")
                await sup.call("llm")
                for _ in range(5):
                    with pytest.raises(ConnectionError):
                        await sup.call("flaky")
                with pytest.raises(TooManyRequests):
                    await sup.call("limited")
                await until(shared, lambda: sup.status("flaky").shared_open_until is not None)
                await sup.isolate("llm", reason="maintenance", scope="cluster")
                await sup.reset("llm", scope="cluster")
                await admin.script_flush()
                assert await shared.wait_tick()
                assert await shared.wait_tick()
                assert shared.degraded() is None
            await shared.check()  # the namespace's keys now exist: SCAN and TYPE
        assert () == tuple(await admin.acl_log())


async def test_the_readme_acl_on_a_cluster(redis_cluster: RedisCluster) -> None:
    """The README's rules and +cluster|slots, on every node: check() and the ticks pass."""
    from .test_cluster import cluster_url, elsewhere

    namespace = await elsewhere(redis_cluster, "acl")
    for node in redis_cluster.urls:
        async with coredis.Redis.from_url(node) as admin:
            await admin.acl_setuser("app", *readme_acl(namespace), "+cluster|slots")
    url = cluster_url(redis_cluster).replace("://", "://app:pw@", 1)
    sup, shared = replica(url, namespace, clock="server")
    sup.register("llm", ok, rate_limit=RateLimit(100, per=1))
    with guard():
        await shared.check()
        async with sup:
            await until(shared, lambda: lease_mode(shared) == "lease")
            assert shared.degraded() is None
    for node in redis_cluster.urls:
        async with coredis.Redis.from_url(node) as admin:
            assert () == tuple(await admin.acl_log())
