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
``ringfence.calls``               counter                   ``outcome`` (success/ignored/failure/
                                                            slow/cut_off)
``ringfence.requests``            counter                   ``result`` (success/fallback/error)
``ringfence.rejections``          counter                   ``reason``
``ringfence.priority_rejections`` counter                   ``priority`` (critical/default/
                                                            sheddable/the level's number)
``ringfence.retries``             counter
``ringfence.fallbacks``           counter
``ringfence.hedges``              counter
``ringfence.hedge_wins``          counter
``ringfence.breaker.state``       gauge (1 current, else 0) ``state``
``ringfence.breaker.transitions`` counter                   ``target``
``ringfence.in_flight``           up-down counter
``ringfence.queued``              up-down counter
``ringfence.concurrency.limit``   gauge                     (none; absent when unbounded)
``ringfence.call.duration``       gauge, seconds            ``quantile`` (0.5, 0.95, 0.99)
================================  ========================  ===================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import TYPE_CHECKING, Final, Literal, final

import attrs

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
except ImportError as error:  # pragma: no cover - exercised only without the extra
    msg = "supervisor.integrations.otel needs opentelemetry-api: pip install 'ringfence[otel]'"
    raise ImportError(msg) from error

from supervisor import DependencyStatus

from . import breaker_states, latencies, outcomes, requests, transitions

if TYPE_CHECKING:
    from supervisor import Supervisor

__all__ = ("instrument", "Instrumentation")

#: The instrumentation scope's name (what exporters show as the meter).
METER_NAME = "ringfence"

#: A dependency's figures for one instrument: ``(attributes besides dependency, value)`` pairs.
Figures = Callable[[DependencyStatus], Iterable[tuple[dict[str, str], float]]]


def _one(read: Callable[[DependencyStatus], float]) -> Figures:
    """A single data point per dependency, with no attribute besides ``dependency``."""
    return lambda status: [({}, read(status))]


def _by(key: str, read: Callable[[DependencyStatus], Iterable[tuple[str, float]]]) -> Figures:
    """One data point per ``(label, value)`` pair *read* gives, the label as attribute *key*."""
    return lambda status: [({key: label}, value) for label, value in read(status)]


@final
@attrs.frozen
class _Spec:
    """One observable instrument: what the module docstring's table lists."""

    kind: Literal["counter", "gauge", "up_down_counter"]
    name: str
    figures: Figures
    unit: str
    description: str


_INSTRUMENTS: Final = (
    _Spec(
        "counter",
        "ringfence.calls",
        _by("outcome", outcomes),
        "{attempt}",
        "Attempts that reached the dependency, by outcome"
        " (success, ignored, failure, slow, cut_off).",
    ),
    _Spec(
        "counter",
        "ringfence.requests",
        _by("result", requests),
        "{call}",
        "Callers' calls that have ended, by result (success, fallback, error).",
    ),
    _Spec(
        "counter",
        "ringfence.rejections",
        _by("reason", lambda status: sorted(status.rejected_by.items())),
        "{call}",
        "Calls turned away without an attempt, by reason.",
    ),
    _Spec(
        "counter",
        "ringfence.priority_rejections",
        _by("priority", lambda status: sorted(status.rejected_by_priority.items())),
        "{call}",
        "Calls refused a bulkhead slot or a rate-limit turn, by the caller's priority.",
    ),
    _Spec("counter", "ringfence.retries", _one(attrgetter("retries")), "{retry}", "Retries made."),
    _Spec(
        "counter",
        "ringfence.fallbacks",
        _one(attrgetter("fallbacks")),
        "{call}",
        "Calls answered by the fallback.",
    ),
    _Spec(
        "counter", "ringfence.hedges", _one(attrgetter("hedges")), "{attempt}", "Hedges started."
    ),
    _Spec(
        "counter",
        "ringfence.hedge_wins",
        _one(attrgetter("hedge_wins")),
        "{call}",
        "Calls answered by a hedge.",
    ),
    _Spec(
        "gauge",
        "ringfence.breaker.state",
        _by("state", breaker_states),
        "",
        "1 for the breaker's current state, 0 for the others.",
    ),
    _Spec(
        "counter",
        "ringfence.breaker.transitions",
        _by("target", transitions),
        "{transition}",
        "Breaker transitions by target state, since the supervisor started.",
    ),
    _Spec(
        "up_down_counter",
        "ringfence.in_flight",
        _one(attrgetter("in_flight")),
        "{attempt}",
        "Attempts running now.",
    ),
    _Spec(
        "up_down_counter",
        "ringfence.queued",
        _one(attrgetter("queued")),
        "{call}",
        "Calls waiting for a bulkhead slot.",
    ),
    _Spec(
        "gauge",
        "ringfence.concurrency.limit",
        lambda status: [] if status.limit is None else [({}, status.limit)],
        "{call}",
        "Calls allowed to run at once now (the bulkhead's, fixed or adaptive).",
    ),
    _Spec(
        "gauge",
        "ringfence.call.duration",
        _by("quantile", latencies),
        "s",
        "Latency quantiles of the latest attempts, in seconds.",
    ),
)


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
        create = {
            "counter": meter.create_observable_counter,
            "gauge": meter.create_observable_gauge,
            "up_down_counter": meter.create_observable_up_down_counter,
        }
        for spec in _INSTRUMENTS:
            create[spec.kind](
                spec.name,
                callbacks=[self._observer(spec.figures)],
                unit=spec.unit,
                description=spec.description,
            )

    def unregister(self) -> None:
        """
        Stop reporting: the callbacks observe nothing from now on. (The OpenTelemetry API has no
        way to remove an instrument; a silent callback is how instrumentations retire one.)
        """
        self._active = False

    def _observer(self, figures: Figures) -> Callable[[CallbackOptions], Iterable[Observation]]:
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
