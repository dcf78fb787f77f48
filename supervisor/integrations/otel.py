"""
OpenTelemetry metrics for a supervisor's dependencies (``pip install 'ringfence[otel]'``).

    from supervisor.integrations.otel import instrument

    instrumentation = instrument(supervisor)        # the global MeterProvider
    ...
    instrumentation.unregister()

The figures are the Prometheus collector's (:mod:`supervisor.integrations.prometheus` documents
each one), as observable instruments whose callbacks read ``supervisor.status()`` when the SDK
collects: a call through a dependency costs the same with or without them. Every data point
carries the attribute ``dependency``.

================================  ========================  ===================================
instrument                        kind                      attributes besides ``dependency``
================================  ========================  ===================================
``ringfence.calls``               counter                   ``outcome`` (success/failure/slow)
``ringfence.rejections``          counter                   ``reason``
``ringfence.retries``             counter
``ringfence.fallbacks``           counter
``ringfence.breaker.state``       gauge (1 current, else 0) ``state``
``ringfence.breaker.transitions`` counter                   ``target``
``ringfence.in_flight``           up-down counter
``ringfence.queued``              up-down counter
``ringfence.call.duration``       gauge, seconds            ``quantile`` (0.5, 0.95, 0.99)
================================  ========================  ===================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, final

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
except ImportError as error:  # pragma: no cover - exercised only without the extra
    msg = "supervisor.integrations.otel needs opentelemetry-api: pip install 'ringfence[otel]'"
    raise ImportError(msg) from error

from supervisor import DependencyStatus

from . import STATES, TransitionTally, latencies, outcomes

if TYPE_CHECKING:
    from supervisor import Supervisor

__all__ = ("instrument", "Instrumentation")

#: The instrumentation scope's name (what exporters show as the meter).
METER_NAME = "ringfence"


def instrument(
    supervisor: Supervisor, meter_provider: MeterProvider | None = None
) -> Instrumentation:
    """
    Register observable instruments that report *supervisor*'s figures.

    Args:
        supervisor: the supervisor to report on; dependencies registered later are included
            from the next collection on.
        meter_provider: where to register them; ``None`` means the global one
            (``opentelemetry.metrics.set_meter_provider``).

    Returns:
        A handle whose :meth:`~Instrumentation.unregister` stops the reporting.
    """
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    return Instrumentation(supervisor, provider.get_meter(METER_NAME))


@final
class Instrumentation:
    """The instruments :func:`instrument` registered; :meth:`unregister` silences them."""

    def __init__(self, supervisor: Supervisor, meter: Meter) -> None:
        self._supervisor = supervisor
        self._active = True
        self._transitions = TransitionTally()
        observe = self._observer
        meter.create_observable_counter(
            "ringfence.calls",
            callbacks=[observe(_calls)],
            unit="{attempt}",
            description="Attempts that ended with an outcome (success, failure, slow).",
        )
        meter.create_observable_counter(
            "ringfence.rejections",
            callbacks=[observe(_rejections)],
            unit="{call}",
            description="Calls turned away without an attempt, by reason.",
        )
        meter.create_observable_counter(
            "ringfence.retries",
            callbacks=[observe(_retries)],
            unit="{retry}",
            description="Retries made.",
        )
        meter.create_observable_counter(
            "ringfence.fallbacks",
            callbacks=[observe(_fallbacks)],
            unit="{call}",
            description="Calls answered by the fallback.",
        )
        meter.create_observable_gauge(
            "ringfence.breaker.state",
            callbacks=[observe(_state)],
            description="1 for the breaker's current state, 0 for the others.",
        )
        meter.create_observable_counter(
            "ringfence.breaker.transitions",
            callbacks=[self._observe_transitions],
            unit="{transition}",
            description="Breaker transitions by target state (counted from the latest 32).",
        )
        meter.create_observable_up_down_counter(
            "ringfence.in_flight",
            callbacks=[observe(_in_flight)],
            unit="{attempt}",
            description="Attempts running now.",
        )
        meter.create_observable_up_down_counter(
            "ringfence.queued",
            callbacks=[observe(_queued)],
            unit="{call}",
            description="Calls waiting for a bulkhead slot.",
        )
        meter.create_observable_gauge(
            "ringfence.call.duration",
            callbacks=[observe(_duration)],
            unit="s",
            description="Latency quantiles of the latest attempts, in seconds.",
        )

    def unregister(self) -> None:
        """
        Stop reporting: the callbacks observe nothing from now on. (The OpenTelemetry API has no
        way to remove an instrument; a silent callback is how instrumentations retire one.)
        """
        self._active = False

    def _observer(
        self, figures: Callable[[DependencyStatus], Iterator[tuple[dict[str, str], float]]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """A callback reporting *figures* of every dependency, read from ``status()``."""

        def callback(options: CallbackOptions) -> Iterable[Observation]:
            if not self._active:
                return []
            return [
                Observation(value, {"dependency": name, **attributes})
                for name, status in self._supervisor.status().items()
                for attributes, value in figures(status)
            ]

        return callback

    def _observe_transitions(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._active:
            return []
        counts = self._transitions.read(self._supervisor.status())
        return [
            Observation(count, {"dependency": name, "target": target})
            for name, targets in counts.items()
            for target, count in targets.items()
        ]


# Each figure: a dependency's status -> (attributes besides `dependency`, value) pairs.


def _calls(status: DependencyStatus) -> Iterator[tuple[dict[str, str], float]]:
    for outcome, count in outcomes(status):
        yield {"outcome": outcome}, count


def _rejections(status: DependencyStatus) -> Iterator[tuple[dict[str, str], float]]:
    for reason, count in sorted(status.rejected_by.items()):
        yield {"reason": reason}, count


def _retries(status: DependencyStatus) -> Iterator[tuple[dict[str, str], float]]:
    yield {}, status.retries


def _fallbacks(status: DependencyStatus) -> Iterator[tuple[dict[str, str], float]]:
    yield {}, status.fallbacks


def _state(status: DependencyStatus) -> Iterator[tuple[dict[str, str], float]]:
    current = str(status.state)
    for state in STATES:
        yield {"state": state}, 1 if state == current else 0


def _in_flight(status: DependencyStatus) -> Iterator[tuple[dict[str, str], float]]:
    yield {}, status.in_flight


def _queued(status: DependencyStatus) -> Iterator[tuple[dict[str, str], float]]:
    yield {}, status.queued


def _duration(status: DependencyStatus) -> Iterator[tuple[dict[str, str], float]]:
    for quantile, seconds in latencies(status):
        yield {"quantile": quantile}, seconds
