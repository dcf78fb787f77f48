"""
:class:`RedisShared`, the face of the shared state: its settings (checked), ``check()``, the
operator's cluster-wide ``isolate``/``reset``, and what the supervisor reads (``limiter``,
``degraded``, ``cluster_status``). The sync actor (``_sync.py``) does the talking to Redis;
``_protocol.py`` says what the scripts are given and what their answers mean.
"""

from __future__ import annotations

import math
import os
import random
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, final
from urllib.parse import urlsplit

import anyio
import anyio.abc
import coredis
import coredis.exceptions

from policies import RateLimit

from ._client import Client, explain, plain_url
from ._keys import FORMAT, Keys, check_namespace
from ._lease import LeasedLimiter
from ._protocol import (
    _expected_type,
    _leaf,
    _reason,
    _redact,
    _text,
    verdict_fields,
)
from ._scripts import SCRIPTS
from ._sync import SharedStateError, SyncActor, _Command

if TYPE_CHECKING:
    from supervisor._runtime import Replica

__all__ = ("RedisShared", "SharedStateError")

_CLOCKS: Final = ("auto", "server", "client")
_SCHEMES: Final = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def _number(name: str, value: object, *, low: float = 0.0, allow_none: bool = False) -> float:
    if value is None and allow_none:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "a number" + (" or None" if allow_none else "")
        msg = f"{name!r} must be {kind} > {low:g}, got {value!r} of type {type(value).__name__}"
        raise TypeError(msg)
    if not (low < value < math.inf):
        msg = f"{name!r} must be a finite number > {low:g}, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _integer(name: str, value: object, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{name!r} must be an int >= 1, got {value!r} of type {type(value).__name__}"
        raise TypeError(msg)
    if value < 1:
        msg = f"{name!r} must be an int >= 1, got {value!r}"
        raise ValueError(msg)
    return value


def _check_url(url: object, cluster: object) -> tuple[str, bool]:
    """*url*, checked, and whether it names a Redis Cluster (its scheme, or *cluster*)."""
    if not isinstance(url, str):
        msg = f"'url' must be a str, got {url!r} of type {type(url).__name__}"
        raise TypeError(msg)
    if not isinstance(cluster, bool):
        msg = f"'cluster' must be a bool, got {cluster!r} of type {type(cluster).__name__}"
        raise TypeError(msg)
    parts = urlsplit(url)
    plain, suffixed = plain_url(url)
    cluster = cluster or suffixed
    problem = None
    if parts.scheme not in _SCHEMES:
        problem = (
            "the scheme must be redis://, rediss:// or unix:// (redis+cluster:// or"
            " rediss+cluster:// for a Redis Cluster)"
        )
    elif cluster and parts.scheme == "unix":
        problem = (
            "a Redis Cluster is reached over TCP: redis+cluster://host:port or"
            " rediss+cluster://host:port"
        )
    elif parts.scheme == "unix" and not parts.path:
        problem = "a unix:// URL needs the socket's path (unix:///run/redis.sock)"
    elif parts.scheme != "unix" and not parts.hostname:
        problem = "the URL needs a host (redis://localhost:6379/0)"
    else:
        try:
            parts.port  # noqa: B018  (raises ValueError for a bad port)
            coredis.Redis.from_url(plain)
        except (ValueError, TypeError) as exc:
            problem = str(exc) or type(exc).__name__
    if problem is not None:
        msg = f"'url' is not a Redis URL: {problem}; got {_redact(url)!r}"
        raise ValueError(msg)
    return url, cluster


