"""
The sync actor of :class:`RedisShared` (``_shared.py``): a supervisor's state shared with the
other replicas of its service.

Theory of operation
-------------------
One background task per supervisor, the *sync actor* (:meth:`RedisShared.run`), talks to Redis;
nothing else does. Every ``sync_interval`` (jittered by ±10 %, so replicas drift apart rather
than tick together) it sends **one pipelined round trip**:

* ``heartbeat.lua``: this replica is alive (a TTL), its summary and its clock; back come the
  live replicas' number (what local fallbacks split by) and how far the clocks are apart, and
  the live replicas' summaries only at the tick after ``cluster_status()`` asked for them, so
  what a replica receives per tick does not grow with the fleet;
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
``clock="client"``, where the replicas must agree on the time). ``clock="auto"`` on the
replicas' clocks is degraded, and says so in a log line. Every heartbeat measures this
replica's clock against Redis's (``TIME``, or a key's expiry where ``TIME`` is refused); the
scripts keep the live replicas' median offset, and clamp a replica's time to it, plus or minus
``max_clock_skew``: one replica's clock cannot move the others' limits by more than that.

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
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, final

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
import coredis
import coredis.exceptions
import structlog

from supervisor import BreakerTransition, DependencyPaused, DependencyStatus, SupervisorError

from ._client import Client, explain, make_client
from ._dependency import DependencySync
from ._keys import Keys
from ._lease import LeasedLimiter
from ._protocol import (
    HeartbeatReply,
    MalformedReply,
    _leaf,
    _problem,
    _reason,
    _redact,
    _verdict_settings,
    control_args,
    decode_dependency,
    decode_heartbeat,
    decode_lease,
    dependency_args,
    disagreement,
    garbage_problem,
    heartbeat_args,
    lease_args,
    pause_args,
    pause_ms,
    script_head,
    summary,
)
from ._scripts import SCRIPTS, Script

if TYPE_CHECKING:
    from supervisor._runtime import Replica, ReplicaDependency

__all__ = ("SharedStateError", "SyncActor")

# A wall clock that moves this far from the monotonic one has jumped (NTP slews far less).
_JUMP: Final = 1.0
# Why a replica is degraded before Redis first answers (its limits are in "connecting" mode).
_CONNECTING: Final = "no answer from Redis yet; local protection only"
# Problems about clocks: logged (ringfence.shared_clock) when they appear.
_CLOCK_PROBLEMS: Final = ("clock", "skew")

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
class SyncActor:
    """
    The sync actor of a :class:`RedisShared` (which holds the settings, checked): the one task
    that talks to Redis, and what the last tick learned. The facade reads the public fields;
    only this actor writes them.
    """

    def __init__(
        self,
        *,
        url: str,
        cluster: bool,
        namespace: str,
        sync_interval: float,
        timeout: float,
        clock: str,
        heartbeat_ttl: float,
        open_ratio: float | None,
        open_min_volume: int | None,
        open_min_replicas: int,
        open_for: float | None,
        window: float | None,
        replica_id: str,
        max_clock_skew: float,
        expected_replicas: int | None,
    ) -> None:
        self.url = url
        self.cluster = cluster
        self.namespace = namespace
        self.sync_interval = sync_interval
        self.timeout = timeout
        self.clock = clock
        self.heartbeat_ttl = heartbeat_ttl
        self._open_ratio = open_ratio
        self._open_min_volume = open_min_volume
        self._open_min_replicas = open_min_replicas
        self._open_for = open_for
        self._window = window
        self.replica_id = replica_id
        self.max_clock_skew = max_clock_skew
        self.expected_replicas = expected_replicas
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
        self.now: Callable[[], float] = time.monotonic  # the loop clock, once running
        self.running = False
        self.sources: dict[tuple[str, int], LeasedLimiter] = {}
        # Limits replaced or removed by a reconfigure: one last lease gives back what they hold.
        self._retiring: list[tuple[str, int, LeasedLimiter]] = []
        self.dependencies: dict[str, DependencySync] = {}
        self.commands: deque[_Command] = deque()
        self._pending_pauses: dict[str, float] = {}  # dependency -> until (loop clock)
        self._pause_seq = 0
        self._wake: anyio.Event | None = None
        self._nudged = False
        self._ticked: anyio.Event | None = None
        self._use_eval = False
        # What the last tick learned
        self.connected = False
        self.problems: dict[str, str] = {"connecting": _CONNECTING}  # scope -> why
        self.replicas = 1  # live replicas, as last counted (1 before any answer)
        self.summaries: dict[str, Any] = {}  # the live replicas', at the last detail asked
        self.summaries_wall: float | None = None  # time.time() of that answer
        self.own_summary: dict[str, Any] | None = None  # this replica's, at the last tick
        self._detail = False  # cluster_status() asked: the next heartbeat brings the summaries
        # This replica's clock minus the live replicas' median (seconds), and the largest
        # distance of any live replica's from it; None: unknown.
        self.skew: float | None = None
        self.fleet_skew: float | None = None
        self.source_clock: str | None = None
        # The scripts' clock minus this replica's (ms), measured at the last answer.
        self._offset: float | None = None
        self.synced_wall: float | None = None
        self.warnings: dict[str, str] = {}
        self._failures = 0
        self._actions: list[tuple[str, str, str]] = []  # other replicas' commands to apply here
        # Units the tick in flight gives back: given back again if the tick fails (the scripts
        # of a tick that failed did nothing: see the deadline in _op).
        self._unsent: list[tuple[LeasedLimiter, float]] = []
        # Pauses the tick in flight tells Redis: told again if the tick fails, or a 429 seen
        # while Redis was stopped would never reach the other replicas.
        self._pauses_in_flight: dict[str, float] = {}

    # ==========================================================================================
    # What the facade asks

    def retire(self, dependency: str, index: int, source: LeasedLimiter) -> None:
        """*source* serves no actor any more: its next lease is its last (see ``_tick``)."""
        if self.sources.get((dependency, index)) is source:
            del self.sources[(dependency, index)]
        source.retire()
        self._retiring.append((dependency, index, source))

    @property
    def split(self) -> int:
        """
        The replicas a rate limit is split by without Redis: the live ones as last counted,
        and at least ``expected_replicas``.
        """
        return max(self.replicas, self.expected_replicas or 1)

    def ask_detail(self) -> None:
        """``cluster_status()`` was called: the next tick fetches every live replica's summary."""
        self._detail = True

    def degraded(self) -> str | None:
        """Why the shared state cannot be relied on now (``health()`` says degraded), or None."""
        if not self.problems:
            return None
        return "shared state: " + "; ".join(self.problems.values())

    # ==========================================================================================
    # The sync actor

    async def run(
        self,
        supervisor: Replica,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """``RedisShared.run``: sync with the other replicas until cancelled."""
        if self._supervisor is not None and self._supervisor is not supervisor:
            msg = "a RedisShared serves one supervisor; give each supervisor its own"
            raise RuntimeError(msg)
        self._supervisor = supervisor
        self.now = anyio.current_time
        self.running = True
        if not self.connected:
            self.problems = {"connecting": _CONNECTING}
        task_status.started()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._sync_forever, supervisor)
                # The events end when the supervisor leaves: so does the sync.
                await self._watch(supervisor)
                tasks.cancel_scope.cancel()
        finally:
            self.running = False
            self.connected = False
            self._signal_tick()  # nobody waits for a tick that will not come
            for command in self.commands:
                command.error = SharedStateError("the supervisor shut down")
                command.done.set()
            self.commands.clear()

    async def wait_tick(self) -> bool:
        """
        Wait for the sync actor's next round trip to end (at most about an interval plus the
        timeout); True when Redis answered. For tests and tools that need to know the
        replicas have been told, without sleeping.

        Raises:
            SharedStateError: the shared state is not running.
        """
        if not self.running:
            msg = "the shared state is not running: enter the supervisor first"
            raise SharedStateError(msg)
        if self._ticked is None:
            self._ticked = anyio.Event()
        await self._ticked.wait()
        return self.connected

    def nudge(self) -> None:
        """Tick now (a local pause or opening, an operator command): others learn sooner."""
        self._nudged = True
        if self._wake is not None:
            self._wake.set()

    async def _sleep(self, seconds: float, floor: float = 0.0) -> None:
        """Sleep *seconds*, or less when nudged, but at least *floor* (nudges never storm)."""
        start = self.now()
        if not self._nudged:
            self._wake = anyio.Event()
            with anyio.move_on_after(seconds):
                await self._wake.wait()
            self._wake = None
        self._nudged = False
        rest = min(floor, seconds) - (self.now() - start)
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
                            self.nudge()
                    elif isinstance(event, BreakerTransition) and event.target == "open":
                        self.nudge()  # its failures count sooner in the aggregate
        except Exception as exc:  # pragma: no cover - our bug: ticks still carry the state
            _log("error", "ringfence.shared_watch_failed", error=_reason(exc))
            await supervisor.wait_closing()

    async def _sync_forever(self, supervisor: Replica) -> None:
        last = self.now()
        while True:
            answered = False  # by this session's client
            try:
                client = self.client()
                async with client:
                    while True:
                        started = self.now()
                        await self._tick(client, supervisor, started - last)
                        answered = True
                        last = started
                        self._failures = 0
                        await self._after_tick(supervisor)
                        spent = self.now() - started
                        jitter = self._rng.uniform(0.9, 1.1)
                        await self._sleep(
                            max(0.0, self.sync_interval * jitter - spent),
                            floor=self.sync_interval / 10 - spent,
                        )
            except Exception as exc:  # connection lost, deadline passed, or our own bug
                self._lost(exc, connecting=not answered)
            # Backoff with full jitter, capped at two intervals: re-converge fast once it is back.
            self._failures += 1
            cap = 2 * self.sync_interval
            delay = min(cap, self.sync_interval * 2 ** (self._failures - 1))
            await self._sleep(self._rng.uniform(delay / 2, delay))

    def client(self) -> Client:
        return make_client(
            self.url,
            timeout=self.timeout,
            client_name=f"ringfence:{self.replica_id}",
            cluster=self.cluster,
        )

    def _lost(self, exc: BaseException, *, connecting: bool) -> None:
        """
        A tick failed (*connecting*: its session's client had no answer yet): local
        protection only, until Redis answers again.
        """
        was_connected = self.connected
        self.connected = False
        self._use_eval = False
        exc = _leaf(exc)
        explained = explain(exc, _redact(self.url), connecting=connecting)
        if explained is not None:
            why = explained
        elif isinstance(exc, TimeoutError):
            why = f"Redis at {_redact(self.url)} did not answer within {self.timeout:g} s"
        elif isinstance(
            exc, coredis.exceptions.ConnectionError | OSError | coredis.exceptions.RedisClusterError
        ):  # RedisClusterError: no node of the cluster answered its layout
            why = f"cannot reach Redis at {_redact(self.url)} ({_reason(exc)})"
        elif isinstance(exc, coredis.exceptions.ResponseError):
            why = f"Redis at {_redact(self.url)} refused ringfence ({_reason(exc)})"
        else:
            why = f"the sync with Redis failed ({_reason(exc)})"
        replicas = self.split
        self.problems = {
            "connection": f"{why}; local protection only, rate limits split by {replicas}"
            f" replica{'s' if replicas != 1 else ''}"
        }
        now = self.now()
        unsent, self._unsent = self._unsent, []
        for source, given in unsent:
            source.unsent(given)
        in_flight, self._pauses_in_flight = self._pauses_in_flight, {}
        for name, until in in_flight.items():
            self._pending_pauses[name] = max(self._pending_pauses.get(name, -math.inf), until)
        for source in self.sources.values():
            source.fall_back(now, replicas)
        for command in list(self.commands):
            if command.sent:
                self.commands.remove(command)
                command.error = exc
                command.done.set()
        if was_connected or self._failures == 0:
            _log("warning", "ringfence.shared_degraded", reason=self.problems["connection"])
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
        head = script_head(self.clock, self._client_ms(), self._offset, self.timeout)
        return _Op(SCRIPTS[name], [self._keys.meta, *keys], head + list(args), done, failed)

    async def _tick(self, client: Client, supervisor: Replica, elapsed: float) -> None:
        now = self.now()
        problems: dict[str, str] = {}
        actors = supervisor.replica_dependencies()
        statuses = {name: actor.status() for name, actor in actors.items()}
        ops = [self._heartbeat_op(statuses, problems)]
        for name, actor in actors.items():
            ops.append(self._dependency_op(name, actor, statuses[name], now, problems))
        for (name, index), source in list(self.sources.items()):
            owner = actors.get(name)
            if owner is not None and not any(s is source for s in owner.limit_sources()):
                self.retire(name, index, source)  # its actor's limits no longer include it
        # The retired limits' last leases first: a new limit at the same index then leases
        # after what the old one gave back, and its settings are the ones stored.
        for name, index, source in self._retiring:
            ops.append(self._retiring_op(name, index, source, now, problems))
        for (name, index), source in self.sources.items():
            if name in actors:
                ops.append(self._lease_op(name, index, source, now, elapsed, problems))
        ops.extend(self._pause_ops(now))
        commands = [c for c in self.commands if not c.sent]
        for command in commands:
            command.sent = True
            ops.append(self._control_op(command))
        self._check_clock(problems)
        with anyio.fail_after(self.timeout):
            results = await self._execute(client, ops)
        received = self.now()
        self._unsent = []
        self._pauses_in_flight = {}
        self.connected = True
        self.synced_wall = time.time()
        for op, result in zip(ops, results, strict=True):
            if isinstance(result, BaseException):
                op.failed(result)
            else:
                try:
                    op.done(result, received)
                except MalformedReply as exc:  # as if Redis had refused the script
                    op.failed(exc)
        if "connection" in self.problems:
            _log("info", "ringfence.shared_restored", replicas=self.replicas)
        for scope in _CLOCK_PROBLEMS:
            if scope in problems and scope not in self.problems:
                _log("warning", "ringfence.shared_clock", reason=problems[scope])
        self.problems = problems
        self._signal_tick()

    async def _execute(self, client: Client, ops: list[_Op]) -> list[object]:
        """Run *ops* in one pipeline; on NOSCRIPT load the scripts and run the failed again."""
        results = await self._pipeline(client, ops)
        missing = [
            i for i, r in enumerate(results) if isinstance(r, coredis.exceptions.NoScriptError)
        ]
        if missing:
            if isinstance(client, coredis.RedisCluster):  # no pipeline: SCRIPT LOAD has no key
                for script in SCRIPTS.values():
                    await client.script_load(script.text)
            else:
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

    async def _pipeline(self, client: Client, ops: list[_Op]) -> list[object]:
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
            self.warnings.pop("clock", None)
            return
        text = (
            f"this replica's wall clock moved {jump:+.1f} s against its monotonic clock since it"
            " started; the shared state keeps to the clock it started with"
        )
        if self.source_clock == "client":
            problems["jump"] = text + " (clock='client': the replicas must agree on the time)"
        else:
            self.warnings["clock"] = text

    def _problem(self, problems: dict[str, str], scope: str, what: str, exc: BaseException) -> None:
        leaf = _leaf(exc)
        wrong_type = isinstance(leaf, coredis.exceptions.WrongTypeError)
        moved = isinstance(leaf, coredis.exceptions.AskError)  # MovedError is one too
        _problem(
            problems,
            scope,
            what,
            _reason(exc),
            wrong_type=wrong_type,
            namespace=self.namespace,
            base=self._keys.base,
            redirected_by=_redact(self.url) if moved else None,
        )

    # -- heartbeat ------------------------------------------------------------------------------

    def _heartbeat_op(
        self, statuses: Mapping[str, DependencyStatus], problems: dict[str, str]
    ) -> _Op:
        own = self._summary(statuses)
        text = json.dumps(own, separators=(",", ":"))
        keys = [self._keys.replicas, self._keys.summaries, self._keys.clocks]
        ttl_ms = round(self.heartbeat_ttl * 1000)
        detail, self._detail = self._detail, False

        def done(reply: Any, received: float) -> None:
            decoded = decode_heartbeat(reply, detail=detail)
            self.source_clock = decoded.clock
            self._offset = decoded.time_ms - self._client_ms()
            self.replicas = decoded.replicas
            self.own_summary = own
            if decoded.summaries is not None:
                self.summaries = decoded.summaries
                self.summaries_wall = time.time()
            for source in self.sources.values():
                source.set_replicas(self.split)
            self._clocks(decoded, problems)

        def failed(exc: BaseException) -> None:
            self._detail = self._detail or detail
            self._problem(problems, "heartbeat", "heartbeat", exc)

        tolerance_ms = round(self.max_clock_skew * 1000)
        args = heartbeat_args(
            self.replica_id, ttl_ms, text, detail=detail, tolerance_ms=tolerance_ms
        )
        return self._op("heartbeat", keys, args, done, failed)

    def _clocks(self, decoded: HeartbeatReply, problems: dict[str, str]) -> None:
        """What the heartbeat measured of the clocks: degraded or a warning, as it matters."""
        if decoded.offset_ms is None or decoded.median_ms is None:
            self.skew = self.fleet_skew = None
        else:
            self.skew = (decoded.offset_ms - decoded.median_ms) / 1000
            self.fleet_skew = (decoded.spread_ms or 0.0) / 1000
        on_client = decoded.clock == "client"
        if on_client and self.clock == "auto":
            problems["clock"] = (
                "Redis refuses TIME to scripts: they run on the replicas' own clocks"
                f" (clamped to the fleet's median +- {self.max_clock_skew:g} s); allow TIME"
                " (ACL +time) or keep the replicas' clocks in sync (NTP)"
            )
        self.warnings.pop("skew", None)
        self.warnings.pop("fleet_skew", None)
        tolerance = self.max_clock_skew
        if self.skew is not None and abs(self.skew) > tolerance:
            text = (
                f"this replica's clock is {self.skew:+.3f} s off the live replicas' median"
                f" (max_clock_skew {tolerance:g} s)"
            )
            if on_client:
                problems["skew"] = (
                    text + ": the scripts clamp its time to the median +- max_clock_skew;"
                    " fix its clock (NTP)"
                )
            else:
                self.warnings["skew"] = text + " (harmless: the scripts run on Redis's TIME)"
        elif self.fleet_skew is not None and self.fleet_skew > tolerance:
            self.warnings["fleet_skew"] = (
                f"a live replica's clock is {self.fleet_skew:.3f} s off the live replicas'"
                f" median (max_clock_skew {tolerance:g} s)"
                + (": the scripts clamp its time" if on_client else " (harmless: Redis's TIME)")
            )

    def _summary(self, statuses: Mapping[str, DependencyStatus]) -> dict[str, Any]:
        return summary(
            replica_id=self.replica_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            wall=time.time(),
            now=self.now(),
            degraded=self.degraded(),
            statuses=statuses,
            windows={name: dep.window for name, dep in self.dependencies.items()},
            limits=[
                (dependency, index, source.mode, source.leased)
                for (dependency, index), source in sorted(self.sources.items())
            ],
        )

    # -- one dependency -------------------------------------------------------------------------

    def _verdict_settings(self, actor: ReplicaDependency) -> tuple[float, int, float, float]:
        """(ratio (0: no shared verdict), min volume, open for (s), window (s))."""
        return _verdict_settings(
            actor.breaker,
            open_ratio=self._open_ratio,
            open_min_volume=self._open_min_volume,
            open_for=self._open_for,
            window=self._window,
        )

    def _dependency_op(
        self,
        name: str,
        actor: ReplicaDependency,
        status: DependencyStatus,
        now: float,
        problems: dict[str, str],
    ) -> _Op:
        dep = self.dependencies.get(name)
        if dep is None:
            dep = self.dependencies[name] = DependencySync(name, self._keys.dependency(name))
        settings = self._verdict_settings(actor)
        window = settings[3]
        counted = dep.count(status, now, window)
        keys = dep.keys
        args = dependency_args(
            self.replica_id, counted, dep.epoch, settings, self._open_min_replicas
        )

        def done(reply: Any, received: float) -> None:
            decoded = decode_dependency(reply, keys)
            if decoded.garbage:
                problems[f"garbage:{name}"] = garbage_problem(decoded.garbage)
            action = dep.apply(
                actor,
                decoded,
                received,
                settings[2],
                pauser=self._pauser,
                replica_id=self.replica_id,
            )
            if action is not None:
                self._actions.append(action)

        def failed(exc: BaseException) -> None:
            self._problem(problems, f"dependency:{name}", f"dependency {name!r}", exc)

        return self._op(
            "dependency",
            [self._keys.replicas, keys.health, keys.open, keys.pause, keys.control, keys.state],
            args,
            done,
            failed,
        )

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
        cut = source.cut(now)
        self._unsent.append((source, cut[0]))
        args = lease_args(
            config,
            cut,
            sync_interval=self.sync_interval,
            replica_id=self.replica_id,
            elapsed=elapsed,
            replicas=self.replicas,
            expected=self.expected_replicas,
        )

        def done(reply: Any, received: float) -> None:
            decoded = decode_lease(reply)
            base = received + decoded.base_ms / 1000
            # Another limit's settings stored, at this limiter's first answer (or its first
            # since a fallback), are those of a limit reconfigured away (its schedule was
            # capped: lua/lease.lua); replicas that disagree differ at every tick.
            disagree = decoded.other_settings and source.mode == "lease"
            source.install(received, decoded.granted, base)
            if disagree:
                self.warnings[f"limit:{name}:{index}"] = disagreement(name, index, config)
            else:
                self.warnings.pop(f"limit:{name}:{index}", None)

        def failed(exc: BaseException) -> None:
            source.fall_back(self.now(), self.split)
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
            self.warnings.pop(f"limit:{name}:{index}", None)

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
            ms = pause_ms(until, now)
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
                    pause_args(self._pauser, self._pause_seq, ms),
                    lambda reply, received: None,
                    failed,
                )
            )
        return ops

    def _control_op(self, command: _Command) -> _Op:
        keys = self._keys.dependency(command.name)

        def done(reply: Any, received: float) -> None:
            dep = self.dependencies.get(command.name)
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
            control_args(self.replica_id, command.op, command.reason),
            done,
            failed,
        )

    def _finish(self, command: _Command, error: BaseException | None) -> None:
        try:
            self.commands.remove(command)
        except ValueError:
            pass
        command.error = error
        command.done.set()
