"""
A real HTTP server imitating an LLM completion API, with a seeded fault schedule.

It runs uvicorn + Starlette on loopback, on a free port, in a thread with its own asyncio loop,
so the clients can run on asyncio or trio. ``POST /v1/complete`` answers whole; ``POST
/v1/stream`` streams tokens as server-sent events, the way the LLM APIs do, and may enforce a
provider's request and token limits (:class:`Quota`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, final

import attrs
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from policies import RateLimit, Refusal, reserve_all

from ._scenario import Schedule

__all__ = ("FlakyLLMServer", "Quota", "QuotaLimiter", "price")


def price(prompt: str, max_tokens: int) -> int:
    """
    The tokens a request is charged against a token limit when it arrives: its prompt's tokens
    (words, for this fake tokenizer) plus the ``max_tokens`` it asks for. OpenAI counts a
    request against its TPM limit the same way, before any token is generated; the demo's
    clients price their calls with this very function, so their estimate is exact.
    """
    return len(prompt.split()) + max_tokens


@final
@attrs.frozen(kw_only=True)
class Quota:
    """
    A provider's limits: ``rpm`` requests and ``tpm`` tokens a minute (see :func:`price`),
    enforced over short spans as providers do (a 600 RPM limit may be enforced as 10 a
    second): at most ``burst_seconds`` worth of the quota at once.
    """

    rpm: float
    tpm: float
    burst_seconds: float = 2.0

    def limits(
        self, *, max_wait: float = 0.0, cost: Callable[..., float] | None = None
    ) -> list[RateLimit]:
        """
        The two limits as :class:`policies.RateLimit`: requests (each costs 1), then tokens
        (each call priced by *cost*); both wait at most *max_wait* seconds for a turn.
        """
        return [
            RateLimit(
                self.rpm, per=60.0, burst=self.rpm * self.burst_seconds / 60, max_wait=max_wait
            ),
            RateLimit(
                self.tpm,
                per=60.0,
                burst=self.tpm * self.burst_seconds / 60,
                max_wait=max_wait,
                cost=cost,
            ),
        ]


@final
class QuotaLimiter:
    """
    A :class:`Quota` enforced: the GCRA machines of ``policies.rate_limit``, one for requests
    and one for tokens; a request goes when both admit it at once, and a refused one is not
    charged (a 429 costs no quota). Thread-safe, unlike the machines: the server's thread
    admits, and the demo may look from its own.
    """

    def __init__(self, quota: Quota) -> None:
        self.quota = quota
        self._machines = [limit.machine() for limit in quota.limits()]
        self._lock = threading.Lock()
        self.admitted = 0
        self.refused = 0

    def admit(self, now: float, tokens: float) -> float:
        """0.0 when a request of *tokens* may go at *now* (charged), else seconds to wait."""
        with self._lock:
            decision = reserve_all(self._machines, now, [1.0, tokens], max_wait=0.0)
            if isinstance(decision, Refusal):
                self.refused += 1
                return max(decision.retry_after, 1e-3)
            self.admitted += 1
            return 0.0


class _Disconnect(Exception):
    """Raised inside a streamed answer to break the connection off mid-stream, as on purpose."""


class _DropDisconnects(logging.Filter):
    """uvicorn logs an exception ending a response with its traceback; ours are on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Disconnect))


_DROP_DISCONNECTS: Final = _DropDisconnects()

#: What the fake model answers, a word a token.
_ANSWER: Final = (
    "the quarterly report shows revenue grew while costs held steady and the team expects"
    " demand to rise next year as new customers arrive from partner channels"
)
_WORDS: Final = _ANSWER.split()


@final
@attrs.frozen
class _Plan:
    """One streamed answer, decided when the request arrives (so the seeded rng decides)."""

    first: float  # seconds to the first token
    gap: float  # seconds between tokens
    count: int  # tokens in a whole answer
    cut_at: int | None = None  # break off before this token
    stall: bool = False  # ... by going silent (else by dropping the connection)