@final
class RedisShared:
    """
    Rate limits, pauses and breaker verdicts shared by the replicas of a service through
    Redis: ``Supervisor(shared=RedisShared("redis://redis:6379/0", "my-service"))``.

    Shared: each rate limit (one GCRA in Redis; each replica leases a few turns at a time and
    admits its calls locally, so a call never waits for Redis), the pause a 429's Retry-After
    asks for, the decision to open (from the failure ratio of all live replicas together), and
    operator isolate/reset with ``scope="cluster"``. Local: windows, bulkheads, timeouts,
    retries, fallbacks, half-open probing. ``supervisor.cluster_status()`` shows every live
    replica and the shared verdicts; ``supervisor.health()`` is ``degraded`` while Redis cannot
    be relied on, and says why.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
            ``unix:///path/to/redis.sock``; ``redis+cluster://host:port`` (or
            ``rediss+cluster://``) for a Redis Cluster, any one of its nodes. Checked now;
            reached only once the supervisor runs.
        namespace: what the replicas sharing state have in common (one service, one API key).
            Every key lives under ``ringfence:{namespace}:`` (a Redis Cluster hash tag: one
            slot). Printable, no braces or whitespace.
        sync_interval: seconds between two round trips to Redis (jittered by ±10 %). Other
            replicas learn of a pause or a shared open within about one interval.
        timeout: the deadline of every Redis operation, seconds; default
            ``max(sync_interval, 0.25)``. A tick past it counts as Redis being unreachable.
        clock: ``"auto"`` (Redis's ``TIME``; the replicas' own clocks when the server refuses
            it to scripts), ``"server"`` (``TIME`` or nothing: degraded when refused) or
            ``"client"`` (the replicas' clocks, which must then agree, e.g. through NTP).
        heartbeat_ttl: seconds a replica counts as live after its last tick; default
            ``3 * (sync_interval + timeout)``.
        open_ratio: aggregate failure ratio at or above which the replicas open together;
            default: the dependency breaker's ``failure_ratio`` (0.5 for a consecutive breaker).
        open_min_volume: calls the live replicas must have made together in the window first;
            default: the breaker's ``min_throughput`` (twice ``failure_threshold`` for a
            consecutive breaker).
        open_min_replicas: replicas that must have seen failures (when that many are live),
            so one replica with a broken network does not open everyone's breaker. Default 2.
        open_for: seconds a shared open lasts; default the breaker's first break duration.
        window: seconds of calls each replica reports; default the breaker's ``sampling``
            (30 s for a consecutive breaker).
        replica_id: this replica's name in ``cluster_status()``; default ``host:pid:random``.
        cluster: the URL names a node of a Redis Cluster (as a ``+cluster`` scheme does): the
            client learns the cluster's layout and follows its redirections. Every key of a
            namespace lives in one hash slot, so one node serves a replica's whole tick.
        max_clock_skew: seconds a replica's clock may be off the live replicas' median
            (measured against Redis's clock at every heartbeat). Beyond it a replica is
            reported (``cluster_status()["clock_skew"]``; degraded on the replicas' clocks),
            and on the replicas' clocks the scripts clamp its time to the median +- this, so
            one wrong clock cannot hold the others' limits back by more. Default 1.0.
        expected_replicas: how many replicas the service runs (None: not said). The basis of
            the local fallback: a replica without Redis (starting while it is unreachable, or
            cut off from it) admits ``rate / max(expected_replicas, last live count)``; and
            while fewer replicas are live in Redis, the live ones keep the missing ones'
            shares free (they may be admitting them locally), so the fleet admits at most
            the limit (and only ``live / expected_replicas`` of it while replicas are
            missing). Without it a replica that starts while Redis is unreachable admits the
            full rate, and one cut off admits its share on top of the others' full rate.

    A dependency registered without a breaker shares its limits and pauses, but no open
    verdict. A shared open is not a transition of the local breakers: it refuses calls (as
    ``BreakerOpen``, counted as ``rejected_by["shared_open"]``) until it expires, while each
    local breaker keeps its own state and probes.

    ``await shared.check()`` connects once and raises :class:`SharedStateError` saying what is
    wrong with this Redis (for a service's startup; the supervisor itself never waits for
    Redis). ``await shared.wait_tick()`` waits for the next round trip (tests, tools).

    Raises:
        TypeError, ValueError: an argument has the wrong type or value (the message names it).
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        sync_interval: float = 0.25,
        *,
        timeout: float | None = None,
        clock: str = "auto",
        heartbeat_ttl: float | None = None,
        open_ratio: float | None = None,
        open_min_volume: int | None = None,
        open_min_replicas: int = 2,
        open_for: float | None = None,
        window: float | None = None,
        replica_id: str | None = None,
        cluster: bool = False,
        max_clock_skew: float = 1.0,
        expected_replicas: int | None = None,
    ) -> None:
        self.url, self.cluster = _check_url(url, cluster)
        self.namespace = check_namespace(namespace)
        self.sync_interval = _number("sync_interval", sync_interval)
        given = _number("timeout", timeout, allow_none=True)
        self.timeout = max(self.sync_interval, 0.25) if math.isnan(given) else given
        if clock not in _CLOCKS:
            msg = f"'clock' must be 'auto', 'server' or 'client', got {clock!r}"
            raise ValueError(msg)
        self.clock = clock
        ttl = _number("heartbeat_ttl", heartbeat_ttl, allow_none=True)
        self.heartbeat_ttl = 3 * (self.sync_interval + self.timeout) if math.isnan(ttl) else ttl
        ratio = _number("open_ratio", open_ratio, allow_none=True)
        if ratio > 1:
            msg = f"'open_ratio' must be in (0, 1], got {open_ratio!r}"
            raise ValueError(msg)
        self._open_ratio = None if math.isnan(ratio) else ratio
        self._open_min_volume = _integer("open_min_volume", open_min_volume, allow_none=True)
        self._open_min_replicas = _integer("open_min_replicas", open_min_replicas) or 2
        duration = _number("open_for", open_for, allow_none=True)
        self._open_for = None if math.isnan(duration) else duration
        span = _number("window", window, allow_none=True)
        self._window = None if math.isnan(span) else span
        given_id: object = replica_id
        if given_id is not None and (
            not isinstance(given_id, str)
            or not given_id
            or any(c.isspace() or not c.isprintable() for c in given_id)
        ):
            msg = f"'replica_id' must be None or a non-empty str without whitespace, got {replica_id!r}"
            raise ValueError(msg)
        self.replica_id = replica_id or (
            f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(24):06x}"
        )
        self.max_clock_skew = _number("max_clock_skew", max_clock_skew)
        self.expected_replicas = _integer("expected_replicas", expected_replicas, allow_none=True)
        self._keys = Keys(self.namespace)
        self._sync = SyncActor(
            url=self.url,
            cluster=self.cluster,
            namespace=self.namespace,
            sync_interval=self.sync_interval,
            timeout=self.timeout,
            clock=self.clock,
            heartbeat_ttl=self.heartbeat_ttl,
            open_ratio=self._open_ratio,
            open_min_volume=self._open_min_volume,
            open_min_replicas=self._open_min_replicas,
            open_for=self._open_for,
            window=self._window,
            replica_id=self.replica_id,
            max_clock_skew=self.max_clock_skew,
            expected_replicas=self.expected_replicas,
        )

    def __repr__(self) -> str:
        return (
            f"RedisShared({_redact(self.url)!r}, {self.namespace!r},"
            f" sync_interval={self.sync_interval:g}{', cluster=True' if self.cluster else ''})"
        )

    # ==========================================================================================
    # What the supervisor asks (SharedState)

    def limiter(self, dependency: str, index: int, limit: RateLimit) -> LeasedLimiter:
        """The turn source of *dependency*'s rate limit number *index* (the actor's)."""
        key = (dependency, index)
        source = self._sync.sources.get(key)
        if source is not None and source.config == limit:
            return source  # an actor restarted: keep the lease
        try:
            now = anyio.current_time()  # the actor asks from the loop, as it starts
        except RuntimeError:  # pragma: no cover - no event loop: a blank start
            now = 0.0
        if source is not None:  # replaced (reconfigure): what the old one holds goes back
            self._sync.retire(dependency, index, source)
        source = LeasedLimiter(
            limit,
            interval=self.sync_interval,
            replicas=self._sync.split,
            now=now,
        )
        self._sync.sources[key] = source
        return source

    def degraded(self) -> str | None:
        """Why the shared state cannot be relied on now (``health()`` says degraded), or None."""
        return self._sync.degraded()

    def cluster_status(self) -> Mapping[str, Any]:
        """
        What the last tick learned, as plain JSON-ready data:

        - ``replica``, ``namespace``, ``connected``, ``degraded`` (the reason or ``None``),
          ``clock`` (``server``/``client``), ``synced_wall`` (``time.time()`` of the last
          answer), ``live_replicas``;
        - ``replicas``: every live replica's summary (its dependencies' states and counts,
          its limits' modes, its own ``degraded``), this one's as of the last tick, the others'
          as of ``replicas_wall`` (``time.time()``; None: not fetched yet). Each call asks the
          next tick to fetch them afresh: they are not part of every tick (a replica's traffic
          would grow with the fleet), so a monitor calling this every few seconds sees
          summaries at most one call old;
        - ``clock_skew``: this replica's clock minus the live replicas' median (``this``) and
          the largest distance of any live replica's from it (``fleet``), seconds, and the
          ``tolerance`` (``max_clock_skew``); ``this`` and ``fleet`` are None before the
          first answer;
        - ``dependencies``: per dependency, the aggregate window of the live replicas
          (``calls``, ``failures``, ``failure_ratio``, ``reporting``, ``failing``), the shared
          ``open`` (``remaining``, ``opened_by``, ``calls``, ``failures``, ``applied_after``:
          seconds from the verdict to this replica applying it), ``pause_remaining`` and the
          latest cluster-wide ``control`` command;
        - ``limits``: per dependency, each limit's ``mode`` here (``lease``, ``local`` or
          ``connecting``), units ``leased`` so far and ``available`` now;
        - ``warnings``: things worth a look that do not degrade anything.
        """
        self._sync.ask_detail()
        now = self._sync.now() if self._sync.running else 0.0
        dependencies: dict[str, Any] = {}
        for name, dep in self._sync.dependencies.items():
            entry = dict(dep.aggregate)
            if dep.open is not None and dep.open_until > now:
                opened_by, calls, failures = verdict_fields(dep.open)
                entry["open"] = {
                    "remaining": dep.open_until - now,
                    "opened_by": opened_by,
                    "calls": calls,
                    "failures": failures,
                    "applied_after": dep.open_delay,
                }
            else:
                entry["open"] = None
            entry["pause_remaining"] = max(0.0, dep.pause_until - now) or None
            dependencies[name] = entry
        limits: dict[str, list[dict[str, Any]]] = {}
        for (name, index), source in sorted(self._sync.sources.items()):
            config = source.config
            limits.setdefault(name, []).append(
                {
                    "index": index,
                    "rate": config.rate,
                    "per": config.per,
                    "burst": config.capacity,
                    "mode": source.mode,
                    "leased": source.leased,
                    "available": source.available(now) if self._sync.running else None,
                }
            )
        replicas = dict(self._sync.summaries)
        if self._sync.own_summary is not None:
            replicas[self.replica_id] = self._sync.own_summary
        return {
            "replica": self.replica_id,
            "namespace": self.namespace,
            "connected": self._sync.connected,
            "degraded": self.degraded(),
            "clock": self._sync.source_clock,
            "synced_wall": self._sync.synced_wall,
            "sync_interval": self.sync_interval,
            "live_replicas": self._sync.replicas if self._sync.connected else None,
            "replicas": replicas,
            "replicas_wall": self._sync.summaries_wall,
            "clock_skew": {
                "this": self._sync.skew,
                "fleet": self._sync.fleet_skew,
                "tolerance": self.max_clock_skew,
            },
            "dependencies": dependencies,
            "limits": limits,
            "warnings": sorted(self._sync.warnings.values()),
        }

    async def isolate(self, name: str, reason: str) -> None:
        """
        Isolate *name* on every replica (``supervisor.isolate(name, scope="cluster")`` calls
        this after isolating it here). Replicas that start later isolate it too, until a
        cluster-wide reset.

        Raises:
            SharedStateError: Redis could not be told; the local isolation stands.
        """
        await self._command(name, "isolate", reason)

    async def reset(self, name: str) -> None:
        """
        Reset *name* on every replica and lift a shared open verdict; the shared window starts
        afresh (``supervisor.reset(name, scope="cluster")`` calls this after the local reset).

        Raises:
            SharedStateError: Redis could not be told; the local reset stands.
        """
        await self._command(name, "reset", "manual")

    async def _command(self, name: str, op: str, reason: str) -> None:
        if not self._sync.running:
            msg = f"cannot {op} {name!r} cluster-wide: the shared state is not running"
            raise SharedStateError(msg)
        command = _Command(name, op, reason)
        self._sync.commands.append(command)
        self._sync.nudge()
        with anyio.move_on_after(2 * self.timeout + self.sync_interval):
            await command.done.wait()
        if command.done.is_set() and command.error is None:
            return
        if not command.sent:
            try:
                self._sync.commands.remove(command)
            except ValueError:  # pragma: no cover - taken by a tick just now
                pass
            told = "was not told"
        else:
            told = "may not have been told"
        why = _reason(command.error) if command.error is not None else "no answer in time"
        msg = (
            f"{op} of {name!r} on this replica stands, but Redis {told} ({why}): the other"
            " replicas may not follow"
        )
        raise SharedStateError(msg) from command.error

    async def check(self) -> None:
        """
        Connect once and make sure this Redis can hold the shared state. For a service's
        startup, before it enters the supervisor, where a clear error beats running degraded
        (the supervisor itself never waits for Redis: it starts degraded and says why).

        Raises:
            SharedStateError: Redis cannot be reached or did not answer in time, refused the
                credentials or the scripts, refuses ``TIME`` to scripts under
                ``clock="server"``, or the namespace holds another ringfence version's keys
                or another application's.
        """
        try:
            await self._check()
        except BaseExceptionGroup as group:
            if group.subgroup(anyio.get_cancelled_exc_class()) is not None:
                raise
            leaf = _leaf(group)
            if isinstance(leaf, SharedStateError):
                raise leaf from leaf.__cause__
            raise SharedStateError(self._unusable(leaf)) from leaf
        except SharedStateError:
            raise
        except Exception as exc:
            raise SharedStateError(self._unusable(exc)) from exc

    def _unusable(self, exc: BaseException, *, connecting: bool = False) -> str:
        """Why this Redis cannot be used (*connecting*: no answer from it yet)."""
        explained = explain(exc, _redact(self.url), connecting=connecting)
        if explained is not None:
            return explained
        if isinstance(exc, TimeoutError):
            return f"Redis at {_redact(self.url)} did not answer within {4 * self.timeout:g} s"
        return f"cannot use Redis at {_redact(self.url)}: {_reason(exc)}"

    async def _check(self) -> None:
        where = _redact(self.url)
        with anyio.fail_after(4 * self.timeout):
            async with self._sync.client() as client:
                try:
                    await client.ping()
                except (coredis.exceptions.RedisError, OSError) as exc:
                    raise SharedStateError(self._unusable(exc, connecting=True)) from exc
                for script in SCRIPTS.values():
                    await client.script_load(script.text)
                if self.clock == "server":
                    try:
                        await client.eval("return redis.call('TIME')", keys=[], args=[])
                    except coredis.exceptions.AuthorizationError as exc:  # EVAL itself
                        msg = (
                            f"Redis at {where} does not let this user run EVAL"
                            f" ({_reason(exc)}): its ACL needs +eval (see the README's ACL)"
                        )
                        raise SharedStateError(msg) from exc
                    except coredis.exceptions.ResponseError as exc:
                        msg = (
                            f"Redis at {where} refuses TIME to scripts ({_reason(exc)}):"
                            ' use RedisShared(clock="auto") or clock="client"'
                        )
                        raise SharedStateError(msg) from exc
                found = _text(await client.hget(self._keys.meta, "format"))
                if found is not None and found != FORMAT:
                    msg = (
                        f"namespace {self.namespace!r} at {where} holds ringfence key format"
                        f" {found}, and this version writes format {FORMAT}: use another"
                        " namespace, or delete its keys once no replica of the other"
                        " version runs"
                    )
                    raise SharedStateError(msg)
                foreign = await self._foreign_keys(client)
                if foreign:
                    msg = (
                        f"namespace {self.namespace!r} at {where} holds keys ringfence did"
                        f" not write: {', '.join(foreign[:5])}"
                        f"{' ...' if len(foreign) > 5 else ''}; use another namespace"
                    )
                    raise SharedStateError(msg)

    async def _foreign_keys(self, client: Client) -> list[str]:
        """Keys under the namespace's prefix that no ringfence key of this format could be."""
        prefix = self._keys.base + ":"
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        foreign = []
        async for raw in client.scan_iter(match=pattern, count=1000):
            key = _text(raw) or ""
            expected = _expected_type(key[len(prefix) :])
            kind = _text(await client.type(key))
            if expected is None or kind != expected:
                foreign.append(f"{key} ({kind})")
        return sorted(foreign)

    # ==========================================================================================
    # The sync actor

    async def run(
        self,
        supervisor: Replica,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """
        Sync with the other replicas until cancelled (the supervisor starts this when it
        enters and cancels it when it leaves). Returns control at once: nothing waits for
        Redis to answer, or even to be reachable.
        """
        await self._sync.run(supervisor, task_status=task_status)

    async def wait_tick(self) -> bool:
        """
        Wait for the sync actor's next round trip to end (at most about an interval plus the
        timeout); True when Redis answered. For tests and tools that need to know the
        replicas have been told, without sleeping.

        Raises:
            SharedStateError: the shared state is not running.
        """
        return await self._sync.wait_tick()
