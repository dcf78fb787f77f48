"""
Frozen snapshots of a dependency's state and of the supervisor's health.

The runtime never hands out live state (trio's ``*Statistics`` records are the model): each
call to ``status()`` builds a new immutable record.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, final

import attrs

from policies import BudgetStatus, Percentiles, State, Transition

if TYPE_CHECKING:
    from policies import CircuitBreaker

__all__ = (
    "DependencyStatus",
    "Health",
    "HealthStatus",
    "State",
    "Transition",
    "Percentiles",
    "breaker_fields",
)


@final
@attrs.frozen(kw_only=True)
class DependencyStatus:
    """
    One dependency, as of the moment ``status()`` was called. Times are seconds on the
    supervisor's clock; counts are lifetime totals.

    Attributes:
        name: the dependency's name.
        state: ``closed``, ``open``, ``half_open`` or ``isolated`` (a ``str`` enum).
        since: time of the last transition.
        consecutive_failures: failures in a row, as the breaker counts them.
        calls: attempts that ended with an outcome (ignored exceptions included). An
            attempt, not a caller's call: a retried call counts once per attempt (see
            *requests* for the callers' calls).
        failures: attempts that counted as failures (slow calls included).
        rejected: calls turned away without reaching the dependency (why: *rejected_by*).
        failure_rate: ``failures / calls`` (0.0 before any call).
        in_flight: attempts running now (a sync callable's abandoned thread included).
        queued: calls waiting for a bulkhead slot.
        break_duration: seconds of the current or latest opening; ``None`` before any.
        transitions: recent state changes, oldest first.
        errors: exception type name → how many attempts ended with it.
        latency: p50/p95/p99 of a sample of recent attempt latencies (the latest 1,024
            sampled): every attempt is timed until 1,024 have ended, then one in 16 (those
            starting while ``calls`` is a multiple of 16), so a success costs no clock read;
            every attempt when ``Breaker.slow_call`` is set, and every stream's first item.
            ``calls``, ``failures``, ``slow_calls`` and the breaker's decisions are exact.
        slow_calls: attempts that ran longer than ``Breaker.slow_call`` (counted as they
            crossed it, still running).
        restarts: crash restarts so far.
        crash: ``"TypeName: message"`` of the latest crash, ``None`` if none.
        retries: retries made (lifetime; a call's first attempt is not a retry).
        fallbacks: calls the fallback answered.
        hedges: hedged attempts started (``policies.Hedge``; lifetime).
        hedge_wins: calls answered by a hedge rather than by the attempt it raced.
        ignored: attempts that ended with an exception the breaker does not record
            (``Breaker.ignore``, or outside ``Breaker.record``: a 400, a 429), included in
            *calls* and in neither *failures* nor successes (Resilience4j's "ignored").
        cut_off: attempts the call's total deadline (``Timeout.total``) cut off, a stream's
            included (opening, or waiting for a later item): they reached the dependency,
            but are not its failure (not in *calls*).
        requests: calls callers made that have ended, each counted once however many
            attempts it took, retries and hedges alike (a hedge's race is one request, its
            contenders' outcomes attempts): ``requests == successes + fallbacks + raised``
            at every moment. A call the caller cancelled, or one the supervisor's exit cut
            off (running, or waiting in the bulkhead's queue), is in none of them.
        successes: of *requests*, those the dependency answered (slow ones included).
        raised: of *requests*, those that ended with an exception raised to the caller
            (the dependency's own, a timeout, a rejection), the fallback not answering.
        chaos: what ``policies.Chaos`` injected (``error``, ``latency``, ``result``) → how
            many calls; empty without it.
        rejected_by: why calls were turned away (``breaker_open``, ``breaker_half_open``,
            ``breaker_isolated``, ``bulkhead_full``, ``rate_limited``, ``paused``, ``shared_open``,
            ``down``, ``crashed``: waiting in the bulkhead's queue when the actor crashed and
            restarted (``down`` when that crash left it down), ``deadline``: the total
            deadline passed before an attempt could start: in the bulkhead's queue, or while
            it waited for a turn, a pause or a backoff the loop ended late) → how many; the
            counts add up to ``rejected``.
        paused_until: while the dependency is paused (a Retry-After), when the pause ends, on
            the supervisor's clock; ``None`` when not paused.
        pause_remaining: seconds of pause left (0.0 when not paused).
        open_remaining: while open, seconds until a probe is allowed; ``None`` otherwise.
        now: the supervisor's clock when the snapshot was taken.
        wall: ``time.time()`` when the snapshot was taken: ``wall - (now - t)`` turns any
            time ``t`` above into wall-clock time.
        since_wall: ``since`` as wall-clock time, for display.
        budget: the retry budget's figures, ``None`` without one.
        rate_limit: each rate limit's units left now, ``()`` without any.
        shared_open_until: while the replicas' shared verdict (``shared=``) holds the
            dependency open, when it ends, on the loop clock; ``None`` otherwise.
        transitions_total: target state (``open``, ``half_open``, ...) -> transitions into it
            since the supervisor started (lifetime; ``transitions`` keeps only the latest).
        rejected_by_priority: calls refused a bulkhead slot or a rate-limit turn
            (``bulkhead_full``, ``rate_limited``; a call a higher priority displaced from the
            queue included), by the caller's priority level (``critical``, ``default``,
            ``sheddable``, or the level's number: ``policies.Priority``) → how many.
        limit: calls allowed to run at once now: the bulkhead's ``max_concurrent``, or where
            an ``AdaptiveLimit`` has moved it; ``None`` when unbounded.
    """

    name: str
    state: State
    since: float
    consecutive_failures: int
    calls: int
    failures: int
    rejected: int
    failure_rate: float
    in_flight: int
    queued: int
    break_duration: float | None
    transitions: tuple[Transition, ...]
    errors: Mapping[str, int]
    latency: Percentiles
    slow_calls: int = 0
    restarts: int = 0
    crash: str | None = None
    retries: int = 0
    fallbacks: int = 0
    rejected_by: Mapping[str, int] = attrs.field(factory=dict)
    paused_until: float | None = None
    # Figures of the moment the snapshot was taken: two snapshots of an unchanged
    # dependency compare equal whatever their moments (eq=False).
    pause_remaining: float = attrs.field(default=0.0, eq=False)
    open_remaining: float | None = attrs.field(default=None, eq=False)
    now: float = attrs.field(default=0.0, eq=False)
    wall: float = attrs.field(default=0.0, eq=False)
    since_wall: float = attrs.field(default=0.0, eq=False)
    budget: BudgetStatus | None = None
    rate_limit: tuple[float, ...] = ()
    transitions_total: Mapping[str, int] = attrs.field(factory=dict)
    shared_open_until: float | None = None
    hedges: int = 0
    hedge_wins: int = 0
    limit: int | None = None
    ignored: int = 0
    cut_off: int = 0
    requests: int = 0
    successes: int = 0
    raised: int = 0
    chaos: Mapping[str, int] = attrs.field(factory=dict)
    rejected_by_priority: Mapping[str, int] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable dict of the snapshot (transitions with wall-clock ``at_wall``)."""
        offset = self.wall - self.now
        data: dict[str, object] = {
            field.name: getattr(self, field.name)
            for field in attrs.fields(DependencyStatus)
            if field.name
            not in (
                "transitions",
                "latency",
                "errors",
                "rejected_by",
                "budget",
                "transitions_total",
                "chaos",
                "rejected_by_priority",
            )
        }
        data["rejected_by_priority"] = dict(self.rejected_by_priority)
        data["transitions_total"] = dict(self.transitions_total)
        data["chaos"] = dict(self.chaos)
        data["state"] = str(self.state)
        data["errors"] = dict(self.errors)
        data["rejected_by"] = dict(self.rejected_by)
        data["latency"] = {
            "p50": self.latency.p50,
            "p95": self.latency.p95,
            "p99": self.latency.p99,
        }
        data["transitions"] = [
            {
                "at": t.at,
                "at_wall": t.at + offset if self.wall else None,
                "source": str(t.source),
                "target": str(t.target),
                "reason": t.reason,
            }
            for t in self.transitions
        ]
        budget = self.budget
        data["budget"] = attrs.asdict(budget) if budget is not None else None
        for key, value in data.items():  # JSON has no inf or nan
            if isinstance(value, float) and (
                value != value or value in (float("inf"), float("-inf"))
            ):
                data[key] = None if value != value else str(value)
        return data


def breaker_fields(
    machine: CircuitBreaker, now: float, *, started: bool, accepting: bool
) -> dict[str, Any]:
    """
    :class:`DependencyStatus`'s fields of a breaker *machine* at *now* (the loop clock, or the
    moment the supervisor left), and of the moment: ``now``, ``wall``. Before the supervisor
    started (*started* false) nothing is timed yet.
    """
    wall = time.time()
    state, since = machine.state, machine.since
    open_remaining = None
    if state is State.OPEN and started:  # (open_until is on the loop clock)
        open_remaining = max(0.0, machine.open_until - now)
        if accepting and now >= machine.open_until:
            state = State.HALF_OPEN  # decided lazily at the next call; report it now
    return {
        "state": state,
        "since": since,
        "consecutive_failures": machine.consecutive_failures,
        "break_duration": machine.break_duration,
        "transitions": tuple(machine.transitions),
        "open_remaining": open_remaining,
        "now": now,
        "wall": wall,
        "since_wall": wall - (now - since) if started else 0.0,
    }


class HealthStatus(enum.StrEnum):
    """``healthy``: all closed; ``unhealthy``: all (or a critical one) down; else ``degraded``."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@final
@attrs.frozen(kw_only=True)
class Health:
    """
    The supervisor's summary. A dependency is *down* when its breaker is open or isolated;
    half-open counts as recovering (degraded).

    Attributes:
        status: the verdict.
        down: names of the dependencies that are down.
        critical_down: the subset of *down* registered with ``critical=True``.
        states: every dependency's state.
        reason: why shared state (``Supervisor(shared=...)``) cannot be relied on now, when
            it cannot (the verdict is then at least ``degraded``); ``None`` otherwise.
    """

    status: HealthStatus
    down: tuple[str, ...]
    critical_down: tuple[str, ...]
    states: Mapping[str, State]
    reason: str | None = None

    def __bool__(self) -> bool:
        """``True`` unless unhealthy, so ``if supervisor.health():`` reads naturally."""
        return self.status is not HealthStatus.UNHEALTHY
