"""The demo's main job: clients calling the flaky server through the supervisor."""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, TextIO

import anyio
import attrs
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

from ._scenario import SCENARIOS, STREAMED
from ._server import FlakyLLMServer, Quota

__all__ = ("DemoConfig", "DemoResult", "Outcome", "run_demo")


@attrs.frozen(kw_only=True)
class DemoConfig:
    duration: float = 40.0
    clients: int = 20
    seed: int = 7
    scenario: str = "llm"
    backend: str = "asyncio"
    live: bool = True
    plot: str | None = None
    #: serve the dashboard beside the demo (asyncio only)
    web: bool = False
    #: the dashboard's port: None for 8642 or a free one when it is busy, 0 for a free one
    web_port: int | None = None


@attrs.frozen
class Outcome:
    """One client request: when it started and ended (seconds since the start), and how."""

    start: float
    end: float
    kind: str  # "success" | "fallback" | "error"
    cause: str  # for fallbacks and errors: the exception type name (and an HTTP status)
    #: the dependency was paused (a Retry-After) when the call arrived: it waited for the
    #: pause to end, or was answered at once with ringfence's RateLimited
    arrived_paused: bool = False
    # Streams (the llm scenario) only:
    #: when the first item reached the caller (the fallback's, for a fallback)
    first_token: float | None = None
    #: items that reached the caller
    tokens: int = 0
    #: requests the function sent (attempts that passed admission)
    attempts: int = 0
    #: when the first of them was sent (None: none was; rejected at admission)
    sent: float | None = None
    #: the server's quota would have refused this request had it gone when it was asked for
    over_quota: bool = False

    @property
    def mid_stream(self) -> bool:
        """Failed after items reached the caller: passed on unchanged, never retried."""
        return self.kind == "error" and self.tokens > 0


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
    #: each DependencyPaused event: (t, until, retry_after), seconds since the start
    pauses: list[tuple[float, float, float]] = attrs.Factory(list)
    #: status("llm").rejected_by at the end: why calls were turned away -> how many
    rejected_by: dict[str, int] = attrs.Factory(dict)
    events_dropped: int = 0
    phases: list[tuple[str, float, float]] = attrs.Factory(list)
    server_requests: dict[str, int] = attrs.Factory(dict)
    server_answers: dict[int, int] = attrs.Factory(dict)  # HTTP status -> answers
    elapsed: float = 0.0
    #: where ``--web`` served the dashboard
    dashboard_url: str | None = None
    #: in_flight and queued of the dependency once every client had ended (0 and 0: no slot
    #: or queue place was leaked)
    in_flight_at_end: int = 0
    queued_at_end: int = 0
    # The llm scenario (streams under request and token limits):
    streamed: bool = False
    #: 429s the server answered because a request was over its quota
    quota_429s: int = 0
    #: when the server answered each of them, seconds since the start
    quota_429_at: list[float] = attrs.Factory(list)
    #: how the server's streamed answers ended: done, cut, stalled
    server_streams: dict[str, int] = attrs.Factory(dict)
    #: "540 RPM, 36,000 TPM" and the like, for the summary
    client_limits: str = ""
    server_quota: str = ""

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)

    def causes(self, kind: str) -> Counter[str]:
        return Counter(o.cause for o in self.outcomes if o.kind == kind)

    def kept_away(self) -> int:
        """Calls the open breaker answered at once instead of sending them to the server."""
        return sum(1 for o in self.outcomes if o.cause == "BreakerOpen")

    def rejected_by_pause(self) -> int:
        """Attempts the pause turned away at once (``RateLimited``), ringfence's own count."""
        return self.rejected_by.get("paused", 0)

    def waited_for_pause(self) -> int:
        """
        Calls that arrived during a pause and waited for it to end instead of meeting a 429.
        A call that waited and was then turned away on a retry is counted as rejected only.
        """
        return sum(1 for o in self.outcomes if o.arrived_paused and o.cause != "RateLimited")

    def kept_by_pause(self) -> int:
        """Calls the pause kept from the rate-limited server: turned away, or held back."""
        return self.rejected_by_pause() + self.waited_for_pause()

    def paused_spans(self) -> list[tuple[float, float]]:
        """The pauses as disjoint (start, end) spans; a later 429 may extend a running one."""
        spans: list[tuple[float, float]] = []
        for t, until, _ in sorted(self.pauses):
            if spans and t <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], until))
            else:
                spans.append((t, until))
        return spans

    def time_paused(self) -> float:
        return sum(end - start for start, end in self.paused_spans())

    def time_in_states(self) -> dict[str, float]:
        spent: dict[str, float] = {}
        for (t0, state, *_), (t1, *_) in zip(self.states, self.states[1:], strict=False):
            spent[state] = spent.get(state, 0.0) + (t1 - t0)
        return spent

    def latency(self, q: float) -> float:
        return _quantile([o.end - o.start for o in self.outcomes], q)

    # -- streams ----------------------------------------------------------------------------

    def ttft(self, q: float) -> float:
        """
        Time to first token, from the moment the client asked (waiting for a turn, the pause
        and retries included), over the streams whose tokens came from the server.
        """
        return _quantile(
            [
                o.first_token - o.start
                for o in self.outcomes
                if o.first_token is not None and o.kind != "fallback"
            ],
            q,
        )

    def admission_wait(self, q: float) -> float:
        """From asking to the first request sent (a rate-limit turn, a pause, a queue place)."""
        return _quantile([o.sent - o.start for o in self.outcomes if o.sent is not None], q)

    def retried_before_first_token(self) -> list[Outcome]:
        """Streams that sent more than one request: every retry comes before the first token."""
        return [o for o in self.outcomes if o.attempts > 1]

    def failed_mid_stream(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.mid_stream]

    def offered_over_quota(self) -> int:
        """Calls the server's quota would have refused (429) had each gone when asked for."""
        return sum(1 for o in self.outcomes if o.over_quota)

    def limit_429s_avoided(self) -> int:
        """
        429s the client limiter saved: the quota 429s its calls would have met had each
        gone at the moment it was asked for (the server's shadow quota, fed those moments),
        less the quota 429s the server did answer. A lower bound: without a limiter, those
        429s would have been retried, and met more.
        """
        return max(0, self.offered_over_quota() - self.quota_429s)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


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


def _cause(error: BaseException) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    return type(error).__name__


async def _main(config: DemoConfig, out: TextIO) -> DemoResult:
    schedule = SCENARIOS[config.scenario]
    streamed = config.scenario in STREAMED
    result = DemoResult(config=config, phases=schedule.seconds(config.duration), streamed=streamed)
    if streamed:
        from ._llm import CLIENT_LIMITS, SERVER_QUOTA, StreamCalls, StreamWorkload, register_stream

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
