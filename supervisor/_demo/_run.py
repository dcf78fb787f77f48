"""The demo's main job: clients calling the flaky server through the supervisor."""

from __future__ import annotations

import contextlib
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, TextIO

import anyio
import httpx
import structlog

from policies import Breaker, Bulkhead, Retry, Timeout, backoff, break_duration
from supervisor import (
    BreakerTransition,
    DependencyPaused,
    DependencyStatus,
    EventStream,
    Supervisor,
)

from ._llm import CLIENT_LIMITS, SERVER_QUOTA, StreamCalls, StreamWorkload, register_stream
from ._result import DemoConfig, DemoResult, Outcome, _cause
from ._scenario import SCENARIOS, STREAMED
from ._server import FlakyLLMServer, Quota

# The records live in _result (every demo module imports them from there); they are
# re-exported here for the tests that import them from this module.
__all__ = ("DemoConfig", "DemoResult", "Outcome", "run_demo")


def _quiet(_logger: object, _name: str, _event: MutableMapping[str, Any]) -> Any:
    """
    A structlog processor dropping ringfence's log lines: the demo shows the same decisions
    from ``supervisor.events()`` (the demo is an application, so it may configure structlog).
    """
    raise structlog.DropEvent


async def _collect_events(stream: EventStream, result: DemoResult, clock_started: float) -> None:
    """Breaker transitions and pauses, as they happen; the stream ends with the supervisor."""
    async for event in stream:
        result.events_dropped += event.dropped
        t = event.at - clock_started
        if isinstance(event, BreakerTransition):
            result.transitions.append((t, event.target, event.reason))
        elif isinstance(event, DependencyPaused):
            result.pauses.append((t, event.until - clock_started, event.retry_after))


def _register_calls(
    supervisor: Supervisor,
    ask_llm: Callable[[str], Awaitable[str]],
    fallback: Callable[[Exception, str], str],
    window: float,
    duration: float,
) -> None:
    """The whole-answer scenarios' dependency: ``await supervisor.call("llm", prompt)``."""
    supervisor.register(
        "llm",
        ask_llm,
        # retry_on and record are the defaults: transient, rate_limited and unknown errors
        # are retried (a Retry-After is the minimum delay), transient and unknown ones open
        # the breaker; a 429 is flow control, not a sick server.
        retry=Retry(
            attempts=3,
            backoff=backoff.full(backoff.exponential(base=0.1, factor=2.0, cap=1.0)),
        ),
        breaker=Breaker(
            failure_ratio=0.5,
            min_throughput=10,
            sampling=window,
            break_duration=break_duration.adaptive(
                start=max(0.5, duration / 40),
                factor=2.0,
                cap=max(2.0, duration / 10),
                healthy_after=window,
            ),
        ),
        timeout=Timeout(attempt=1.0, total=3.0),
        bulkhead=Bulkhead(max_concurrent=8, max_queued=16),
        fallback=fallback,
        critical=True,
    )


def _describe(quota: Quota) -> str:
    return f"{quota.rpm:,.0f} RPM, {quota.tpm:,.0f} TPM"


