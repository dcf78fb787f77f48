"""
The differential test's driver (issue 16, item 2): one scripted sequence of operations on one
dependency, replayed on asyncio's fast path (the generated, inlined one), on the fast path's
template (``RINGFENCE_INLINE=0``), on asyncio's general path
(``supervisor._actor.FAST_PATH = False``) and on trio, each run giving a trace to compare.

Determinism
-----------
* **Time** is virtual and identical on every run: trio runs on ``MockClock(autojump_threshold=0)``,
  asyncio on :class:`~tests.runtime._virtual_loop.VirtualClockLoop`, which jumps as MockClock
  does. Every duration in a scenario is a dyadic fraction (0.25, 37/128, 1/64...), so the
  clock's sums are exact and both backends reach the same instants.
* **Interleavings** are the driver's: after every operation it waits until every other task
  is blocked (:func:`~tests.runtime._virtual_loop.wait_idle`, trio's
  ``wait_all_tasks_blocked``) before the next one; time moves only when the driver sleeps; a
  call that holds stays inside the dependency until the driver opens its gate. Each call's
  behaviour travels in its own arguments, so it does not depend on which call arrives first.
* What the driver cannot order is two calls woken by timers due at the same instant (two
  calls waiting out one pause). The asyncio runs share one scheduler, so the fast and the
  general path resolve such a tie the same way and are compared to the end. trio may resolve
  it otherwise: an instrument notes the first operation during which a tie happened on trio,
  and trio is compared with asyncio up to that operation only.

The trace
---------
One :class:`Entry` per operation: what the operation itself returned, the calls that ended
during it (by call id: their result, or the exception's type and key fields), the events
published during it (every field but wall-clock times), and a digest of ``status()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import anyio.abc
import trio
import trio.abc
import trio.lowlevel
import trio.testing

import supervisor._actor
from policies import Breaker, BreakHistory, Bulkhead, RateLimit, Retry, Timeout, backoff
from supervisor import (
    BreakerOpen,
    BulkheadFull,
    DependencyCrashed,
    Event,
    EventStream,
    RateLimited,
    Supervisor,
)

from ._virtual_loop import VirtualClockLoop, wait_idle

__all__ = (
    "VARIANTS",
    "Advance",
    "ArmCrash",
    "Call",
    "Cancel",
    "Config",
    "Entry",
    "ForceHalfOpen",
    "Isolate",
    "Op",
    "Run",
    "Reconfigure",
    "Release",
    "Relimit",
    "Reset",
    "Resize",
    "compare_paths",
    "run",
)

#: The ways a scenario runs: asyncio's fast path (generated, inlined), the fast path's
#: template (``RINGFENCE_INLINE=0``; where there is none, the fast path again), asyncio's
#: general path (``FAST_PATH = False``), and trio's attempt, generated and its template.
VARIANTS: Final = (
    "asyncio-fast",
    "asyncio-template",
    "asyncio-general",
    "trio",
    "trio-template",
)
#: Virtual seconds after which a run is stuck (the hang guard, on both clocks).
HANG: Final = 100_000.0
#: The name of a call's task (then its id): the tie watch counts these.
_CALL_TASK: Final = "differential call "
#: Driver steps the finale may take to let every call end (open gates, let time pass).
FINALE_STEPS: Final = 400


# -- the scenario ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """
    The dependency's policies. Durations are dyadic fractions (exact sums on both clocks).

    Attributes:
        threshold: ``Breaker(failure_threshold=...)``.
        slow_call: ``Breaker(slow_call=...)``.
        break_s: what the break_duration callable returns (unless armed to crash).
        bulkhead: ``(max_concurrent, max_queued)``, or None.
        rate: ``RateLimit(1, per=..., burst=1, max_wait=...)`` as ``(per, max_wait)``, or None.
        attempt: ``Timeout(attempt=...)``, or None (with one, asyncio takes the general path).
        pause: the ``retry_after`` of a 429 answer.
        retry: ``Retry(attempts=..., backoff=backoff.constant(37 / 128))``, or None.
        fallback: a fallback that answers ``"fallback"`` (for the errors it answers by
            default), or none.
    """

    threshold: int = 2
    slow_call: float | None = None
    break_s: float = 2.0
    bulkhead: tuple[int, int] | None = None
    rate: tuple[float, float] | None = None
    attempt: float | None = None
    pause: float = 0.5
    retry: int | None = None
    fallback: bool = False


@dataclass(frozen=True)
class Call:
    """A call: the dependency answers ``then`` (ok, transient, invalid, custom, r429), at once or,
    with ``hold``, when the driver opens its gate (:class:`Release`)."""

    then: str = "ok"
    hold: bool = False


@dataclass(frozen=True)
class Release:
    """Open the gate of the ``k``-th held call (by call id, modulo how many are held)."""

    k: int = 0


@dataclass(frozen=True)
class Cancel:
    """Cancel the ``k``-th call not ended yet, wherever it is (the caller's cancellation)."""

    k: int = 0


@dataclass(frozen=True)
class Advance:
    """Let ``dt`` virtual seconds pass (timers due meanwhile fire, in order)."""

    dt: float = 1.0


@dataclass(frozen=True)
class Reconfigure:
    """``reconfigure(breaker=...)``: a fresh breaker of the same configuration."""


@dataclass(frozen=True)
class Resize:
    """``reconfigure(bulkhead=...)``: ``(max_concurrent, max_queued)``, or None for none."""

    bulkhead: tuple[int, int] | None = None


@dataclass(frozen=True)
class Relimit:
    """``reconfigure(rate_limit=...)``: ``(per, max_wait)`` as in :class:`Config`, or None."""

    rate: tuple[float, float] | None = None


@dataclass(frozen=True)
class Isolate:
    """``isolate()``."""


@dataclass(frozen=True)
class Reset:
    """``reset()``."""


@dataclass(frozen=True)
class ForceHalfOpen:
    """``force_half_open()``."""


@dataclass(frozen=True)
class ArmCrash:
    """The next break duration asked for raises: the actor crashes and restarts (or goes down)."""


Op = (
    Call
    | Release
    | Cancel
    | Advance
    | Reconfigure
    | Resize
    | Relimit
    | Isolate
    | Reset
    | ForceHalfOpen
    | ArmCrash
)


class Custom(Exception):
    """The dependency's own exception type (kind unknown: not a breaker failure)."""


class TooManyRequests(Exception):
    """A 429 with a Retry-After: the dependency pauses."""

    status_code = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"429, retry after {retry_after}")
        self.retry_after = retry_after


