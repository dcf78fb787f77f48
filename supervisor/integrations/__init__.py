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

import threading
from collections.abc import Iterator, Mapping, Sequence

from policies import State, Transition
from supervisor import DependencyStatus

__all__ = ()

#: Every breaker state, in the order the metrics list them.
STATES: tuple[str, ...] = tuple(state.value for state in State)

#: The quantiles ``status().latency`` carries, as ``(label, attribute)``.
QUANTILES: tuple[tuple[str, str], ...] = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))


def outcomes(status: DependencyStatus) -> Iterator[tuple[str, int]]:
    """
    Split ``status.calls`` (attempts that ended with an outcome) by outcome, so the three add
    up to ``calls``:

    - ``failure``: counted as a failure by the breaker, slow calls excluded;
    - ``slow``: succeeded, but slower than ``Breaker.slow_call`` (a failure to the breaker);
    - ``success``: everything else: successes, and exceptions the breaker does not record
      (``Breaker.ignore``, or outside ``Breaker.record``: the dependency answered).

    Cancelled attempts end without an outcome and appear nowhere; rejected calls never made an
    attempt (see the rejection figures).
    """
    slow = status.slow_calls
    yield "success", status.calls - status.failures
    yield "failure", status.failures - slow
    yield "slow", slow


def latencies(status: DependencyStatus) -> Iterator[tuple[str, float]]:
    """``(quantile, seconds)`` for each percentile measured; nothing before the first call."""
    latency = status.latency
    for label, attribute in QUANTILES:
        value: float | None = getattr(latency, attribute)
        if value is not None:
            yield label, value


class TransitionTally:
    """
    Lifetime counts of breaker transitions by target state, built from the recent transitions
    ``status()`` keeps (the breaker remembers the latest 32), for as long as no lifetime counter
    exists in ``status()``.

    Each time it is read it counts the transitions it has not seen yet: those after the newest
    one it saw last time. That one is found by identity (a snapshot hands out the breaker's own
    records), or, should a snapshot ever copy them, by lining the list up with the previous one
    (the longest tail of it that starts the new one). So the counts only grow, as a counter
    must. They miss transitions only when more than 32 happen between two reads (two scrapes),
    and they start from the first read: transitions that had rolled out of the list before it
    are not counted.

    Scrapes may come from a metrics server's thread, so the tally is guarded by a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}
        self._seen: dict[str, tuple[Transition, ...]] = {}

    def read(self, statuses: Mapping[str, DependencyStatus]) -> dict[str, dict[str, int]]:
        """Count what is new in *statuses*; return ``{dependency: {target: count}}``."""
        with self._lock:
            result: dict[str, dict[str, int]] = {}
            for name, status in statuses.items():
                counts = self._counts.setdefault(name, dict.fromkeys(STATES, 0))
                transitions = tuple(status.transitions)
                seen = self._seen.get(name, ())
                for transition in transitions[_seen_up_to(seen, transitions) :]:
                    target = str(transition.target)
                    counts[target] = counts.get(target, 0) + 1
                self._seen[name] = transitions
                result[name] = dict(counts)
            return result


def _seen_up_to(seen: Sequence[object], now: Sequence[object]) -> int:
    """How many records at the start of *now* were already in *seen*."""
    if not seen:
        return 0
    newest = seen[-1]
    for index in range(len(now) - 1, -1, -1):
        if now[index] is newest:
            return index + 1
    # Rolled out (then nothing lines up and all of *now* is new), or copies: the longest tail
    # of *seen* that *now* starts with (32 x 32 comparisons at most).
    for length in range(min(len(seen), len(now)), 0, -1):
        if seen[len(seen) - length :] == now[:length]:
            return length
    return 0