async def _main(config: DemoConfig, out: TextIO) -> DemoResult:
    schedule = SCENARIOS[config.scenario]
    streamed = config.scenario in STREAMED
    result = DemoResult(config=config, phases=schedule.seconds(config.duration), streamed=streamed)
    if streamed:
        result.client_limits = _describe(CLIENT_LIMITS)
        result.server_quota = _describe(SERVER_QUOTA)
    server = FlakyLLMServer(
        schedule, config.duration, config.seed, quota=SERVER_QUOTA if streamed else None
    )
    rng = random.Random(config.seed)
    cached = "a cached summary (the live model is unavailable)"
    window = max(2.0, config.duration / 10)

    async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=64)) as http:

        async def ask_llm(prompt: str) -> str:
            # A plain httpx client: a 429 or a 5xx raises httpx.HTTPStatusError carrying the
            # real response (its Retry-After header included), a refused connection one of
            # httpx's TransportErrors. ringfence's classifier tells them apart: 5xx and
            # transport errors are transient (retried, counted by the breaker), a 429 is
            # rate_limited (retried, not counted) and its Retry-After pauses the dependency.
            response = await http.post(server.url, json={"prompt": prompt})
            response.raise_for_status()
            return str(response.json()["text"])

        fallback_causes: list[str] = []

        def fallback(error: Exception, prompt: str) -> str:
            fallback_causes.append(_cause(error))
            return cached

        supervisor = Supervisor(rng=random.Random(config.seed))
        calls = StreamCalls() if streamed else None
        if calls is not None:
            register_stream(supervisor, http, server, calls, config.duration)
        else:
            _register_calls(supervisor, ask_llm, fallback, window, config.duration)
        server.start()

        started = time.monotonic()
        workload = (
            StreamWorkload(supervisor, server, result, calls, started)
            if calls is not None
            else None
        )
        clock_started = anyio.current_time()  # the supervisor's clock, which events use
        structlog.configure(processors=[_quiet])
        stop_at = started + config.duration
        try:
            async with (
                _dashboard(config, supervisor, result, out),
                anyio.create_task_group() as watchers,
                supervisor,
            ):
                events = supervisor.events(
                    kinds=[BreakerTransition, DependencyPaused], buffer=100_000
                )
                watchers.start_soon(_collect_events, events, result, clock_started)
                async with anyio.create_task_group() as tg:

                    async def client(n: int) -> None:
                        crng = random.Random(rng.random())
                        while time.monotonic() < stop_at:
                            prompt = f"client {n} asks for summary {crng.randrange(10**6)}"
                            t0 = time.monotonic() - started
                            result.issued += 1
                            before = len(fallback_causes)
                            # Nothing awaits between this look and the call's admission,
                            # so it sees the pause the call meets.
                            paused = supervisor.status("llm").pause_remaining > 0
                            try:
                                answer = await supervisor.call("llm", prompt)
                            except Exception as exc:  # a clear error: accounted, never lost
                                kind, cause = "error", _cause(exc)
                            else:
                                if answer == cached and len(fallback_causes) > before:
                                    kind, cause = "fallback", fallback_causes[-1]
                                else:
                                    kind, cause = "success", ""
                            result.outcomes.append(
                                Outcome(t0, time.monotonic() - started, kind, cause, paused)
                            )
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
                            (
                                time.monotonic() - started,
                                status.state.value,
                                server.phase_now(),
                                0,
                                0,
                            )
                        )

                    for n in range(config.clients):
                        if workload is not None:
                            tg.start_soon(workload.client, n, random.Random(rng.random()), stop_at)
                        else:
                            tg.start_soon(client, n)
                    tg.start_soon(sampler)
                    tg.start_soon(_view, config, supervisor, server, result, started, stop_at, out)
                final = supervisor.status("llm")
                result.retries = final.retries
                result.hedges, result.hedge_wins = final.hedges, final.hedge_wins
                result.rejected_by = dict(final.rejected_by)
                result.in_flight_at_end = final.in_flight
                result.queued_at_end = final.queued
        finally:
            structlog.reset_defaults()
            result.elapsed = time.monotonic() - started
            server.stop()
            result.server_requests = dict(server.requests)
            result.server_answers = dict(sorted(server.answers.items()))
            result.quota_429s = server.quota_429s
            result.quota_429_at = list(server.quota_429_at)
            result.server_streams = dict(server.streams)
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
    out.write(
        "# one line a second: phase, breaker and pause are the state now; 'last 1s' is a rate"
        " (calls ended in the last second); 'totals' count since the start\n"
    )
    next_line = started
    while time.monotonic() < stop_at:
        now = time.monotonic()
        if now >= next_line:
            status = supervisor.status("llm")
            out.write(_line(status, server.phase_now(), result, now - started) + "\n")
            out.flush()
            next_line += 1.0
        await anyio.sleep(0.05)


def _line(status: DependencyStatus, phase: str, result: DemoResult, elapsed: float) -> str:
    """One ``--no-live`` line."""
    recent = sum(1 for o in result.outcomes if o.end >= elapsed - 1.0)
    paused = f"{status.pause_remaining:.2f}s" if status.paused_until is not None else "no"
    return (
        f"t={elapsed:5.1f}s phase={phase:<12} breaker={status.state.value:<9}"
        f" paused={paused:<5} in_flight={status.in_flight:<2} queued={status.queued:<2}"
        f" | last 1s: calls={recent:<4}"
        f" | totals: ok={result.count('success'):<5} fallback={result.count('fallback'):<5}"
        f" retries={status.retries:<5} rejected={status.rejected:<5}"
        f" (paused {status.rejected_by.get('paused', 0)})"
        f" | break={status.break_duration or 0:.1f}s"
        + (_limits_left(status) if status.rate_limit else "")
    )


def _limits_left(status: DependencyStatus) -> str:
    """The rate limits' units left now (requests, then tokens, in the llm scenario)."""
    return " | left now: " + ", ".join(f"{left:.0f}" for left in status.rate_limit)


@contextlib.asynccontextmanager
async def _dashboard(
    config: DemoConfig, supervisor: Supervisor, result: DemoResult, out: TextIO
) -> AsyncIterator[None]:
    """With ``web``, the dashboard served while the block runs; else nothing."""
    if not config.web:
        yield
        return
    from ._web import dashboard

    async with dashboard(supervisor, config.web_port, out) as url:
        result.dashboard_url = url
        yield


def run_demo(config: DemoConfig, out: TextIO = sys.stdout) -> DemoResult:
    """Run the demo on the configured backend and return everything it observed."""
    if config.scenario not in SCENARIOS:
        msg = f"unknown scenario {config.scenario!r}; choose from {', '.join(SCENARIOS)}"
        raise ValueError(msg)
    if config.web and config.backend != "asyncio":
        msg = "the dashboard (web=True) needs the asyncio backend: uvicorn runs on asyncio only"
        raise ValueError(msg)

    async def main() -> DemoResult:
        return await _main(config, out)

    return anyio.run(main, backend=config.backend)