# -- the trace -------------------------------------------------------------------------------


@dataclass
class Entry:
    """What one operation did, as seen from outside."""

    index: int
    op: str
    result: object = None
    ended: list[tuple[int, tuple[object, ...]]] = field(default_factory=list)
    events: list[dict[str, object]] = field(default_factory=list)
    status: dict[str, object] = field(default_factory=dict)


def _r(value: float | None) -> float | None:
    """A time or duration, rounded so an ulp of clock arithmetic cannot tell runs apart."""
    if value is None or math.isinf(value):
        return value
    return round(value, 6)


def _outcome(exc: BaseException) -> tuple[object, ...]:
    """An exception as compared across runs: its type and the fields callers act on."""
    name = type(exc).__name__
    if isinstance(exc, BreakerOpen):
        return (name, str(exc.state), _r(exc.retry_after))
    if isinstance(exc, RateLimited):
        return (name, _r(exc.retry_after))
    if isinstance(exc, BulkheadFull):
        return (name, exc.max_concurrent, exc.max_queued)
    if isinstance(exc, DependencyCrashed):
        return (name, exc.down)
    return (name,)


def _event(event: Event) -> dict[str, object]:
    data = event.to_dict()
    for key in ("wall", "until_wall", "dependency"):
        data.pop(key, None)
    return {k: _r(v) if isinstance(v, float) else v for k, v in data.items()}


