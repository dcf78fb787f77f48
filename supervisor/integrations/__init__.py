"""
Optional integrations: each submodule imports its extra at import time and says which one to
install when it is missing.

- :mod:`supervisor.integrations.prometheus` (``ringfence[prometheus]``): a collector.
- :mod:`supervisor.integrations.otel` (``ringfence[otel]``): OpenTelemetry instruments.
- :mod:`supervisor.integrations.asgi` (``ringfence[web]``): lifespan, health/status/events
  routes and the dashboard page.

All of them read ``supervisor.status()`` when they are asked (at scrape, collection or request
time): nothing here runs on a dependency's call path, so a call costs the same with or without
them (DESIGN.md Part 2, "Nothing new on the hot path").

This module holds the figures the metric integrations share, so Prometheus and OpenTelemetry
derive them in one place and always agree.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies import State
from supervisor import DependencyStatus

__all__ = ()

#: Every breaker state, in the order the metrics list them.
STATES: tuple[str, ...] = tuple(state.value for state in State)

#: The quantiles ``status().latency`` carries, as ``(label, attribute)``.
QUANTILES: tuple[tuple[str, str], ...] = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))


def outcomes(status: DependencyStatus) -> Iterator[tuple[str, int]]:
    """
    Every attempt that reached the dependency, by outcome (Resilience4j's split, plus ours):

    - ``success``: answered (not slow);
    - ``ignored``: ended with an exception the breaker does not record (``Breaker.ignore``,
      or outside ``Breaker.record``: a 400, a 429);
    - ``failure``: counted as a failure by the breaker, slow calls excluded;
    - ``slow``: succeeded, but slower than ``Breaker.slow_call`` (a failure to the breaker);
    - ``cut_off``: cut off by the call's total deadline (not the dependency's failure).

    The first four add up to ``status.calls``. Cancelled attempts end without an outcome and
    appear nowhere; rejected calls never made an attempt (see the rejection figures).
    """
    slow = status.slow_calls
    yield "success", status.calls - status.failures - status.ignored
    yield "ignored", status.ignored
    yield "failure", status.failures - slow
    yield "slow", slow
    yield "cut_off", status.cut_off


def requests(status: DependencyStatus) -> Iterator[tuple[str, int]]:
    """
    The callers' calls that have ended, by what the caller got: ``success`` (the dependency's
    answer), ``fallback`` (the fallback's), ``error`` (an exception: the dependency's, a
    timeout, a rejection). They add up to ``status.requests``; each call counts once, however
    many attempts it took.
    """
    yield "success", status.successes
    yield "fallback", status.fallbacks
    yield "error", status.raised


def breaker_states(status: DependencyStatus) -> Iterator[tuple[str, int]]:
    """``(state, 1 or 0)`` for every state in :data:`STATES`: 1 for the current one."""
    current = str(status.state)
    for state in STATES:
        yield state, 1 if state == current else 0


def transitions(status: DependencyStatus) -> Iterator[tuple[str, int]]:
    """
    ``(target state, transitions into it)`` since the supervisor started, from
    ``status.transitions_total`` (the actor's lifetime counter, not the latest-32 list): every
    state in :data:`STATES`, 0 when never entered, so each series exists from the first scrape.
    """
    counts = status.transitions_total
    for state in STATES:
        yield state, counts.get(state, 0)


def latencies(status: DependencyStatus) -> Iterator[tuple[str, float]]:
    """``(quantile, seconds)`` for each percentile measured; nothing before the first call."""
    latency = status.latency
    for label, attribute in QUANTILES:
        value: float | None = getattr(latency, attribute)
        if value is not None:
            yield label, value
