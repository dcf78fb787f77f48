"""
The ``llm`` scenario's clients: streamed answers through ``supervisor.stream`` under request
and token limits set below the provider's, so the limiter, not the server, paces the load.

The registered function is an async generator: it opens an httpx streaming request to the
demo server's ``/v1/stream`` and yields the tokens of its server-sent events. A 429 or a 5xx
raises httpx's own ``HTTPStatusError`` before the first token (the classifier makes a 429 a
pause and a retry, a 5xx a retry and a failure for the breaker); a connection dropped
mid-answer raises httpx's ``RemoteProtocolError`` after tokens reached the caller, which
ringfence passes on unchanged.

The clients are an *open* workload: each asks for an answer at random moments (a Poisson
process), whether or not its earlier answers have come, as the users of a chat service do.
So the demand does not bend to the limiter's pace, and "what would the server have answered
had each request gone when it was asked for" is a fair question: the server's shadow quota
(:meth:`FlakyLLMServer.offer`) answers it for every call.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Final, cast

import anyio
import attrs
import httpx

from policies import Breaker, Bulkhead, Hedge, Retry, Timeout, backoff, break_duration
from supervisor import Supervisor

from ._result import DemoResult, Outcome, _cause
from ._server import FlakyLLMServer, Quota, price

__all__ = (
    "CLIENT_LIMITS",
    "SERVER_QUOTA",
    "StreamCalls",
    "StreamWorkload",
    "register_stream",
)

#: The provider's limits (the demo server enforces them on /v1/stream).
SERVER_QUOTA: Final = Quota(rpm=600, tpm=40_000, burst_seconds=2.0)
#: The clients' own limits: 90% of the provider's, and at most a second's worth at once,
#: so requests sent at their turns stay under the provider's limits with room for the
#: network's jitter.
CLIENT_LIMITS: Final = Quota(rpm=540, tpm=36_000, burst_seconds=1.0)
#: The longest a call waits for its turn before the limiter turns it away (RateLimited).
MAX_WAIT: Final = 3.0
#: Each client asks for an answer every this many seconds on average (exponential gaps):
#: 20 clients ask for about 10 answers a second, a third over the provider's token limit.
MEAN_GAP: Final = 2.0
#: The answer lengths clients ask for (``max_tokens``).
MAX_TOKENS: Final = (32, 64, 96)

_CACHED: Final = "a cached summary (the live model is unavailable)"


@attrs.define
class StreamCalls:
    """
    What the registered function and the fallback saw, by call id: attempts made (requests
    sent to the server), when the first was sent, and the fallback's cause if it answered.
    """

    attempts: dict[int, int] = attrs.Factory(dict)
    first_attempt: dict[int, float] = attrs.Factory(dict)
    fell_back: dict[int, str] = attrs.Factory(dict)


def register_stream(
    supervisor: Supervisor,
    http: httpx.AsyncClient,
    server: FlakyLLMServer,
    calls: StreamCalls,
    duration: float,
) -> None:
    """Register ``llm`` as the streamed function with its limits, timeouts and fallback."""

    async def stream_llm(prompt: str, max_tokens: int, *, call_id: int) -> AsyncIterator[str]:
        calls.attempts[call_id] = calls.attempts.get(call_id, 0) + 1
        calls.first_attempt.setdefault(call_id, time.monotonic())
        request = {"prompt": prompt, "max_tokens": max_tokens, "stream": True}
        async with http.stream("POST", server.stream_url, json=request) as response:
            if response.is_error:
                await response.aread()
                response.raise_for_status()  # httpx.HTTPStatusError, Retry-After and all
            # Read to the end of the body, past [DONE]: httpx's line reader stacks generators
            # that only close themselves when exhausted; one left early is finalised by the
            # garbage collector, which trio (rightly) warns about.
            done = False
            # (httpx types aiter_lines() as an AsyncIterator; it is an async generator.)
            reader = cast("AsyncGenerator[str, None]", response.aiter_lines())
            async with contextlib.aclosing(reader) as lines:
                async for line in lines:
                    if done or not line.startswith("data: "):
                        continue
                    data = line.removeprefix("data: ")
                    if data == "[DONE]":
                        done = True
                    else:
                        yield str(json.loads(data)["token"])
            if done:
                return
        # httpx raises when the body is cut short; a whole body without [DONE] is a bug.
        msg = "the answer ended without [DONE]"
        raise httpx.RemoteProtocolError(msg)

    async def cached_tokens() -> AsyncIterator[str]:
        for word in _CACHED.split():
            yield word + " "

    def fallback(
        error: Exception, prompt: str, max_tokens: int, *, call_id: int
    ) -> AsyncIterator[str]:
        calls.fell_back[call_id] = _cause(error)
        return cached_tokens()

    window = max(2.0, duration / 10)
    supervisor.register(
        "llm",
        stream_llm,
        # Requests a minute, and tokens a minute priced as the provider prices them (prompt
        # plus max_tokens, known before the call); a stream has no result to settle with.
        rate_limit=CLIENT_LIMITS.limits(
            max_wait=MAX_WAIT, cost=lambda prompt, max_tokens, **_: price(prompt, max_tokens)
        ),
        # Retries happen only before the first token: a slow first token (first_item), a
        # 429 (its Retry-After pauses every caller) or a 5xx. After it, errors pass through.
        retry=Retry(
            attempts=3,
            backoff=backoff.full(backoff.exponential(base=0.1, factor=2.0, cap=1.0)),
        ),
        # A mid-stream failure counts against the breaker as any failure does; 30% of the
        # streams breaking off is a sick server, not a dead one, so 60% opens it.
        breaker=Breaker(
            failure_ratio=0.6,
            min_throughput=20,
            sampling=window,
            break_duration=break_duration.adaptive(
                start=max(0.5, duration / 40),
                factor=2.0,
                cap=max(2.0, duration / 10),
                healthy_after=window,
            ),
        ),
        timeout=Timeout(first_item=1.0, between_items=0.5, total=10.0),
        # A first token later than the p95 of those measured (0.1-0.6 s, so the hedge never
        # waits out first_item) gets a second request beside it; the first token wins. A hedge
        # takes a rate-limit turn and a slot at once or is not sent, and spends the retry
        # budget: the slow_first phase is cut short without a storm.
        hedge=Hedge(delay=Hedge.quantile(0.95, floor=0.1, cap=0.6)),
        bulkhead=Bulkhead(max_concurrent=16, max_queued=32),
        fallback=fallback,
        critical=True,
    )


def _prompt(n: int, rng: random.Random) -> tuple[str, int]:
    words = " ".join(["and its appendix"] * rng.randrange(0, 12))
    prompt = f"client {n} asks for a summary of document {rng.randrange(10**6)} {words}"
    return prompt.strip(), rng.choice(MAX_TOKENS)


@attrs.define
class StreamWorkload:
    """The clients of the llm scenario, recording every stream's outcome in *result*."""

    supervisor: Supervisor
    server: FlakyLLMServer
    result: DemoResult
    calls: StreamCalls
    #: time.monotonic() at the start of the run
    started: float
    _ids: Iterator[int] = attrs.field(factory=itertools.count, init=False)

    async def client(self, n: int, rng: random.Random, stop_at: float) -> None:
        """
        Client *n*: asks for an answer at exponential gaps until *stop_at*, each in a task of
        its own (an open workload), and returns once every answer it asked for has ended.
        """
        # The first ask after a gap too: clients do not all start at the same instant.
        await anyio.sleep(
            min(rng.expovariate(1.0 / MEAN_GAP), max(0.0, stop_at - time.monotonic()))
        )
        async with anyio.create_task_group() as answers:
            while time.monotonic() < stop_at:
                prompt, max_tokens = _prompt(n, rng)
                answers.start_soon(self._ask, next(self._ids), prompt, max_tokens)
                gap = rng.expovariate(1.0 / MEAN_GAP)
                await anyio.sleep(min(gap, max(0.0, stop_at - time.monotonic())))

    async def _ask(self, call_id: int, prompt: str, max_tokens: int) -> None:
        """One streamed answer, start to end, and what became of it."""
        started = self.started
        t0 = time.monotonic() - started
        self.result.issued += 1
        # Had this request gone to the server now, would its quota have refused it? (Before
        # anything awaits: the moment the client asks.)
        over_quota = self.server.offer(price(prompt, max_tokens))
        paused = self.supervisor.status("llm").pause_remaining > 0
        kind, cause = "success", ""
        tokens = 0
        first: float | None = None
        try:
            async with self.supervisor.stream("llm", prompt, max_tokens, call_id=call_id) as items:
                async for _token in items:
                    if first is None:
                        first = time.monotonic() - started
                    tokens += 1
        except Exception as exc:  # a clear error: accounted, never lost
            kind, cause = "error", _cause(exc)
        end = time.monotonic() - started
        fell_back = self.calls.fell_back.get(call_id)
        if fell_back is not None and kind == "success":
            kind, cause = "fallback", fell_back
        sent = self.calls.first_attempt.get(call_id)
        self.result.outcomes.append(
            Outcome(
                t0,
                end,
                kind,
                cause,
                paused,
                first_token=first,
                tokens=tokens,
                attempts=self.calls.attempts.get(call_id, 0),
                sent=None if sent is None else sent - started,
                over_quota=over_quota,
            )
        )