def _status(sup: Supervisor) -> dict[str, object]:
    s = sup.status("dep")
    return {
        "state": str(s.state),
        "calls": s.calls,
        "failures": s.failures,
        "rejected": s.rejected,
        "rejected_by": dict(sorted(s.rejected_by.items())),
        "retries": s.retries,
        "fallbacks": s.fallbacks,
        "slow_calls": s.slow_calls,
        "in_flight": s.in_flight,
        "queued": s.queued,
        "consecutive_failures": s.consecutive_failures,
        "transitions": [(str(t.source), str(t.target), t.reason, _r(t.at)) for t in s.transitions],
        "transitions_total": dict(sorted(s.transitions_total.items())),
        "errors": dict(sorted(s.errors.items())),
        "restarts": s.restarts,
        "crash": s.crash,
        "break_duration": _r(s.break_duration),
        "open_remaining": _r(s.open_remaining),
        "paused_until": _r(s.paused_until),
        "latency": (_r(s.latency.p50), _r(s.latency.p99), s.latency.samples),
        "rate_limit": tuple(_r(units) for units in s.rate_limit),
    }


def _bulkhead(size: tuple[int, int] | None) -> Bulkhead | None:
    return None if size is None else Bulkhead(max_concurrent=size[0], max_queued=size[1])


def _rate_limit(rate: tuple[float, float] | None) -> tuple[RateLimit, ...]:
    return () if rate is None else (RateLimit(1, per=rate[0], burst=1, max_wait=rate[1]),)


async def _fallback(error: Exception, cid: int, then: str, hold: bool) -> str:
    return f"fallback{cid}"


# -- the driver ------------------------------------------------------------------------------


