"""
The OpenTelemetry instruments, collected by the real SDK's ``InMemoryMetricReader``: exact data
points, the same figures as the Prometheus collector.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from trio.testing import MockClock

from policies import AdaptiveLimit, Breaker, Bulkhead, Hedge, Priority, RateLimit, Retry, backoff
from supervisor import BreakerOpen, RateLimited, Supervisor
from supervisor.integrations.otel import instrument
from tests.runtime.conftest import Fake, guard

pytestmark = pytest.mark.anyio

Points = dict[str, dict[frozenset[tuple[str, object]], float]]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    """An in-memory reader."""
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    """A meter provider collected by *reader*, shut down after the test."""
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


def collect(reader: InMemoryMetricReader) -> Points:
    """One collection: instrument name -> {attributes: value}."""
    data = reader.get_metrics_data()
    points: Points = {}
    if data is None:
        return points
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert "ringfence" == scope.scope.name
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attributes = frozenset((point.attributes or {}).items())
                    points.setdefault(metric.name, {})[attributes] = point.value  # type: ignore[union-attr]
    return points


def of(points: Points, name: str, dependency: str) -> dict[str, float]:
    """*name*'s points for *dependency*, keyed by their other attribute's value (or '')."""
    found: dict[str, float] = {}
    for attributes, value in points.get(name, {}).items():
        if ("dependency", dependency) not in attributes:
            continue
        rest = [str(v) for k, v in attributes if k != "dependency"]
        found[rest[0] if rest else ""] = value
    return found


NAMES = (
    "ringfence.calls",
    "ringfence.rejections",
    "ringfence.retries",
    "ringfence.fallbacks",
    "ringfence.breaker.state",
    "ringfence.breaker.transitions",
    "ringfence.in_flight",
    "ringfence.queued",
    "ringfence.call.duration",
)
NO_TRANSITIONS = {"closed": 0, "open": 0, "half_open": 0, "isolated": 0}
IDLE = {
    "ringfence.calls": {"success": 0, "ignored": 0, "failure": 0, "slow": 0, "cut_off": 0},
    "ringfence.rejections": {},
    "ringfence.retries": {"": 0},
    "ringfence.fallbacks": {"": 0},
    "ringfence.breaker.state": {"closed": 1, "open": 0, "half_open": 0, "isolated": 0},
    "ringfence.breaker.transitions": NO_TRANSITIONS,
    "ringfence.in_flight": {"": 0},
    "ringfence.queued": {"": 0},
    "ringfence.call.duration": {},
}


def table(points: Points, dependency: str) -> dict[str, dict[str, float]]:
    return {name: of(points, name, dependency) for name in NAMES}


async def test_data_points_before_during_and_after(
    reader: InMemoryMetricReader, provider: MeterProvider, is_trio: bool
) -> None:
    """Blank before `async with`; exact counts and the open state after failures; kept after."""
    sup = Supervisor()
    sup.register(
        "api",
        Fake("ok", "ok", ConnectionError("down"), ConnectionError("down")),
        retry=Retry(attempts=2, backoff=backoff.constant(0.0), retry_on=ConnectionError),
        breaker=Breaker(failure_threshold=2, break_duration=30.0),
        fallback=lambda error, *args: "cached",
    )
    sup.register("idle", Fake())
    instrument(sup, meter_provider=provider)

    assert IDLE == table(collect(reader), "api")
    with guard():
        async with sup:
            for _ in range(4):
                await sup.call("api")
            during = collect(reader)
    after = collect(reader)

    api = table(during, "api")
    durations = api.pop("ringfence.call.duration")
    assert {
        "ringfence.calls": {"success": 2, "ignored": 0, "failure": 2, "slow": 0, "cut_off": 0},
        "ringfence.rejections": {"breaker_open": 1},
        "ringfence.retries": {"": 1},
        "ringfence.fallbacks": {"": 2},
        "ringfence.breaker.state": {"closed": 0, "open": 1, "half_open": 0, "isolated": 0},
        "ringfence.breaker.transitions": {**NO_TRANSITIONS, "open": 1},
        "ringfence.in_flight": {"": 0},
        "ringfence.queued": {"": 0},
    } == api
    assert {"0.5", "0.95", "0.99"} == set(durations)
    if is_trio:  # virtual time: the fake answers in exactly 0 s
        assert {"0.5": 0.0, "0.95": 0.0, "0.99": 0.0} == durations
    assert IDLE == table(during, "idle")
    assert during == after


async def test_unregister_silences_every_instrument(
    reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    """After unregister(), a collection carries no ringfence data point."""
    sup = Supervisor()
    sup.register("dep", Fake())
    instrumentation = instrument(sup, meter_provider=provider)
    with guard():
        async with sup:
            await sup.call("dep")
            assert {"success": 1, "ignored": 0, "failure": 0, "slow": 0, "cut_off": 0} == of(
                collect(reader), "ringfence.calls", "dep"
            )
            instrumentation.unregister()
            assert {} == {name: pts for name, pts in collect(reader).items() if pts}


async def test_isolated_dependency_and_its_rejections(
    reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    """Isolating shows state isolated, one transition to it, and rejections by reason."""
    sup = Supervisor()
    sup.register("dep", Fake())
    instrument(sup, meter_provider=provider)
    with guard():
        async with sup:
            await sup.isolate("dep")
            for _ in range(2):
                with pytest.raises(BreakerOpen):
                    await sup.call("dep")
            points = collect(reader)
    assert {"closed": 0, "open": 0, "half_open": 0, "isolated": 1} == of(
        points, "ringfence.breaker.state", "dep"
    )
    assert {**NO_TRANSITIONS, "isolated": 1} == of(points, "ringfence.breaker.transitions", "dep")
    assert {"breaker_isolated": 2} == of(points, "ringfence.rejections", "dep")


async def test_transitions_are_lifetime_counts(
    reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    """50 transitions between two collections all count, past the 32 status() keeps."""
    sup = Supervisor()
    sup.register("dep", Fake())
    instrument(sup, meter_provider=provider)
    with guard():
        async with sup:
            assert NO_TRANSITIONS == of(collect(reader), "ringfence.breaker.transitions", "dep")
            for _ in range(25):
                await sup.isolate("dep")
                await sup.reset("dep")
            await sup.force_half_open("dep")
            points = collect(reader)
    assert {"closed": 25, "open": 0, "half_open": 1, "isolated": 25} == of(
        points, "ringfence.breaker.transitions", "dep"
    )
    assert 32 == len(sup.status("dep").transitions)


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_hedges_and_their_wins_are_counted(
    reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    """A stalled attempt raced by a hedge that answers: one hedge started, one win."""
    sup = Supervisor()
    sup.register(
        "search", Fake(("sleep", 10.0, "late"), ("sleep", 0.01, "ok")), hedge=Hedge(delay=0.1)
    )
    instrument(sup, meter_provider=provider)
    with guard():
        async with sup:
            assert "ok" == await sup.call("search")
    points = collect(reader)
    assert ({"": 1}, {"": 1}) == (
        of(points, "ringfence.hedges", "search"),
        of(points, "ringfence.hedge_wins", "search"),
    )


async def test_the_concurrency_limit_gauge(
    reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    """ringfence.concurrency.limit: the bulkhead's limit, fixed or adaptive; none unbounded."""
    sup = Supervisor()
    sup.register("fixed", Fake(), bulkhead=Bulkhead(max_concurrent=7))
    sup.register("adaptive", Fake(), bulkhead=Bulkhead(max_concurrent=AdaptiveLimit(initial=5)))
    sup.register("unbounded", Fake())
    instrument(sup, meter_provider=provider)
    with guard():
        async with sup:
            points = collect(reader)
    name = "ringfence.concurrency.limit"
    assert of(points, name, "fixed") == {"": 7}
    assert of(points, name, "adaptive") == {"": 5}
    assert of(points, name, "unbounded") == {}


async def test_refusals_are_counted_by_priority(
    reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    """Rate-limit refusals by the caller's priority: a reserve keeps the last unit."""
    sup = Supervisor()
    sup.register("dep", Fake(), rate_limit=RateLimit(2, per=3600, reserve=0.5))
    instrument(sup, meter_provider=provider)
    with guard():
        async with sup:
            for level in (Priority.SHEDDABLE, Priority.CRITICAL):
                with sup.priority(level):
                    await sup.call("dep")
                    with pytest.raises(RateLimited):
                        await sup.call("dep")
            points = collect(reader)
    assert {"sheddable": 1, "critical": 1} == of(points, "ringfence.priority_rejections", "dep")
    assert {"rate_limited": 2} == of(points, "ringfence.rejections", "dep")
