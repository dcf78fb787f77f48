"""
Prometheus metrics for a supervisor's dependencies (``pip install 'ringfence[prometheus]'``).

    from prometheus_client import REGISTRY
    from supervisor.integrations.prometheus import collector

    REGISTRY.register(collector(supervisor))

The collector reads ``supervisor.status()`` when Prometheus scrapes, and only then: a call
through a dependency costs the same with or without it. It may be registered and scraped before
the supervisor is entered (every dependency reads as a blank closed one) and after it has left
(the last figures stay).

Metrics (every one labelled ``dependency``):

==============================================  =======  ===========================================
name                                            type     value
==============================================  =======  ===========================================
``ringfence_calls_total{outcome}``              counter  attempts that reached the dependency, by
                                                         ``outcome``: ``success``, ``ignored``
                                                         (exceptions the breaker does not record:
                                                         a 400, a 429), ``failure``, ``slow`` (over
                                                         ``Breaker.slow_call``), ``cut_off`` (by
                                                         the total deadline). Each attempt of a
                                                         retried call counts; cancelled attempts
                                                         count nowhere.
``ringfence_requests_total{result}``            counter  callers' calls that have ended, each once,
                                                         by ``result``: ``success``, ``fallback``,
                                                         ``error``; they add up to
                                                         ``status().requests``
``ringfence_rejections_total{reason}``          counter  calls turned away, by reason
                                                         (``status().rejected_by``)
``ringfence_priority_rejections_total{priority}`` counter calls refused a bulkhead slot or a
                                                         rate-limit turn (displaced from the queue
                                                         too), by the caller's priority
                                                         (``status().rejected_by_priority``)
``ringfence_retries_total``                     counter  retries made
``ringfence_fallbacks_total``                   counter  calls the fallback answered
``ringfence_hedges_total``                      counter  hedged attempts started (``policies.Hedge``)
``ringfence_hedge_wins_total``                  counter  calls a hedge answered
``ringfence_breaker_state{state}``              gauge    1 for the current state, 0 for the others
``ringfence_breaker_transitions_total{target}`` counter  transitions into ``target`` since the
                                                         supervisor started
``ringfence_in_flight``                         gauge    attempts running now
``ringfence_queued``                            gauge    calls waiting for a bulkhead slot
``ringfence_concurrency_limit``                 gauge    calls allowed at once now
                                                         (``status().limit``: the bulkhead's, or
                                                         where an ``AdaptiveLimit`` moved it);
                                                         absent for an unbounded dependency
``ringfence_call_duration_seconds{quantile}``   gauge    p50/p95/p99 (``0.5``/``0.95``/``0.99``) of
                                                         the latest attempts' latencies; absent
                                                         before the first attempt
==============================================  =======  ===========================================

Where to serve it: from the supervisor's own event loop is best, e.g. prometheus-client's
``make_asgi_app()`` mounted in the service's ASGI app. ``start_http_server`` scrapes from a
thread of its own; that works on both backends: a snapshot is built from reads that write
nothing, and the loop clock it reads (trio's clock object, asyncio's ``loop.time``) may be
read from any thread.

The latency quantiles are gauges with a ``quantile`` label rather than a Prometheus summary,
because a summary also needs a ``_sum`` and ``_count`` over the same observations and the
latency window keeps neither: it holds the latest attempts, not a lifetime total.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, final

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
except ImportError as error:  # pragma: no cover - exercised only without the extra
    msg = (
        "supervisor.integrations.prometheus needs prometheus-client: "
        "pip install 'ringfence[prometheus]'"
    )
    raise ImportError(msg) from error

from . import breaker_states, latencies, outcomes, requests, transitions

if TYPE_CHECKING:
    from supervisor import Supervisor

__all__ = ("collector", "RingfenceCollector")


def collector(supervisor: Supervisor) -> RingfenceCollector:
    """
    A Prometheus collector of *supervisor*'s figures, to register with a registry.

    Args:
        supervisor: the supervisor to report on; dependencies registered later are included
            from the next scrape on.

    Returns:
        A collector: ``registry.register(collector(supervisor))`` (``prometheus_client.REGISTRY``
        is the default registry that ``start_http_server`` and ``make_asgi_app`` serve).
    """
    return RingfenceCollector(supervisor)


@final
class RingfenceCollector:
    """
    A prometheus-client custom collector (see :func:`collector`). ``collect()`` reads
    ``status()``; ``describe()`` names the metrics without reading anything, so registering
    never touches the supervisor and two collectors in one registry clash by name.
    """

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def describe(self) -> Iterable[Metric]:
        """The metric families, empty (prometheus-client checks names against them)."""
        return _Families().all()

    def collect(self) -> Iterable[Metric]:
        """The figures now, read from ``supervisor.status()``."""
        out = _Families()
        for name, status in self._supervisor.status().items():
            for outcome, count in outcomes(status):
                out.calls.add_metric([name, outcome], count)
            for result, count in requests(status):
                out.requests.add_metric([name, result], count)
            for reason, count in sorted(status.rejected_by.items()):
                out.rejections.add_metric([name, reason], count)
            for level, count in sorted(status.rejected_by_priority.items()):
                out.priority_rejections.add_metric([name, level], count)
            out.retries.add_metric([name], status.retries)
            out.fallbacks.add_metric([name], status.fallbacks)
            out.hedges.add_metric([name], status.hedges)
            out.hedge_wins.add_metric([name], status.hedge_wins)
            for state, value in breaker_states(status):
                out.state.add_metric([name, state], value)
            for target, count in transitions(status):
                out.transitions.add_metric([name, target], count)
            out.in_flight.add_metric([name], status.in_flight)
            out.queued.add_metric([name], status.queued)
            if status.limit is not None:
                out.limit.add_metric([name], status.limit)
            for quantile, seconds in latencies(status):
                out.duration.add_metric([name, quantile], seconds)
        return out.all()


@final
class _Families:
    """One scrape's metric families, empty until ``collect`` fills them."""

    def __init__(self) -> None:
        dependency = ["dependency"]
        self.calls = CounterMetricFamily(
            "ringfence_calls",
            "Attempts that reached the dependency, by outcome"
            " (success, ignored, failure, slow, cut_off).",
            labels=[*dependency, "outcome"],
        )
        self.requests = CounterMetricFamily(
            "ringfence_requests",
            "Callers' calls that have ended, by result (success, fallback, error).",
            labels=[*dependency, "result"],
        )
        self.rejections = CounterMetricFamily(
            "ringfence_rejections",
            "Calls turned away without an attempt, by reason.",
            labels=[*dependency, "reason"],
        )
        self.priority_rejections = CounterMetricFamily(
            "ringfence_priority_rejections",
            "Calls refused a bulkhead slot or a rate-limit turn, by the caller's priority.",
            labels=[*dependency, "priority"],
        )
        self.retries = CounterMetricFamily("ringfence_retries", "Retries made.", labels=dependency)
        self.fallbacks = CounterMetricFamily(
            "ringfence_fallbacks", "Calls answered by the fallback.", labels=dependency
        )
        self.hedges = CounterMetricFamily(
            "ringfence_hedges", "Hedged attempts started.", labels=dependency
        )
        self.hedge_wins = CounterMetricFamily(
            "ringfence_hedge_wins", "Calls answered by a hedge.", labels=dependency
        )
        self.state = GaugeMetricFamily(
            "ringfence_breaker_state",
            "1 for the breaker's current state, 0 for the others.",
            labels=[*dependency, "state"],
        )
        self.transitions = CounterMetricFamily(
            "ringfence_breaker_transitions",
            "Breaker transitions by target state, since the supervisor started.",
            labels=[*dependency, "target"],
        )
        self.in_flight = GaugeMetricFamily(
            "ringfence_in_flight", "Attempts running now.", labels=dependency
        )
        self.queued = GaugeMetricFamily(
            "ringfence_queued", "Calls waiting for a bulkhead slot.", labels=dependency
        )
        self.limit = GaugeMetricFamily(
            "ringfence_concurrency_limit",
            "Calls allowed to run at once now (the bulkhead's, fixed or adaptive).",
            labels=dependency,
        )
        self.duration = GaugeMetricFamily(
            "ringfence_call_duration_seconds",
            "Latency quantiles of the latest attempts, in seconds.",
            labels=[*dependency, "quantile"],
        )

    def all(self) -> list[Metric]:
        return [
            self.calls,
            self.requests,
            self.rejections,
            self.priority_rejections,
            self.retries,
            self.fallbacks,
            self.hedges,
            self.hedge_wins,
            self.state,
            self.transitions,
            self.in_flight,
            self.queued,
            self.limit,
            self.duration,
        ]