class _Driver:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.sup = Supervisor(rng=random.Random(1234))
        self.gates: dict[int, anyio.Event] = {}  # held calls, by call id
        self.scopes: dict[int, anyio.CancelScope] = {}  # calls not ended yet
        self.ended: dict[int, tuple[object, ...]] = {}  # ended, not reported yet
        self.next_id = 0
        self.crash_armed = False
        self.op_index = 0  # the operation being applied (len(ops): the finale)
        self.tg: anyio.abc.TaskGroup | None = None
        self.sup.register("dep", self.dependency, **self.policies())

    def break_duration(self, history: BreakHistory) -> float:
        if self.crash_armed:
            self.crash_armed = False
            msg = "armed"
            raise RuntimeError(msg)
        return self.config.break_s

    def breaker(self) -> Breaker:
        return Breaker(
            failure_threshold=self.config.threshold,
            slow_call=self.config.slow_call,
            break_duration=self.break_duration,
        )

    def policies(self) -> dict[str, Any]:
        config = self.config
        policies: dict[str, Any] = {"breaker": self.breaker()}
        if config.bulkhead is not None:
            policies["bulkhead"] = _bulkhead(config.bulkhead)
        if config.rate is not None:
            policies["rate_limit"] = _rate_limit(config.rate)
        if config.fallback:
            policies["fallback"] = _fallback
        if config.attempt is not None:
            policies["timeout"] = Timeout(attempt=config.attempt)
        if config.retry is not None:
            policies["retry"] = Retry(attempts=config.retry, backoff=backoff.constant(37 / 128))
        return policies

    async def dependency(self, cid: int, then: str, hold: bool) -> str:
        if hold:
            gate = self.gates[cid] = anyio.Event()
            try:
                await gate.wait()
            finally:
                del self.gates[cid]
        if then == "ok":
            return f"ok{cid}"
        if then == "transient":
            raise ConnectionError("down")
        if then == "invalid":
            raise ValueError("bad input")
        if then == "custom":
            raise Custom("custom")
        assert then == "r429", then
        raise TooManyRequests(self.config.pause)

    async def call(self, cid: int, op: Call) -> None:
        outcome: tuple[object, ...] = ("unfinished",)
        with anyio.CancelScope() as scope:
            self.scopes[cid] = scope
            try:
                result = await self.sup.call("dep", cid, op.then, op.hold)
            except Exception as exc:
                outcome = _outcome(exc)
            else:
                outcome = ("ok", result)
        if scope.cancelled_caught:
            outcome = ("cancelled",)
        del self.scopes[cid]
        self.ended[cid] = outcome

    async def apply(self, op: Op) -> object:
        sup = self.sup
        if isinstance(op, Call):
            cid = self.next_id
            self.next_id += 1
            assert self.tg is not None
            self.tg.start_soon(self.call, cid, op, name=f"{_CALL_TASK}{cid}")
            return cid
        if isinstance(op, Release):
            held = sorted(self.gates)
            if not held:
                return None
            cid = held[op.k % len(held)]
            self.gates[cid].set()
            return cid
        if isinstance(op, Cancel):
            pending = sorted(self.scopes)
            if not pending:
                return None
            cid = pending[op.k % len(pending)]
            self.scopes[cid].cancel()
            return cid
        if isinstance(op, Advance):
            await anyio.sleep(op.dt)
            return None
        if isinstance(op, ArmCrash):
            self.crash_armed = True
            return None
        try:
            if isinstance(op, Reconfigure):
                await sup.reconfigure("dep", breaker=self.breaker())
                return "reconfigured"
            if isinstance(op, Resize):
                await sup.reconfigure("dep", bulkhead=_bulkhead(op.bulkhead))
                return "reconfigured"
            if isinstance(op, Relimit):
                await sup.reconfigure("dep", rate_limit=_rate_limit(op.rate))
                return "reconfigured"
            if isinstance(op, Isolate):
                transition = await sup.isolate("dep")
            elif isinstance(op, Reset):
                transition = await sup.reset("dep")
            else:
                assert isinstance(op, ForceHalfOpen), op
                transition = await sup.force_half_open("dep")
        except Exception as exc:
            return _outcome(exc)
        return (str(transition.source), str(transition.target), transition.reason)

    def record(self, entry: Entry) -> None:
        entry.ended = sorted(self.ended.items())
        self.ended.clear()
        entry.status = _status(self.sup)

    async def drain(self, entry: Entry, stream: EventStream) -> None:
        while stream.pending:
            entry.events.append(_event(await stream.__anext__()))

    async def run(self, ops: Sequence[Op]) -> Run:
        watch = _TieWatch(self) if _on_trio() else None
        if watch is not None:
            trio.lowlevel.add_instrument(watch)
        try:
            with anyio.fail_after(HANG):
                async with (
                    self.sup,
                    self.sup.events(buffer=100_000) as stream,
                    anyio.create_task_group() as self.tg,
                ):
                    trace = await self.replay(ops, stream)
        finally:
            if watch is not None:
                trio.lowlevel.remove_instrument(watch)
        return Run(trace, watch.first_tie if watch is not None else None)

    async def replay(self, ops: Sequence[Op], stream: EventStream) -> list[Entry]:
        trace: list[Entry] = []
        for index, op in enumerate(ops):
            self.op_index = index
            entry = Entry(index, repr(op))
            entry.result = await self.apply(op)
            await wait_idle()
            await self.drain(entry, stream)
            self.record(entry)
            trace.append(entry)
        # The finale: open the gates one by one, let time pass, until every call has ended.
        self.op_index = len(ops)
        finale = Entry(len(ops), "finale")
        for _ in range(FINALE_STEPS):
            if not self.scopes:
                break
            if self.gates:
                self.gates[min(self.gates)].set()
            else:
                await anyio.sleep(1.0)
            await wait_idle()
        await self.drain(finale, stream)
        self.record(finale)
        finale.result = sorted(self.scopes)  # calls that never ended: none, normally
        trace.append(finale)
        for scope in self.scopes.values():
            scope.cancel()
        return trace


def _on_trio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False


@dataclass
class Run:
    """A run's trace, and (trio) the first operation during which a timer tie woke two calls."""

    trace: list[Entry]
    first_tie: int | None = None


class _TieWatch(trio.abc.Instrument):
    """
    A trio instrument noting the first operation during which two calls were woken by timers
    due at the same instant (two calls waiting out one pause; a rate-limit turn and another
    call's attempt timeout): which goes first is then the scheduler's choice, not the driver's,
    and asyncio's choice may differ. Tasks that deadlines wake are scheduled between
    ``after_io_wait`` and the next task step.
    """

    def __init__(self, driver: _Driver) -> None:
        self.driver = driver
        self.woken: set[object] | None = None
        self.first_tie: int | None = None

    def after_io_wait(self, timeout: float) -> None:
        self.woken = set()

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        if self.woken is not None and task.name.startswith(_CALL_TASK):
            self.woken.add(task)

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        woken, self.woken = self.woken, None
        if woken is not None and len(woken) > 1 and self.first_tie is None:
            self.first_tie = self.driver.op_index


# -- running and comparing -------------------------------------------------------------------


