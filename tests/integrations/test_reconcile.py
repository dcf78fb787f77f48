"""
Counts that reconcile (issue 21): a mix of calls (a success, a retried failure, an ignored 4xx,
a fallback, a deadline cut-off, a rejection) is counted once per caller in ``status()`` and in
both metric backends, and what each caller got adds up:
``requests == successes + fallbacks + raised``. The expected figures are what the callers saw,
counted as they saw it, not written down beforehand. Both backends run on virtual time: the
0.05 s deadline that cuts one call off is exact, not spent early by a stalled machine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

from policies import Breaker, Retry, Timeout, backoff
from supervisor import (
    BreakerOpen,
    DeadlineExceeded,
    RetryScheduled,
    Supervisor,
)
from supervisor.integrations.otel import instrument
from supervisor.integrations.prometheus import collector
from tests.integrations.test_otel import collect
from tests.integrations.test_otel import of as otel_of
from tests.integrations.test_prometheus import of as prom_of
from tests.integrations.test_prometheus import scrape
from tests.runtime._virtual_loop import anyio_backend as anyio_backend
from tests.runtime.conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio


class HTTPError(Exception):
    """An SDK's status error: a 400 is the caller's mistake, which the breaker ignores."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class Broken(Exception):
    """An error of unknown kind: a failure to the breaker, not retried."""


def is_503(error: Exception) -> bool:
    return getattr(error, "status_code", None) == 503


@pytest.fixture
def provider() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


async def test_calls_attempts_and_metrics_reconcile(
    provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    sup = Supervisor()
    fake = Fake(
        "ok",  # a success
        HTTPError(503),  # retried (its status goes on the retry event) ...
        "ok",  # ... and then answered
        HTTPError(400),  # ignored by the breaker, not retried: the caller gets it
        Broken(),  # a failure the fallback answers
        Gate(),  # never answers: cut off by the total deadline
    )
    sup.register(
        "api",
        fake,
        retry=Retry(attempts=2, backoff=backoff.constant(0.0), retry_on=is_503),
        breaker=Breaker(failure_threshold=100),
        timeout=Timeout(total=0.05),
        fallback=lambda error, *args: "fallback",
        fallback_on=Broken,
    )
    registry = CollectorRegistry()
    registry.register(collector(sup))
    meter_provider, reader = provider
    instrument(sup, meter_provider=meter_provider)

    seen: Counter[str] = Counter()  # what callers got
    with guard():
        async with sup:
            async with sup.events(kinds=[RetryScheduled]) as events:
                for _ in range(5):
                    try:
                        answer = await sup.call("api")
                    except (DeadlineExceeded, HTTPError):  # a cut-off, the 400
                        seen["error"] += 1
                    else:
                        seen["fallback" if answer == "fallback" else "success"] += 1
                async for event in events:
                    assert isinstance(event, RetryScheduled)
                    assert (1, "HTTPError", 503) == (event.attempt, event.error, event.status)
                    break
            await sup.isolate("api")
            with pytest.raises(BreakerOpen):
                await sup.call("api", "rejected")  # a rejection: fallback_on is Broken only
            seen["error"] += 1
            status = sup.status("api")
            prometheus = scrape(registry)
            otel = collect(reader)

    made = 6
    assert {"success": 2, "fallback": 1, "error": 3} == dict(seen)  # the mix played as meant
    assert made == sum(seen.values())
    # status(): one count per caller, split as the callers saw it, with nothing to derive
    assert (made, seen["success"], seen["fallback"], seen["error"]) == (
        status.requests,
        status.successes,
        status.fallbacks,
        status.raised,
    )
    assert status.requests == status.successes + status.fallbacks + status.raised
    # the attempts behind them: 5 reached the dependency (one retried), one was turned away
    assert (fake.count, 1, 1, 1) == (
        status.calls + status.cut_off,
        status.ignored,
        status.cut_off,
        status.rejected,
    )
    assert 2 == status.failures  # the 503 and Broken
    attempts = {
        "success": seen["success"],
        "ignored": status.ignored,
        "failure": status.failures,
        "slow": 0,
        "cut_off": status.cut_off,
    }
    requests = {"success": seen["success"], "fallback": seen["fallback"], "error": seen["error"]}
    for figures, attempts_name, requests_name in (
        (
            lambda name: prom_of(prometheus, name, "api"),
            "ringfence_calls_total",
            "ringfence_requests_total",
        ),
        (lambda name: otel_of(otel, name, "api"), "ringfence.calls", "ringfence.requests"),
    ):
        assert attempts == figures(attempts_name)
        assert fake.count == sum(figures(attempts_name).values())
        assert requests == figures(requests_name)
        assert made == sum(figures(requests_name).values())
