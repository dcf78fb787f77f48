"""
The Prometheus collector: a real registry scraped to the text format, parsed back with
prometheus-client's own parser, exact sample values.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from trio.testing import MockClock

from policies import AdaptiveLimit, Breaker, Bulkhead, Hedge, Priority, RateLimit, Retry, backoff
from supervisor import BreakerOpen, RateLimited, Supervisor
from supervisor.integrations.prometheus import collector
from tests.runtime.conftest import Fake, guard

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """``generate_latest`` parsed back: (sample name, labels) -> value."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def of(samples: Samples, name: str, dependency: str) -> dict[str, float]:
    """The samples of *name* for *dependency*, keyed by their other label (or '')."""
    found: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        if sample != name or ("dependency", dependency) not in labels:
            continue
        rest = [v for k, v in labels if k != "dependency"]
        found[rest[0] if rest else ""] = value
    return found


def blank(samples: Samples, dependency: str) -> dict[str, dict[str, float]]:
    return {
        name: of(samples, name, dependency)
        for name in (
            "ringfence_calls_total",
            "ringfence_rejections_total",
            "ringfence_retries_total",
            "ringfence_fallbacks_total",
            "ringfence_breaker_state",
            "ringfence_breaker_transitions_total",
            "ringfence_in_flight",
            "ringfence_queued",
            "ringfence_call_duration_seconds",
        )
    }


CLOSED = {"closed": 1.0, "open": 0.0, "half_open": 0.0, "isolated": 0.0}
NO_TRANSITIONS = dict.fromkeys(CLOSED, 0.0)
IDLE = {
    "ringfence_calls_total": {
        "success": 0.0,
        "ignored": 0.0,
        "failure": 0.0,
        "slow": 0.0,
        "cut_off": 0.0,
    },
    "ringfence_rejections_total": {},
    "ringfence_retries_total": {"": 0.0},
    "ringfence_fallbacks_total": {"": 0.0},
    "ringfence_breaker_state": CLOSED,
    "ringfence_breaker_transitions_total": NO_TRANSITIONS,
    "ringfence_in_flight": {"": 0.0},
    "ringfence_queued": {"": 0.0},
    "ringfence_call_duration_seconds": {},
}


def flaky(sup: Supervisor) -> Fake:
    """'api': two successes then failures; opens after 2 in a row; one retry; a fallback."""
    fake = Fake("ok", "ok", ConnectionError("down"), ConnectionError("down"))
    sup.register(
        "api",
        fake,
        retry=Retry(attempts=2, backoff=backoff.constant(0.0), retry_on=ConnectionError),
        breaker=Breaker(failure_threshold=2, break_duration=30.0),
        fallback=lambda error, *args: f"cached ({type(error).__name__})",
    )
    sup.register("idle", Fake())
    return fake


async def test_scrape_before_during_and_after(is_trio: bool) -> None:
    """Blank before `async with`; exact counts, open state and rejections after; kept after exit."""
    sup = Supervisor()
    flaky(sup)
    registry = CollectorRegistry()
    registry.register(collector(sup))

    assert IDLE == blank(scrape(registry), "api")
    with guard():
        async with sup:
            assert "ok" == await sup.call("api")
            assert "ok" == await sup.call("api")
            # fails, is retried, fails again: the breaker opens, the fallback answers
            assert "cached (ConnectionError)" == await sup.call("api")
            # rejected by the open breaker, answered by the fallback
            assert "cached (BreakerOpen)" == await sup.call("api")
            during = scrape(registry)
    after = scrape(registry)

    api = blank(during, "api")
    durations = api.pop("ringfence_call_duration_seconds")
    assert {
        "ringfence_calls_total": {
            "success": 2.0,
            "ignored": 0.0,
            "failure": 2.0,
            "slow": 0.0,
            "cut_off": 0.0,
        },
        "ringfence_rejections_total": {"breaker_open": 1.0},
        "ringfence_retries_total": {"": 1.0},
        "ringfence_fallbacks_total": {"": 2.0},
        "ringfence_breaker_state": {"closed": 0.0, "open": 1.0, "half_open": 0.0, "isolated": 0.0},
        "ringfence_breaker_transitions_total": {**NO_TRANSITIONS, "open": 1.0},
        "ringfence_in_flight": {"": 0.0},
        "ringfence_queued": {"": 0.0},
    } == api
    assert {"0.5", "0.95", "0.99"} == set(durations)
    if is_trio:  # virtual time: the fake answers in exactly 0 s
        assert {"0.5": 0.0, "0.95": 0.0, "0.99": 0.0} == durations
    assert IDLE == blank(during, "idle")
    assert during == after


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_slow_calls_and_exact_latency_quantiles() -> None:
    """A success over `slow_call` is outcome="slow"; quantiles are the latencies measured."""
    sup = Supervisor()
    fake = Fake(*[("sleep", 0.5, "ok")] * 8, ("sleep", 3.0, "ok"), ("sleep", 3.0, "ok"))
    sup.register("slowish", fake, breaker=Breaker(failure_threshold=5, slow_call=2.0))
    registry = CollectorRegistry()
    registry.register(collector(sup))
    with guard():
        async with sup:
            for _ in range(10):
                await sup.call("slowish")
    samples = scrape(registry)
    assert {"success": 8.0, "ignored": 0.0, "failure": 0.0, "slow": 2.0, "cut_off": 0.0} == of(
        samples, "ringfence_calls_total", "slowish"
    )
    latency = sup.status("slowish").latency
    assert {"0.5": latency.p50, "0.95": latency.p95, "0.99": latency.p99} == of(
        samples, "ringfence_call_duration_seconds", "slowish"
    )
    assert {"0.5": 0.5, "0.95": 3.0, "0.99": 3.0} == {
        k: round(v, 9) for k, v in of(samples, "ringfence_call_duration_seconds", "slowish").items()
    }