@contextlib.contextmanager
def _asyncio_path(fast: bool, inline: bool) -> Iterator[None]:
    """
    ``supervisor._actor.FAST_PATH`` (read when an actor derives its paths: False sends every
    attempt to the general path) and ``RINGFENCE_INLINE`` (read when the supervisor starts:
    "0" runs the fast path's template instead of the generated, inlined one; code without a
    template reads it only at import, and then this changes nothing).
    """
    saved = supervisor._actor.FAST_PATH, os.environ.get("RINGFENCE_INLINE")
    supervisor._actor.FAST_PATH = fast
    os.environ["RINGFENCE_INLINE"] = "1" if inline else "0"
    try:
        yield
    finally:
        supervisor._actor.FAST_PATH = saved[0]
        if saved[1] is None:
            del os.environ["RINGFENCE_INLINE"]
        else:
            os.environ["RINGFENCE_INLINE"] = saved[1]


def run(config: Config, ops: Sequence[Op], variant: str) -> Run:
    """Replay *ops* on *variant*, one of :data:`VARIANTS`."""
    if variant.startswith("asyncio"):
        with _asyncio_path(fast=variant != "asyncio-general", inline=variant != "asyncio-template"):
            return anyio.run(
                _Driver(config).run,
                ops,
                backend="asyncio",
                backend_options={"loop_factory": VirtualClockLoop},
            )
    assert variant in ("trio", "trio-template"), variant
    with _asyncio_path(fast=True, inline=variant != "trio-template"):
        return anyio.run(
            _Driver(config).run,
            ops,
            backend="trio",
            backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)},
        )


def first_difference(a: list[Entry], b: list[Entry]) -> int:
    """The index of the first entry that differs; -1 when none does."""
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b) or a[i] != b[i]:
            return i
    return -1


def explain(
    config: Config, ops: Sequence[Op], names: tuple[str, str], a: list[Entry], b: list[Entry]
) -> str:
    """The scenario, and the first operation whose entries differ, both sides."""
    index = first_difference(a, b)
    lines = [f"{names[0]} and {names[1]} differ at op {index}", f"config: {config!r}", "ops:"]
    lines += [f"  {i:2}: {op!r}" for i, op in enumerate(ops)]
    for name, mine, theirs in ((names[0], a, b), (names[1], b, a)):
        lines.append(f"{name}:")
        entry = mine[index] if index < len(mine) else None
        other = theirs[index] if index < len(theirs) else None
        if entry is None:
            lines.append("  (no entry)")
            continue
        for key, value in vars(entry).items():
            differs = other is not None and getattr(other, key) != value
            if key == "status" and other is not None:
                value = {k: v for k, v in entry.status.items() if other.status.get(k) != v}
                key = "status (the fields that differ)"
            lines.append(f" {'*' if differs else ' '}{key}: {value!r}")
    return "\n".join(lines)


def compare_paths(config: Config, ops: Sequence[Op]) -> Run:
    """
    Replay *ops* on every variant; AssertionError at the first difference from asyncio's
    general path. The asyncio variants are compared to the end (one scheduler: even a tie
    resolves the same way on each); trio, generated and template, up to its first timer tie
    (see :class:`_TieWatch`).
    Returns trio's run.
    """
    general = run(config, ops, "asyncio-general").trace
    for variant in ("asyncio-fast", "asyncio-template"):
        trace = run(config, ops, variant).trace
        if trace != general:
            raise AssertionError(explain(config, ops, (variant, "asyncio-general"), trace, general))
    on_trio = run(config, ops, "trio")
    end = on_trio.first_tie if on_trio.first_tie is not None else len(on_trio.trace)
    if general[:end] != on_trio.trace[:end]:
        raise AssertionError(
            explain(config, ops, ("trio", "asyncio-general"), on_trio.trace, general)
        )
    # trio's template against asyncio's general path the same way (trio's scheduler breaks
    # a tie at random: two trio runs agree up to a tie, not beyond).
    template = run(config, ops, "trio-template")
    end = template.first_tie if template.first_tie is not None else len(template.trace)
    if general[:end] != template.trace[:end]:
        names = ("trio-template", "asyncio-general")
        raise AssertionError(explain(config, ops, names, template.trace, general))
    return on_trio
