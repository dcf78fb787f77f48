"""The demo's main job: clients calling the flaky server through the supervisor."""

from __future__ import annotations

import math
import random
import sys
import time
from collections import Counter
from collections.abc import MutableMapping
from typing import Any, TextIO

import anyio
import attrs
import httpx
import structlog

from policies import Breaker, Bulkhead, Retry, Timeout, backoff, break_duration
from supervisor import Supervisor

from ._scenario import SCENARIOS
from ._server import FlakyLLMServer

__all__ = ("DemoConfig", "DemoResult", "Outcome", "run_demo")


class ServerError(Exception):
    """The API answered 5xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"server answered {status}")
        self.status = status


class RateLimited(Exception):
    """The API answered 429; ``retry_after`` (seconds) is honoured by ringfence's retry."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited, retry after {retry_after}s")
        self.retry_after = retry_after


@attrs.frozen(kw_only=True)
class DemoConfig:
    duration: float = 40.0
    clients: int = 20
    seed: int = 7
    scenario: str = "outage"
    backend: str = "asyncio"
    live: bool = True
    plot: str | None = None


@attrs.frozen
class Outcome:
    """One client request: when it started and ended (seconds since the start), and how."""

    start: float
    end: float
    kind: str  # "success" | "fallback" | "error"
    cause: str  # for fallbacks and errors: the exception type name


@attrs.define
class DemoResult:
    config: DemoConfig
    outcomes: list[Outcome] = attrs.Factory(list)
    issued: int = 0
    retries: int = 0
    transitions: list[tuple[float, str, str]] = attrs.Factory(list)  # (t, target, reason)
    states: list[tuple[float, str, str, int, int]] = attrs.Factory(
        list
    )  # t, state, phase, in_flight, queued
    phases: list[tuple[str, float, float]] = attrs.Factory(list)
    server_requests: dict[str, int] = attrs.Factory(dict)
    elapsed: float = 0.0

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)

    def causes(self, kind: str) -> Counter[str]:
        return Counter(o.cause for o in self.outcomes if o.kind == kind)

    def kept_away(self) -> int:
        """Calls the open breaker answered at once instead of sending them to the server."""
        return sum(1 for o in self.outcomes if o.cause == "BreakerOpen")

    def time_in_states(self) -> dict[str, float]:
        spent: dict[str, float] = {}
        for (t0, state, *_), (t1, *_) in zip(self.states, self.states[1:], strict=False):
            spent[state] = spent.get(state, 0.0) + (t1 - t0)
        return spent

    def latency(self, q: float) -> float:
        ordered = sorted(o.end - o.start for o in self.outcomes)
        if not ordered:
            return math.nan
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _counting_processor(result: DemoResult, started: float) -> Any:
    """A structlog processor (the demo is an application, so it may configure structlog)."""

    def process(_logger: object, _name: str, event: MutableMapping[str, Any]) -> Any:
        name = event.get("event")
        if name == "ringfence.retry_scheduled":
            result.retries += 1
        elif isinstance(name, str) and name.startswith("ringfence.breaker_"):
            result.transitions.append(
                (time.monotonic() - started, str(event.get("target")), str(event.get("reason")))
            )
        raise structlog.DropEvent

    return process