class FlakyLLMServer:
    """
    ``POST /v1/complete {"prompt": ...}``: answers, or fails as the schedule says.
    ``POST /v1/stream {"prompt": ..., "max_tokens": ...}``: over the *quota* (if any), a 429
    with Retry-After; else fails as the schedule says, or streams server-sent events
    ``data: {"token": ...}`` ending with ``data: [DONE]``, slowly or breaking off mid-answer
    when the schedule says so.

    A second :class:`QuotaLimiter`, the *shadow*, takes :meth:`offer` calls: the demo tells it
    each moment a client asked for an answer, and it counts how many of those requests the
    quota would have refused had each gone at once (see ``DemoResult.limit_429s_avoided``).
    """

    def __init__(
        self, schedule: Schedule, duration: float, seed: int, quota: Quota | None = None
    ) -> None:
        self.schedule = schedule
        self.duration = duration
        self._rng = random.Random(seed)
        self._started_at = 0.0
        self.requests: dict[str, int] = {}  # phase kind -> requests that reached the server
        self.answers: dict[int, int] = {}  # HTTP status -> answers sent
        self.quota = quota
        self.limiter = QuotaLimiter(quota) if quota is not None else None
        self.shadow = QuotaLimiter(quota) if quota is not None else None
        #: 429s answered because a request was over the quota (not the schedule's spells)
        self.quota_429s = 0
        #: when each of them was answered, seconds since the start
        self.quota_429_at: list[float] = []
        #: how streamed answers ended: "done", "cut" (connection dropped), "stalled"
        self.streams: dict[str, int] = {}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route("/v1/complete", self._complete, methods=["POST"]),
                Route("/v1/stream", self._stream, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        # After the Config, which sets uvicorn's logging up; adding the same filter is a no-op.
        logging.getLogger("uvicorn.error").addFilter(_DROP_DISCONNECTS)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="flaky-llm", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/complete"

    @property
    def stream_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/stream"

    def phase_now(self) -> str:
        return self.schedule.at(self._fraction()).kind

    async def _complete(self, request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        kind = self.phase_now()
        self.requests[kind] = self.requests.get(kind, 0) + 1
        response = await self._answer(body, kind)
        self.answers[response.status_code] = self.answers.get(response.status_code, 0) + 1
        return response

    def _fault(self, kind: str) -> JSONResponse | None:
        """The schedule's error answer for a request arriving in a phase of *kind*, if any."""
        rng = self._rng
        if kind == "outage":
            return JSONResponse({"error": "service unavailable"}, status_code=503)
        if kind == "errors" and rng.random() < 0.6:
            return JSONResponse({"error": "internal error"}, status_code=500)
        if kind == "rate_limited" and rng.random() < 0.8:
            return JSONResponse(
                {"error": "rate limited"}, status_code=429, headers=self._retry_after(rng)
            )
        return None

    async def _answer(self, body: dict[str, Any], kind: str) -> JSONResponse:
        rng = self._rng
        fault = self._fault(kind)
        if fault is not None:
            return fault
        delay = rng.uniform(1.2, 2.5) if kind == "slow" else rng.uniform(0.04, 0.12)
        await asyncio.sleep(delay)
        words = len(str(body.get("prompt", "")).split())
        return JSONResponse({"text": f"a summary of {words} words", "phase": kind})

    async def _stream(self, request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        kind = self.phase_now()
        self.requests[kind] = self.requests.get(kind, 0) + 1
        response = self._stream_answer(body, kind)
        self.answers[response.status_code] = self.answers.get(response.status_code, 0) + 1
        return response

    def _stream_answer(self, body: dict[str, Any], kind: str) -> Response:
        prompt = str(body.get("prompt", ""))
        max_tokens = int(body.get("max_tokens", 64))
        if self.limiter is not None:
            # The quota first, as providers check it: a request over it is answered 429
            # whatever the phase, and a refused request is not charged.
            wait = self.limiter.admit(time.monotonic(), price(prompt, max_tokens))
            if wait > 0.0:
                self.quota_429s += 1
                self.quota_429_at.append(time.monotonic() - self._started_at)
                headers = {}
                if wait < math.inf:  # else the request is larger than the quota's burst
                    headers = {
                        "retry-after-ms": str(math.ceil(wait * 1000)),
                        "retry-after": str(math.ceil(wait)),
                    }
                return JSONResponse(
                    {"error": {"type": "rate_limit_error", "message": "over your quota"}},
                    status_code=429,
                    headers=headers,
                )
        fault = self._fault(kind)
        if fault is not None:
            return fault
        return StreamingResponse(
            self._tokens(self.plan(kind, max_tokens)), media_type="text/event-stream"
        )

    def plan(self, kind: str, max_tokens: int) -> _Plan:
        """How the answer to a request arriving in a phase of *kind* streams (seeded rng)."""
        rng = self._rng
        count = rng.randint(max(1, max_tokens // 2), max(1, max_tokens))
        first = rng.uniform(0.08, 0.25)
        if kind == "slow_first" and rng.random() < 0.35:
            first = rng.uniform(1.5, 3.0)
        cut_at: int | None = None
        stall = False
        if kind == "disconnects" and count > 1 and rng.random() < 0.3:
            cut_at = rng.randrange(1, count)  # at least one token reaches the client first
            stall = rng.random() < 0.5
        return _Plan(first, rng.uniform(0.005, 0.015), count, cut_at, stall)

    async def _tokens(self, plan: _Plan) -> AsyncIterator[bytes]:
        """A streamed answer's events, as *plan* says; ends with ``[DONE]`` unless cut."""
        await asyncio.sleep(plan.first)
        for i in range(plan.count):
            if i == plan.cut_at:
                if plan.stall:
                    self._ended("stalled")
                    # Silent: the client's between_items limit gives up first and closes
                    # the connection, which cancels this sleep.
                    await asyncio.sleep(30.0)
                else:
                    self._ended("cut")
                raise _Disconnect
            token = _WORDS[i % len(_WORDS)] + " "
            yield f"data: {json.dumps({'token': token})}\n\n".encode()
            await asyncio.sleep(plan.gap)
        self._ended("done")
        yield b"data: [DONE]\n\n"

    def _ended(self, how: str) -> None:
        self.streams[how] = self.streams.get(how, 0) + 1

    def offer(self, tokens: float) -> bool:
        """
        A client asked for an answer of *tokens* (:func:`price`) now: would the quota have
        answered a request sent right now with a 429? Counted by the shadow limiter.
        """
        assert self.shadow is not None, "offer() needs a quota"
        return self.shadow.admit(time.monotonic(), tokens) > 0.0

    def _retry_after(self, rng: random.Random) -> dict[str, str]:
        """
        The headers of a 429, as the LLM APIs send them. Mostly a short wait, in
        ``retry-after-ms`` with a whole-second ``retry-after`` beside it (openai's and
        anthropic's form); one time in eight the quota window is spent, and ``retry-after``
        (whole seconds, RFC 9110) says when the spell ends, often past a caller's deadline.
        """
        if rng.random() < 0.125:
            left = (self.schedule.at(self._fraction()).end - self._fraction()) * self.duration
            return {"retry-after": str(max(1, math.ceil(left)))}
        wait_ms = rng.randrange(200, 600)
        return {"retry-after-ms": str(wait_ms), "retry-after": str(math.ceil(wait_ms / 1000))}

    def _fraction(self) -> float:
        return (time.monotonic() - self._started_at) / self.duration

    def _serve(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self) -> None:
        self._started_at = time.monotonic()
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                msg = "the demo server did not start"
                raise RuntimeError(msg)
            time.sleep(0.01)  # waiting for another thread's server, not for our async work

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=10)
        self._sock.close()