async def test_transitions_count_every_one_however_rarely_scraped() -> None:
    """
    Transitions are lifetime counts: 50 of them between two scrapes all count, though
    status() keeps only the latest 32, and a collector registered late counts the earlier ones.
    """
    sup = Supervisor()
    sup.register("dep", Fake())
    early = CollectorRegistry()
    early.register(collector(sup))
    with guard():
        async with sup:
            assert NO_TRANSITIONS == of(scrape(early), "ringfence_breaker_transitions_total", "dep")
            for _ in range(25):  # 50 transitions, no scrape in between
                await sup.isolate("dep")
                await sup.reset("dep")
            await sup.force_half_open("dep")
            late = CollectorRegistry()
            late.register(collector(sup))
            expected = {"closed": 25.0, "open": 0.0, "half_open": 1.0, "isolated": 25.0}
            assert expected == of(scrape(early), "ringfence_breaker_transitions_total", "dep")
            assert expected == of(scrape(late), "ringfence_breaker_transitions_total", "dep")
    assert 32 == len(sup.status("dep").transitions)


def test_registering_twice_in_one_registry_clashes() -> None:
    """describe() names the metrics, so a second collector in the same registry is refused."""
    sup = Supervisor()
    registry = CollectorRegistry()
    registry.register(collector(sup))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(collector(sup))


async def test_rejection_without_fallback_is_counted_by_reason() -> None:
    """An isolated breaker's rejections are counted under reason breaker_isolated."""
    sup = Supervisor()
    sup.register("dep", Fake())
    registry = CollectorRegistry()
    registry.register(collector(sup))
    with guard():
        async with sup:
            await sup.isolate("dep")
            for _ in range(3):
                with pytest.raises(BreakerOpen):
                    await sup.call("dep")
            samples: Any = scrape(registry)
    assert {"breaker_isolated": 3.0} == of(samples, "ringfence_rejections_total", "dep")
    assert {"closed": 0.0, "open": 0.0, "half_open": 0.0, "isolated": 1.0} == of(
        samples, "ringfence_breaker_state", "dep"
    )


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_hedges_and_their_wins_are_counted() -> None:
    """A stalled attempt raced by a hedge that answers: one hedge started, one win."""
    sup = Supervisor()
    sup.register(
        "search", Fake(("sleep", 10.0, "late"), ("sleep", 0.01, "ok")), hedge=Hedge(delay=0.1)
    )
    registry = CollectorRegistry()
    registry.register(collector(sup))
    with guard():
        async with sup:
            assert "ok" == await sup.call("search")
    samples = scrape(registry)
    assert ({"": 1.0}, {"": 1.0}) == (
        of(samples, "ringfence_hedges_total", "search"),
        of(samples, "ringfence_hedge_wins_total", "search"),
    )
    assert {"success": 1.0, "failure": 0.0, "slow": 0.0, "ignored": 0.0, "cut_off": 0.0} == of(
        samples, "ringfence_calls_total", "search"
    )


async def test_the_concurrency_limit_gauge() -> None:
    """ringfence_concurrency_limit: the bulkhead's limit, fixed or adaptive; none unbounded."""
    sup = Supervisor()
    sup.register("fixed", Fake(), bulkhead=Bulkhead(max_concurrent=7))
    sup.register("adaptive", Fake(), bulkhead=Bulkhead(max_concurrent=AdaptiveLimit(initial=5)))
    sup.register("unbounded", Fake())
    registry = CollectorRegistry()
    registry.register(collector(sup))
    with guard():
        async with sup:
            samples = scrape(registry)
    name = "ringfence_concurrency_limit"
    assert of(samples, name, "fixed") == {"": 7.0}
    assert of(samples, name, "adaptive") == {"": 5.0}
    assert of(samples, name, "unbounded") == {}


async def test_refusals_are_counted_by_priority() -> None:
    """Rate-limit refusals by the caller's priority: a reserve keeps the last unit."""
    sup = Supervisor()
    sup.register("dep", Fake(), rate_limit=RateLimit(2, per=3600, reserve=0.5))
    registry = CollectorRegistry()
    registry.register(collector(sup))
    with guard():
        async with sup:
            for level in (Priority.SHEDDABLE, Priority.CRITICAL):
                with sup.priority(level):
                    await sup.call("dep")
                    with pytest.raises(RateLimited):
                        await sup.call("dep")
            samples: Any = scrape(registry)
    assert {"sheddable": 1.0, "critical": 1.0} == of(
        samples, "ringfence_priority_rejections_total", "dep"
    )
    assert {"rate_limited": 2.0} == of(samples, "ringfence_rejections_total", "dep")