async def _main(config: DemoConfig, out: TextIO) -> DemoResult:
    schedule = SCENARIOS[config.scenario]
    result = DemoResult(config=config, phases=schedule.seconds(config.duration))
    server = FlakyLLMServer(schedule, config.duration, config.seed)
    rng = random.Random(config.seed)
    cached = "a cached summary (the live model is unavailable)"
    window = max(2.0, config.duration / 10)

    async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=64)) as http:

        async def ask_llm(prompt: str) -> str:
            response = await http.post(server.url, json={"prompt": prompt})
            if response.status_code == 429:
                raise RateLimited(float(response.headers.get("Retry-After", "1")))
            if response.status_code >= 500:
                raise ServerError(response.status_code)
            response.raise_for_status()
            return str(response.json()["text"])

        fallback_causes: list[str] = []

        def fallback(error: BaseException, prompt: str) -> str:
            fallback_causes.append(type(error).__name__)
            return cached

        supervisor = Supervisor(rng=random.Random(config.seed))
        supervisor.register(
            "llm",
            ask_llm,
            retry=Retry(
                attempts=3,
                backoff=backoff.full(backoff.exponential(base=0.1, factor=2.0, cap=1.0)),
                retry_on=(ServerError, RateLimited, httpx.TransportError, TimeoutError),
            ),
            breaker=Breaker(
                failure_ratio=0.5,
                min_throughput=10,
                sampling=window,
                # A 429 is flow control, not a failure: the API answered. Retry-After handles
                # it; only errors and timeouts count towards opening the breaker.
                record=(ServerError, httpx.TransportError, TimeoutError),
                break_duration=break_duration.adaptive(
                    start=max(0.5, config.duration / 40),
                    factor=2.0,
                    cap=max(2.0, config.duration / 10),
                    healthy_after=window,
                ),
            ),
            timeout=Timeout(attempt=1.0, total=3.0),
            bulkhead=Bulkhead(max_concurrent=8, max_queued=16),
            fallback=fallback,
            critical=True,
        )
        server.start()
        started = time.monotonic()
        structlog.configure(processors=[_counting_processor(result, started)])
        stop_at = started + config.duration
        try:
            async with supervisor, anyio.create_task_group() as tg:

                async def client(n: int) -> None:
                    crng = random.Random(rng.random())
                    while time.monotonic() < stop_at:
                        prompt = f"client {n} asks for summary {crng.randrange(10**6)}"
                        t0 = time.monotonic() - started
                        result.issued += 1
                        before = len(fallback_causes)
                        try:
                            answer = await supervisor.call("llm", prompt)
                        except Exception as exc:  # a clear error: accounted, never lost
                            kind, cause = "error", type(exc).__name__
                        else:
                            if answer == cached and len(fallback_causes) > before:
                                kind, cause = "fallback", fallback_causes[-1]
                            else:
                                kind, cause = "success", ""
                        result.outcomes.append(Outcome(t0, time.monotonic() - started, kind, cause))
                        await anyio.sleep(crng.uniform(0.02, 0.1))

                async def sampler() -> None:
                    while time.monotonic() < stop_at:
                        status = supervisor.status("llm")
                        result.states.append(
                            (
                                time.monotonic() - started,
                                status.state.value,
                                server.phase_now(),
                                status.in_flight,
                                status.queued,
                            )
                        )
                        await anyio.sleep(0.1)
                    status = supervisor.status("llm")
                    result.states.append(
                        (time.monotonic() - started, status.state.value, server.phase_now(), 0, 0)
                    )

                for n in range(config.clients):
                    tg.start_soon(client, n)
                tg.start_soon(sampler)
                tg.start_soon(_view, config, supervisor, server, result, started, stop_at, out)
        finally:
            structlog.reset_defaults()
            result.elapsed = time.monotonic() - started
            server.stop()
            result.server_requests = dict(server.requests)
    return result


async def _view(
    config: DemoConfig,
    supervisor: Supervisor,
    server: FlakyLLMServer,
    result: DemoResult,
    started: float,
    stop_at: float,
    out: TextIO,
) -> None:
    if config.live:
        from ._view import live_view

        await live_view(supervisor, server, result, started, stop_at)
        return
    next_line = started
    while time.monotonic() < stop_at:
        now = time.monotonic()
        if now >= next_line:
            status = supervisor.status("llm")
            recent = sum(1 for o in result.outcomes if o.end >= now - started - 1.0)
            out.write(
                f"t={now - started:5.1f}s phase={server.phase_now():<12} "
                f"breaker={status.state.value:<9} in_flight={status.in_flight:<2} "
                f"queued={status.queued:<2} calls/s={recent:<4} ok={result.count('success'):<5}"
                f" fallback={result.count('fallback'):<5} retries={result.retries:<5}"
                f" break={status.break_duration or 0:.1f}s\n"
            )
            out.flush()
            next_line += 1.0
        await anyio.sleep(0.05)


def run_demo(config: DemoConfig, out: TextIO = sys.stdout) -> DemoResult:
    """Run the demo on the configured backend and return everything it observed."""
    if config.scenario not in SCENARIOS:
        msg = f"unknown scenario {config.scenario!r}; choose from {', '.join(SCENARIOS)}"
        raise ValueError(msg)

    async def main() -> DemoResult:
        return await _main(config, out)

    return anyio.run(main, backend=config.backend)
