"""
:class:`RedisShared`: a supervisor's state shared with the other replicas of its service.

Theory of operation
-------------------
One background task per supervisor, the *sync actor* (:meth:`RedisShared.run`), talks to Redis;
nothing else does. Every ``sync_interval`` (jittered by ±10 %, so replicas drift apart rather
than tick together) it sends **one pipelined round trip**:

* ``heartbeat.lua``: this replica is alive (a TTL) and its summary; back come the live
  replicas' summaries (``cluster_status()``) and their number (what local fallbacks split by);
* ``dependency.lua`` per dependency: this replica's calls and failures over the window; back
  comes the *aggregate* of the live replicas, and the verdicts: a shared open (decided in the
  script when the aggregate crosses the line), a pause (a 429 another replica saw), a
  cluster-wide isolate or reset;
* ``lease.lua`` per rate limit: unused turns go back, new ones come (``_lease.py``);
* ``pause.lua`` for each pause this replica was told since the last tick, ``control.lua`` for
  each operator command.

A local pause or a local breaker opening *nudges* the actor: it ticks at once instead of
waiting, so the other replicas learn of a 429 within one interval of it (their next tick).

Every Redis operation runs under a deadline (``timeout``). A tick that fails (connection lost,
deadline passed, a server that stops answering) discards the whole coredis client, so a
cancelled request can never leave a connection's replies out of step with its requests; the
next attempt builds a fresh one, after a backoff with full jitter capped at two intervals (so
the replicas re-converge within about three intervals of Redis coming back). The scripts carry
the tick's deadline too, on their own clock, and do nothing past it: a server stopped and
resumed (SIGSTOP, a long fork) still runs what it had read from a connection its client gave
up on, and a lease granted then would go to nobody. Meanwhile every replica keeps its local
protection: its breakers and bulkheads never depended on Redis, its rate limits admit at
``rate / replicas`` (the last count seen), and ``degraded()`` says why.

Clocks: the scripts run on Redis's ``TIME`` (one clock for every replica), so a replica's own
clock may jump without effect. Where scripts may not call ``TIME`` the replicas pass their own
time (``clock="auto"`` or ``"client"``), taken from the monotonic clock anchored to the wall
clock at start, so a later jump moves nothing; it is reported (degraded under
``clock="client"``, where the replicas must agree on the time).

Calls never wait for any of this: the actor only changes, between two awaits, state the
dependency actors read synchronously (lease segments, a pause, a forced-open gate).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, final
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
import coredis
import coredis.exceptions
import structlog

from policies import Breaker, BreakHistory, RateLimit
from supervisor import BreakerTransition, DependencyPaused, DependencyStatus, SupervisorError

from ._client import make_client
from ._keys import FORMAT, DependencyKeys, Keys, check_namespace
from ._lease import LeasedLimiter
from ._scripts import SCRIPTS, Script

if TYPE_CHECKING:
    from supervisor._runtime import Replica, ReplicaDependency

__all__ = ("RedisShared", "SharedStateError")

_CLOCKS: Final = ("auto", "server", "client")
_SCHEMES: Final = ("redis", "rediss", "unix")
# A dependency registered without a breaker gets one that never trips (supervisor._actor):
# no shared verdict either.
_NEVER: Final = sys.maxsize
# A wall clock that moves this far from the monotonic one has jumped (NTP slews far less).
_JUMP: Final = 1.0
# A script's deadline is the tick's, on the script's clock, plus this much (milliseconds): the
# offset between the clocks is measured over a round trip, so it is off by up to half of one.
_LATE_SLACK_MS: Final = 50.0
# Why a replica is degraded before Redis first answers (its limits are in "connecting" mode).
_CONNECTING: Final = "no answer from Redis yet; local protection only"

_structlog = structlog.get_logger("ringfence")
_stdlib = logging.getLogger("ringfence")


def _log(level: str, event: str, **fields: object) -> None:
    """A ringfence log line, through structlog when the application configured it."""
    if structlog.is_configured():
        getattr(_structlog, level)(event, **fields)
    else:
        text = " ".join(f"{key}={value!r}" for key, value in fields.items())
        _stdlib.log(getattr(logging, level.upper()), "%s %s", event, text)


class SharedStateError(SupervisorError):
    """
    The shared state cannot do what was asked: raised by :meth:`RedisShared.check` (Redis
    unreachable or unfit: scripts refused, ``TIME`` refused under ``clock="server"``, another
    key format or another application's keys in the namespace) and by a cluster-wide
    ``isolate``/``reset`` that could not reach Redis (the local part then stands).
    """


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


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        msg = f"'url' must be a str, got {url!r} of type {type(url).__name__}"
        raise TypeError(msg)
    parts = urlsplit(url)
    problem = None
    if parts.scheme not in _SCHEMES:
        problem = "the scheme must be redis://, rediss:// or unix://"
    elif parts.scheme == "unix" and not parts.path:
        problem = "a unix:// URL needs the socket's path (unix:///run/redis.sock)"
    elif parts.scheme != "unix" and not parts.hostname:
        problem = "the URL needs a host (redis://localhost:6379/0)"
    else:
        try:
            parts.port  # noqa: B018  (raises ValueError for a bad port)
            coredis.Redis.from_url(url)
        except (ValueError, TypeError) as exc:
            problem = str(exc) or type(exc).__name__
    if problem is not None:
        msg = f"'url' is not a Redis URL: {problem}; got {_redact(url)!r}"
        raise ValueError(msg)
    return url


def _redact(url: str) -> str:
    """*url* without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def _text(value: object) -> str | None:
    if value is None or value is False:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _leaf(exc: BaseException) -> BaseException:
    """
    The exception itself, or the first leaf of a group: coredis's connection pool runs a task
    group, and what its ``async with`` body raises comes out wrapped in an ExceptionGroup.
    """
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _reason(exc: BaseException) -> str:
    """The first leaf of an exception (group), as ``Type: message``."""
    exc = _leaf(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _expected_type(suffix: str) -> str | None:
    """The Redis type of a key of this format, from its name after the prefix; None: not ours."""
    parts = suffix.split(":")
    if parts in (["meta"], ["summaries"]):
        return "hash"
    if parts == ["replicas"]:
        return "zset"
    if len(parts) == 3 and parts[0] == "dep":
        kinds = {"health": "hash", "open": "string", "pause": "string", "control": "hash"}
        return kinds.get(parts[2], "hash" if parts[2] == "state" else None)
    if len(parts) == 3 and parts[0] == "limit" and parts[2].isdigit():
        return "hash"
    return None


@final
@attrs.define
class _Op:
    """One script call of a tick and what to do with its answer."""

    script: Script
    keys: list[str]
    args: list[str | int | float]
    done: Callable[[Any, float], None]
    failed: Callable[[BaseException], None]


@final
class _Command:
    """An operator's cluster-wide isolate or reset, waiting for the next tick."""

    __slots__ = ("done", "error", "name", "op", "reason", "sent")

    def __init__(self, name: str, op: str, reason: str) -> None:
        self.name = name
        self.op = op
        self.reason = reason
        self.sent = False
        self.done = anyio.Event()
        self.error: BaseException | None = None


@final
class _Dependency:
    """What the sync actor keeps about one dependency (only the sync actor touches it)."""

    __slots__ = (
        "aggregate",
        "control",
        "epoch",
        "keys",
        "last",
        "name",
        "open",
        "open_delay",
        "open_until",
        "pause",
        "pause_until",
        "ring",
        "window",
    )

    def __init__(self, name: str, keys: DependencyKeys) -> None:
        self.name = name
        self.keys = keys
        self.ring: deque[tuple[float, int, int]] = deque()  # (time, calls, failures) per tick
        self.last = (0, 0)  # lifetime (calls, failures) at the last tick
        self.epoch = -1  # the shared window's epoch the ring counts in; -1: not known yet
        self.window = (0, 0)
        self.aggregate: dict[str, Any] = {}
        self.open: str | None = None  # the shared open verdict applied here (its value)
        self.open_until = 0.0  # loop clock
        self.open_delay: float | None = None  # verdict -> applied here, seconds
        self.pause: str | None = None  # the latest pause applied from another replica
        self.pause_until = 0.0
        self.control: tuple[str | None, ...] | None = None  # the latest command seen


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
            ``unix:///path/to/redis.sock``. Checked now; reached only once the supervisor runs.
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
    ) -> None:
        self.url = _check_url(url)
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
        # Who told a pause: this replica id *and* this process (a nonce), so a replica restarted
        # under a fixed replica_id still keeps to the pause its previous life was told.
        self._pauser = f"{self.replica_id} {random.getrandbits(32):08x}"
        self._keys = Keys(self.namespace)
        self._rng = random.Random()
        # The replicas' own time (clock="client"), from the monotonic clock anchored to the
        # wall clock once: a replica's wall clock jumping later moves nothing.
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

        self._supervisor: Replica | None = None
        self._now: Callable[[], float] = time.monotonic  # the loop clock, once running
        self._running = False
        self._sources: dict[tuple[str, int], LeasedLimiter] = {}
        # Limits replaced or removed by a reconfigure: one last lease gives back what they hold.
        self._retiring: list[tuple[str, int, LeasedLimiter]] = []
        self._dependencies: dict[str, _Dependency] = {}
        self._commands: deque[_Command] = deque()
        self._pending_pauses: dict[str, float] = {}  # dependency -> until (loop clock)
        self._pause_seq = 0
        self._wake: anyio.Event | None = None
        self._nudged = False
        self._ticked: anyio.Event | None = None
        self._use_eval = False
        # What the last tick learned
        self._connected = False
        self._problems: dict[str, str] = {"connecting": _CONNECTING}  # scope -> why
        self._replicas = 1  # live replicas, as last counted (1 before any answer)
        self._summaries: dict[str, Any] = {}
        self._source_clock: str | None = None
        # The scripts' clock minus this replica's (ms), measured at the last answer.
        self._offset: float | None = None
        self._synced_wall: float | None = None
        self._warnings: dict[str, str] = {}
        self._failures = 0
        self._actions: list[tuple[str, str, str]] = []  # other replicas' commands to apply here
        # Units the tick in flight gives back: given back again if the tick fails (the scripts
        # of a tick that failed did nothing: see the deadline in _op).
        self._unsent: list[tuple[LeasedLimiter, float]] = []
        # Pauses the tick in flight tells Redis: told again if the tick fails, or a 429 seen
        # while Redis was stopped would never reach the other replicas.
        self._pauses_in_flight: dict[str, float] = {}

    def __repr__(self) -> str:
        return (
            f"RedisShared({_redact(self.url)!r}, {self.namespace!r},"
            f" sync_interval={self.sync_interval:g})"
        )

    # ==========================================================================================
    # What the supervisor asks (SharedState)

    def limiter(self, dependency: str, index: int, limit: RateLimit) -> LeasedLimiter:
        """The turn source of *dependency*'s rate limit number *index* (the actor's)."""
        key = (dependency, index)
        source = self._sources.get(key)
        if source is not None and source.config == limit:
            return source  # an actor restarted: keep the lease
        try:
            now = anyio.current_time()  # the actor asks from the loop, as it starts
        except RuntimeError:  # pragma: no cover - no event loop: a blank start
            now = 0.0
        if source is not None:  # replaced (reconfigure): what the old one holds goes back
            self._retire(dependency, index, source)
        source = LeasedLimiter(limit, interval=self.sync_interval, replicas=self._replicas, now=now)
        self._sources[key] = source
        return source

    def _retire(self, dependency: str, index: int, source: LeasedLimiter) -> None:
        """*source* serves no actor any more: its next lease is its last (see ``_tick``)."""
        if self._sources.get((dependency, index)) is source:
            del self._sources[(dependency, index)]
        source.retire()
        self._retiring.append((dependency, index, source))

    def degraded(self) -> str | None:
        """Why the shared state cannot be relied on now (``health()`` says degraded), or None."""
        if not self._problems:
            return None
        return "shared state: " + "; ".join(self._problems.values())

    def cluster_status(self) -> Mapping[str, Any]:
        """
        What the last tick learned, as plain JSON-ready data:

        - ``replica``, ``namespace``, ``connected``, ``degraded`` (the reason or ``None``),
          ``clock`` (``server``/``client``), ``synced_wall`` (``time.time()`` of the last
          answer), ``live_replicas``;
        - ``replicas``: every live replica's summary (its dependencies' states and counts,
          its limits' modes, its own ``degraded``), this one included;
        - ``dependencies``: per dependency, the aggregate window of the live replicas
          (``calls``, ``failures``, ``failure_ratio``, ``reporting``, ``failing``), the shared
          ``open`` (``remaining``, ``opened_by``, ``calls``, ``failures``, ``applied_after``:
          seconds from the verdict to this replica applying it), ``pause_remaining`` and the
          latest cluster-wide ``control`` command;
        - ``limits``: per dependency, each limit's ``mode`` here (``lease``, ``local`` or
          ``connecting``), units ``leased`` so far and ``available`` now;
        - ``warnings``: things worth a look that do not degrade anything.
        """
        now = self._now() if self._running else 0.0
        dependencies: dict[str, Any] = {}
        for name, dep in self._dependencies.items():
            entry = dict(dep.aggregate)
            if dep.open is not None and dep.open_until > now:
                fields = dep.open.split(" ")
                entry["open"] = {
                    "remaining": dep.open_until - now,
                    "opened_by": fields[2] if len(fields) > 2 else None,
                    "calls": int(fields[3]) if len(fields) > 3 else None,
                    "failures": int(fields[4]) if len(fields) > 4 else None,
                    "applied_after": dep.open_delay,
                }
            else:
                entry["open"] = None
            entry["pause_remaining"] = max(0.0, dep.pause_until - now) or None
            dependencies[name] = entry
        limits: dict[str, list[dict[str, Any]]] = {}
        for (name, index), source in sorted(self._sources.items()):
            config = source.config
            limits.setdefault(name, []).append(
                {
                    "index": index,
                    "rate": config.rate,
                    "per": config.per,
                    "burst": config.capacity,
                    "mode": source.mode,
                    "leased": source.leased,
                    "available": source.available(now) if self._running else None,
                }
            )
        return {
            "replica": self.replica_id,
            "namespace": self.namespace,
            "connected": self._connected,
            "degraded": self.degraded(),
            "clock": self._source_clock,
            "synced_wall": self._synced_wall,
            "sync_interval": self.sync_interval,
            "live_replicas": self._replicas if self._connected else None,
            "replicas": dict(self._summaries),
            "dependencies": dependencies,
            "limits": limits,
            "warnings": sorted(self._warnings.values()),
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
        if not self._running:
            msg = f"cannot {op} {name!r} cluster-wide: the shared state is not running"
            raise SharedStateError(msg)
        command = _Command(name, op, reason)
        self._commands.append(command)
        self._nudge()
        with anyio.move_on_after(2 * self.timeout + self.sync_interval):
            await command.done.wait()
        if command.done.is_set() and command.error is None:
            return
        if not command.sent:
            try:
                self._commands.remove(command)
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

    def _unusable(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"Redis at {_redact(self.url)} did not answer within {4 * self.timeout:g} s"
        return f"cannot use Redis at {_redact(self.url)}: {_reason(exc)}"

    async def _check(self) -> None:
        where = _redact(self.url)
        with anyio.fail_after(4 * self.timeout):
            async with self._client() as client:
                await client.ping()
                for script in SCRIPTS.values():
                    await client.script_load(script.text)
                if self.clock == "server":
                    try:
                        await client.eval("return redis.call('TIME')", keys=[], args=[])
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

    async def _foreign_keys(self, client: coredis.Redis[bytes]) -> list[str]:
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
        if self._supervisor is not None and self._supervisor is not supervisor:
            msg = "a RedisShared serves one supervisor; give each supervisor its own"
            raise RuntimeError(msg)
        self._supervisor = supervisor
        self._now = anyio.current_time
        self._running = True
        if not self._connected:
            self._problems = {"connecting": _CONNECTING}
        task_status.started()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._sync_forever, supervisor)
                # The events end when the supervisor leaves: so does the sync.
                await self._watch(supervisor)
                tasks.cancel_scope.cancel()
        finally:
            self._running = False
            self._connected = False
            self._signal_tick()  # nobody waits for a tick that will not come
            for command in self._commands:
                command.error = SharedStateError("the supervisor shut down")
                command.done.set()
            self._commands.clear()

    async def wait_tick(self) -> bool:
        """
        Wait for the sync actor's next round trip to end (at most about an interval plus the
        timeout); True when Redis answered. For tests and tools that need to know the
        replicas have been told, without sleeping.

        Raises:
            SharedStateError: the shared state is not running.
        """
        if not self._running:
            msg = "the shared state is not running: enter the supervisor first"
            raise SharedStateError(msg)
        if self._ticked is None:
            self._ticked = anyio.Event()
        await self._ticked.wait()
        return self._connected

    def _nudge(self) -> None:
        """Tick now (a local pause or opening, an operator command): others learn sooner."""
        self._nudged = True
        if self._wake is not None:
            self._wake.set()

    async def _sleep(self, seconds: float, floor: float = 0.0) -> None:
        """Sleep *seconds*, or less when nudged, but at least *floor* (nudges never storm)."""
        start = self._now()
        if not self._nudged:
            self._wake = anyio.Event()
            with anyio.move_on_after(seconds):
                await self._wake.wait()
            self._wake = None
        self._nudged = False
        rest = min(floor, seconds) - (self._now() - start)
        if rest > 0:
            await anyio.sleep(rest)
        else:
            await anyio.lowlevel.checkpoint()

    async def _watch(self, supervisor: Replica) -> None:
        """
        Learn of this replica's own pauses and openings as they happen; return when the
        supervisor leaves (its events end).
        """
        try:
            async with supervisor.events(kinds=[DependencyPaused, BreakerTransition]) as stream:
                async for event in stream:
                    if isinstance(event, DependencyPaused):
                        if event.source == "local":
                            until = self._pending_pauses.get(event.dependency, -math.inf)
                            self._pending_pauses[event.dependency] = max(until, event.until)
                            self._nudge()
                    elif isinstance(event, BreakerTransition) and event.target == "open":
                        self._nudge()  # its failures count sooner in the aggregate
        except Exception as exc:  # pragma: no cover - our bug: ticks still carry the state
            _log("error", "ringfence.shared_watch_failed", error=_reason(exc))
            await supervisor.wait_closing()

    async def _sync_forever(self, supervisor: Replica) -> None:
        last = self._now()
        while True:
            try:
                client = self._client()
                async with client:
                    while True:
                        started = self._now()
                        await self._tick(client, supervisor, started - last)
                        last = started
                        self._failures = 0
                        await self._after_tick(supervisor)
                        spent = self._now() - started
                        jitter = self._rng.uniform(0.9, 1.1)
                        await self._sleep(
                            max(0.0, self.sync_interval * jitter - spent),
                            floor=self.sync_interval / 10 - spent,
                        )
            except Exception as exc:  # connection lost, deadline passed, or our own bug
                self._lost(exc)
            # Backoff with full jitter, capped at two intervals: re-converge fast once it is back.
            self._failures += 1
            cap = 2 * self.sync_interval
            delay = min(cap, self.sync_interval * 2 ** (self._failures - 1))
            await self._sleep(self._rng.uniform(delay / 2, delay))

    def _client(self) -> coredis.Redis[bytes]:
        return make_client(
            self.url, timeout=self.timeout, client_name=f"ringfence:{self.replica_id}"
        )

    def _lost(self, exc: BaseException) -> None:
        """A tick failed: local protection only, until Redis answers again."""
        was_connected = self._connected
        self._connected = False
        self._use_eval = False
        exc = _leaf(exc)
        if isinstance(exc, TimeoutError):
            why = f"Redis at {_redact(self.url)} did not answer within {self.timeout:g} s"
        elif isinstance(exc, coredis.exceptions.ConnectionError | OSError):
            why = f"cannot reach Redis at {_redact(self.url)} ({_reason(exc)})"
        elif isinstance(exc, coredis.exceptions.ResponseError):
            why = f"Redis at {_redact(self.url)} refused ringfence ({_reason(exc)})"
        else:
            why = f"the sync with Redis failed ({_reason(exc)})"
        replicas = self._replicas
        self._problems = {
            "connection": f"{why}; local protection only, rate limits split by {replicas}"
            f" replica{'s' if replicas != 1 else ''}"
        }
        now = self._now()
        unsent, self._unsent = self._unsent, []
        for source, given in unsent:
            source.unsent(given)
        in_flight, self._pauses_in_flight = self._pauses_in_flight, {}
        for name, until in in_flight.items():
            self._pending_pauses[name] = max(self._pending_pauses.get(name, -math.inf), until)
        for source in self._sources.values():
            source.fall_back(now, replicas)
        for command in list(self._commands):
            if command.sent:
                self._commands.remove(command)
                command.error = exc
                command.done.set()
        if was_connected or self._failures == 0:
            _log("warning", "ringfence.shared_degraded", reason=self._problems["connection"])
        self._signal_tick()

    def _signal_tick(self) -> None:
        ticked, self._ticked = self._ticked, None
        if ticked is not None:
            ticked.set()

    # -- one tick -------------------------------------------------------------------------------

    def _client_ms(self) -> float:
        return (self._wall0 + (time.monotonic() - self._mono0)) * 1000.0

    def _op(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[str | int | float],
        done: Callable[[Any, float], None],
        failed: Callable[[BaseException], None],
    ) -> _Op:
        client_ms = self._client_ms()
        deadline = 0.0  # unknown before the first answer (its clock's offset is unknown)
        if self._offset is not None:
            deadline = client_ms + self._offset + 1000 * self.timeout + _LATE_SLACK_MS
        head: list[str | int | float] = [self.clock, repr(client_ms), FORMAT, repr(deadline)]
        return _Op(SCRIPTS[name], [self._keys.meta, *keys], head + list(args), done, failed)

    async def _tick(
        self, client: coredis.Redis[bytes], supervisor: Replica, elapsed: float
    ) -> None:
        now = self._now()
        problems: dict[str, str] = {}
        actors = supervisor.replica_dependencies()
        statuses = {name: actor.status() for name, actor in actors.items()}
        ops = [self._heartbeat_op(statuses, problems)]
        for name, actor in actors.items():
            ops.append(self._dependency_op(name, actor, statuses[name], now, problems))
        for (name, index), source in list(self._sources.items()):
            owner = actors.get(name)
            if owner is not None and not any(s is source for s in owner.limit_sources()):
                self._retire(name, index, source)  # its actor's limits no longer include it
        # The retired limits' last leases first: a new limit at the same index then leases
        # after what the old one gave back, and its settings are the ones stored.
        for name, index, source in self._retiring:
            ops.append(self._retiring_op(name, index, source, now, problems))
        for (name, index), source in self._sources.items():
            if name in actors:
                ops.append(self._lease_op(name, index, source, now, elapsed, problems))
        ops.extend(self._pause_ops(now))
        commands = [c for c in self._commands if not c.sent]
        for command in commands:
            command.sent = True
            ops.append(self._control_op(command))
        self._check_clock(problems)
        with anyio.fail_after(self.timeout):
            results = await self._execute(client, ops)
        received = self._now()
        self._unsent = []
        self._pauses_in_flight = {}
        self._connected = True
        self._synced_wall = time.time()
        for op, result in zip(ops, results, strict=True):
            if isinstance(result, BaseException):
                op.failed(result)
            else:
                op.done(result, received)
        if "connection" in self._problems:
            _log("info", "ringfence.shared_restored", replicas=self._replicas)
        self._problems = problems
        self._signal_tick()

    async def _execute(self, client: coredis.Redis[bytes], ops: list[_Op]) -> list[object]:
        """Run *ops* in one pipeline; on NOSCRIPT load the scripts and run the failed again."""
        results = await self._pipeline(client, ops)
        missing = [
            i for i, r in enumerate(results) if isinstance(r, coredis.exceptions.NoScriptError)
        ]
        if missing:
            async with client.pipeline(transaction=False, raise_on_error=True) as pipe:
                for script in SCRIPTS.values():
                    pipe.script_load(script.text)
            again = await self._pipeline(client, [ops[i] for i in missing])
            if any(isinstance(r, coredis.exceptions.NoScriptError) for r in again):
                # A server that forgets scripts at once (a proxy, a SCRIPT FLUSH loop): send
                # their text for the rest of this connection.
                self._use_eval = True
                again = await self._pipeline(client, [ops[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, client: coredis.Redis[bytes], ops: list[_Op]) -> list[object]:
        async with client.pipeline(transaction=False, raise_on_error=False) as pipe:
            for op in ops:
                if self._use_eval:
                    pipe.eval(op.script.text, keys=op.keys, args=op.args)
                else:
                    pipe.evalsha(op.script.sha, keys=op.keys, args=op.args)
        return list(pipe.results or ())

    def _check_clock(self, problems: dict[str, str]) -> None:
        """A replica whose wall clock jumped: harmless on Redis's clock, worth saying on its own."""
        jump = time.time() - (self._wall0 + (time.monotonic() - self._mono0))
        if abs(jump) < _JUMP:
            self._warnings.pop("clock", None)
            return
        text = (
            f"this replica's wall clock moved {jump:+.1f} s against its monotonic clock since it"
            " started; the shared state keeps to the clock it started with"
        )
        if self._source_clock == "client":
            problems["clock"] = text + " (clock='client': the replicas must agree on the time)"
        else:
            self._warnings["clock"] = text

    def _problem(self, problems: dict[str, str], scope: str, what: str, exc: BaseException) -> None:
        text = _reason(exc)
        if "RINGFENCE_FORMAT" in text:
            problems["format"] = (
                f"namespace {self.namespace!r} is used by another ringfence version"
                f" ({text.split('RINGFENCE_FORMAT ', 1)[1]}); use another namespace"
            )
        elif "RINGFENCE_LATE" in text:
            problems["late"] = (
                "Redis ran ringfence's scripts after their deadline (a stalled or overloaded"
                " server); they did nothing"
            )
        elif "RINGFENCE_NOTIME" in text:
            problems["clock"] = text.split("RINGFENCE_NOTIME ", 1)[1]
        elif "WRONGTYPE" in text or isinstance(_leaf(exc), coredis.exceptions.WrongTypeError):
            problems[scope] = (
                f"{what}: a key under {self._keys.base}: holds another application's data"
                f" ({text}); use another namespace or delete those keys"
            )
        else:
            problems[scope] = f"{what}: Redis refused ringfence's script ({text})"

    # -- heartbeat ------------------------------------------------------------------------------

    def _heartbeat_op(
        self, statuses: Mapping[str, DependencyStatus], problems: dict[str, str]
    ) -> _Op:
        summary = json.dumps(self._summary(statuses), separators=(",", ":"))
        keys = [self._keys.replicas, self._keys.summaries]
        ttl_ms = round(self.heartbeat_ttl * 1000)

        def done(reply: Any, received: float) -> None:
            self._source_clock = _text(reply[0])
            self._offset = float(reply[1]) - self._client_ms()
            self._replicas = max(1, int(reply[2]))
            summaries: dict[str, Any] = {}
            for i in range(3, len(reply) - 1, 2):
                try:
                    summaries[_text(reply[i]) or "?"] = json.loads(reply[i + 1])
                except ValueError:
                    continue
            self._summaries = summaries
            for source in self._sources.values():
                source.set_replicas(self._replicas)

        def failed(exc: BaseException) -> None:
            self._problem(problems, "heartbeat", "heartbeat", exc)

        return self._op("heartbeat", keys, [self.replica_id, ttl_ms, summary], done, failed)

    def _summary(self, statuses: Mapping[str, DependencyStatus]) -> dict[str, Any]:
        dependencies: dict[str, Any] = {}
        now = self._now()
        for name, status in statuses.items():
            dep = self._dependencies.get(name)
            limits = [
                {"index": index, "mode": source.mode, "leased": round(source.leased, 3)}
                for (dependency, index), source in sorted(self._sources.items())
                if dependency == name
            ]
            dependencies[name] = {
                "state": str(status.state),
                "calls": status.calls,
                "failures": status.failures,
                "rejected": status.rejected,
                "in_flight": status.in_flight,
                "queued": status.queued,
                "paused": status.pause_remaining > 0,
                "shared_open": status.shared_open_until is not None
                and status.shared_open_until > now,
                "window": list(dep.window) if dep is not None else [0, 0],
                "limits": limits,
            }
        return {
            "id": self.replica_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "wall": time.time(),
            "degraded": self.degraded(),
            "dependencies": dependencies,
        }

    # -- one dependency -------------------------------------------------------------------------

    def _verdict_settings(self, actor: ReplicaDependency) -> tuple[float, int, float, float]:
        """(ratio (0: no shared verdict), min volume, open for (s), window (s))."""
        breaker: Breaker | None = actor.breaker
        window = self._window
        if breaker is None or (
            breaker.failure_ratio is None and (breaker.failure_threshold or 0) >= _NEVER
        ):
            return 0.0, 1, 1.0, window or 30.0
        if breaker.failure_ratio is not None:
            ratio = breaker.failure_ratio
            volume = breaker.min_throughput or 10
            window = window or breaker.sampling or 30.0
        else:
            ratio = 0.5
            volume = 2 * (breaker.failure_threshold or 5)
            window = window or 30.0
        if self._open_ratio is not None:
            ratio = self._open_ratio
        if self._open_min_volume is not None:
            volume = self._open_min_volume
        duration = self._open_for
        if duration is None:
            try:
                duration = float(breaker.break_duration(BreakHistory(openings=1)))
            except Exception:  # a user's callable that needs more than openings: be plain
                duration = 30.0
        return ratio, volume, max(duration, 0.001), window

    def _dependency_op(
        self,
        name: str,
        actor: Any,
        status: DependencyStatus,
        now: float,
        problems: dict[str, str],
    ) -> _Op:
        dep = self._dependencies.get(name)
        if dep is None:
            dep = self._dependencies[name] = _Dependency(name, self._keys.dependency(name))
        ratio, volume, duration, window = self._verdict_settings(actor)
        totals = (status.calls, status.failures)
        calls = max(0, totals[0] - dep.last[0])
        failures = max(0, totals[1] - dep.last[1])
        if calls or failures:
            dep.ring.append((now, calls, failures))
        dep.last = totals
        while dep.ring and dep.ring[0][0] <= now - window:
            dep.ring.popleft()
        dep.window = (sum(c for _, c, _ in dep.ring), sum(f for _, _, f in dep.ring))
        keys = dep.keys
        args: list[str | int | float] = [
            self.replica_id,
            dep.window[0],
            dep.window[1],
            dep.epoch,
            repr(ratio),
            volume,
            self._open_min_replicas,
            round(duration * 1000),
            round(window * 1000),
        ]

        def done(reply: Any, received: float) -> None:
            self._apply_dependency(dep, actor, reply, received)

        def failed(exc: BaseException) -> None:
            self._problem(problems, f"dependency:{name}", f"dependency {name!r}", exc)

        return self._op(
            "dependency",
            [self._keys.replicas, keys.health, keys.open, keys.pause, keys.control, keys.state],
            args,
            done,
            failed,
        )

    def _apply_dependency(self, dep: _Dependency, actor: Any, reply: Any, now: float) -> None:
        epoch = int(reply[2])
        if epoch != dep.epoch:
            if dep.epoch >= 0:
                # A new shared window (a shared open or a cluster reset): count from now on.
                dep.ring.clear()
                dep.window = (0, 0)
            dep.epoch = epoch
        calls, failures = int(reply[3]), int(reply[4])
        dep.aggregate = {
            "calls": calls,
            "failures": failures,
            "failure_ratio": failures / calls if calls else 0.0,
            "reporting": int(reply[5]),
            "failing": int(reply[6]),
            "epoch": epoch,
            "control": None,
        }
        # The shared open verdict.
        verdict, verdict_ttl = _text(reply[7]), int(reply[8])
        if verdict is not None and verdict_ttl > 0:
            if verdict != dep.open:
                actor.shared_open(verdict_ttl / 1000)
                dep.open = verdict
                dep.open_until = now + verdict_ttl / 1000
                dep.open_delay = None
                if _text(reply[0]) == "server":
                    try:
                        dep.open_delay = time.time() - float(verdict.split(" ")[1]) / 1000
                    except (IndexError, ValueError):
                        pass
        elif dep.open is not None:
            if dep.open_until > now + 0.001:
                actor.shared_open(None)  # lifted early: a cluster-wide reset
            dep.open = None
        # A pause another replica was told.
        pause, pause_ttl = _text(reply[9]), int(reply[10])
        if pause is not None and pause_ttl > 0:
            origin = pause.rsplit(" ", 1)[0]
            if origin != self._pauser and pause != dep.pause:
                actor.shared_pause(pause_ttl / 1000)
                dep.pause = pause
            dep.pause_until = now + pause_ttl / 1000
        # The latest cluster-wide command.
        command = tuple(_text(value) for value in reply[11:15])
        if command[0] is None and dep.control is None:
            # Read, and no command yet: the first one sent is news (not a first reading).
            dep.control = ()
        if command[0] is not None:
            dep.aggregate["control"] = {
                "seq": int(command[0]),
                "op": command[1],
                "reason": command[2],
                "origin": command[3],
            }
            first = dep.control is None
            if command != dep.control:
                dep.control = command
                op, sender = command[1], command[3]
                # A first reading (this replica just started) applies a standing isolation,
                # whoever sent it (this replica's previous life too, under a fixed replica_id),
                # and no older reset; later, every new command but this replica's own.
                if (op == "isolate") if first else (sender != self.replica_id):
                    self._actions.append((dep.name, op or "", command[2] or ""))

    async def _after_tick(self, supervisor: Replica) -> None:
        """Apply other replicas' commands here (acknowledged by the actors; no Redis)."""
        actions, self._actions = self._actions, []
        for name, op, reason in actions:
            try:
                if op == "isolate":
                    await supervisor.isolate(name, reason=f"cluster: {reason}")
                elif op == "reset":
                    supervisor.replica_dependencies()[name].shared_open(None)
                    await supervisor.reset(name, reason="cluster")
            except Exception as exc:  # already isolated, or shutting down: nothing to undo
                _log(
                    "info",
                    "ringfence.shared_command_skipped",
                    dependency=name,
                    op=op,
                    error=type(exc).__name__,
                )

    # -- rate limits, pauses, commands ----------------------------------------------------------

    def _lease_op(
        self,
        name: str,
        index: int,
        source: LeasedLimiter,
        now: float,
        elapsed: float,
        problems: dict[str, str],
    ) -> _Op:
        config = source.config
        given, want, hungry, recovering = source.cut(now)
        self._unsent.append((source, given))
        interval_ms = config.per / config.rate * 1000
        settings = f"{config.rate!r}/{config.per!r}/{config.capacity!r}"
        args: list[str | int | float] = [
            repr(interval_ms),
            repr(float(config.capacity)),
            repr(given),
            repr(want),
            round(self.sync_interval * 1000),
            settings,
            self.replica_id,
            1 if hungry else 0,
            # after an outage, what accrued while away is the bucket's, not this replica's
            repr(min(max(elapsed, self.sync_interval / 4), 2 * self.sync_interval) * 1000),
            repr(hungry),
            self._replicas,
            1 if recovering else 0,
        ]

        def done(reply: Any, received: float) -> None:
            granted = float(reply[2])
            base = received + float(reply[3]) / 1000
            # Another limit's settings stored, at this limiter's first answer (or its first
            # since a fallback), are those of a limit reconfigured away (its schedule was
            # capped: lua/lease.lua); replicas that disagree differ at every tick.
            disagree = int(reply[4]) and source.mode == "lease"
            source.install(received, granted, base)
            if disagree:
                self._warnings[f"limit:{name}:{index}"] = (
                    f"replicas disagree on rate_limit[{index}] of {name!r} (this one:"
                    f" {config.rate:g} per {config.per:g} s, burst {config.capacity:g})"
                )
            else:
                self._warnings.pop(f"limit:{name}:{index}", None)

        def failed(exc: BaseException) -> None:
            source.fall_back(self._now(), self._replicas)
            self._problem(
                problems, f"limit:{name}:{index}", f"rate_limit[{index}] of {name!r}", exc
            )

        keys = [self._keys.limit(name, index), self._keys.replicas]
        return self._op("lease", keys, args, done, failed)

    def _retiring_op(
        self, name: str, index: int, source: LeasedLimiter, now: float, problems: dict[str, str]
    ) -> _Op:
        """
        A retired limit's last lease: it gives back what it holds and asks for nothing. Sent
        again while its tick fails (``_lost`` gives its units back to it); then forgotten.
        """
        op = self._lease_op(name, index, source, now, 0.0, problems)

        def done(reply: Any, received: float) -> None:
            self._forget(source)
            self._warnings.pop(f"limit:{name}:{index}", None)

        def failed(exc: BaseException) -> None:
            # Refused (another application's key, another format): said for this tick; the
            # units stay charged, which never lets the replicas admit more than the limit.
            self._forget(source)
            self._problem(
                problems, f"limit:{name}:{index}", f"rate_limit[{index}] of {name!r}", exc
            )

        op.done, op.failed = done, failed
        return op

    def _forget(self, source: LeasedLimiter) -> None:
        self._retiring = [entry for entry in self._retiring if entry[2] is not source]

    def _pause_ops(self, now: float) -> list[_Op]:
        ops = []
        pending, self._pending_pauses = self._pending_pauses, {}
        for name, until in pending.items():
            ms = math.ceil((until - now) * 1000)
            if ms < 1:
                continue
            self._pause_seq += 1
            self._pauses_in_flight[name] = until
            keys = self._keys.dependency(name)

            def failed(exc: BaseException, name: str = name, until: float = until) -> None:
                # Try again next tick (with a later pause told meanwhile, the longer one).
                later = self._pending_pauses.get(name, -math.inf)
                self._pending_pauses[name] = max(later, until)

            ops.append(
                self._op(
                    "pause",
                    [keys.pause],
                    [self._pauser, self._pause_seq, ms],
                    lambda reply, received: None,
                    failed,
                )
            )
        return ops

    def _control_op(self, command: _Command) -> _Op:
        keys = self._keys.dependency(command.name)

        def done(reply: Any, received: float) -> None:
            dep = self._dependencies.get(command.name)
            if dep is not None:
                # Our own command: applied here already, not again at the next tick.
                dep.control = (str(reply), command.op, command.reason, self.replica_id)
                if command.op == "reset":
                    if dep.open is not None:
                        supervisor = self._supervisor
                        dependency = (
                            supervisor.replica_dependencies().get(command.name)
                            if supervisor is not None
                            else None
                        )
                        if dependency is not None:
                            dependency.shared_open(None)
                    dep.open = None
            self._finish(command, None)

        def failed(exc: BaseException) -> None:
            self._finish(command, exc)

        return self._op(
            "control",
            [keys.control, keys.open, keys.state, keys.health],
            [self.replica_id, command.op, command.reason],
            done,
            failed,
        )

    def _finish(self, command: _Command, error: BaseException | None) -> None:
        try:
            self._commands.remove(command)
        except ValueError:
            pass
        command.error = error
        command.done.set()
