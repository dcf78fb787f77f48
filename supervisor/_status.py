"""
Frozen snapshots of a dependency's state and of the supervisor's health.

The runtime never hands out live state (trio's ``*Statistics`` records are the model): each
call to ``status()`` builds a new immutable record.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import final

import attrs

from policies import Percentiles, State, Transition

__all__ = ("DependencyStatus", "Health", "HealthStatus", "State", "Transition", "Percentiles")


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
        calls: attempts that ended with an outcome (ignored exceptions included).
        failures: attempts that counted as failures (slow calls included).
        rejected: calls turned away by the breaker or the bulkhead.
        failure_rate: ``failures / calls`` (0.0 before any call).
        in_flight: attempts running now (a sync callable's abandoned thread included).
        queued: calls waiting for a bulkhead slot.
        break_duration: seconds of the current or latest opening; ``None`` before any.
        transitions: recent state changes, oldest first.
        errors: exception type name → how many attempts ended with it.
        latency: p50/p95/p99 of recent attempt latencies.
        slow_calls: successful attempts slower than ``Breaker.slow_call``.
        restarts: crash restarts so far.
        crash: ``"TypeName: message"`` of the latest crash, ``None`` if none.
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
    """

    status: HealthStatus
    down: tuple[str, ...]
    critical_down: tuple[str, ...]
    states: Mapping[str, State]

    def __bool__(self) -> bool:
        """``True`` unless unhealthy, so ``if supervisor.health():`` reads naturally."""
        return self.status is not HealthStatus.UNHEALTHY
