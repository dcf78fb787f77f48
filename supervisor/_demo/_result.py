"""
The demo's records, shared by its modules: the run's settings (:class:`DemoConfig`), each
client request's :class:`Outcome`, and everything a run observed (:class:`DemoResult`), with
the helpers they rest on. It imports no other demo module, so every one may import it.
"""

from __future__ import annotations

import math
from collections import Counter

import attrs
import httpx

__all__ = ("DemoConfig", "DemoResult", "Outcome")


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
    #: status("llm").hedges and .hedge_wins at the end: hedges sent, and streams they answered
    hedges: int = 0
    hedge_wins: int = 0
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
        """
        Streams that sent more than one request (retries and hedges): both come only before
        the first token.
        """
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


def _cause(error: BaseException) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    return type(error).__name__
