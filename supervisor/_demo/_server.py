"""
A real HTTP server imitating an LLM completion API, with a seeded fault schedule.

It runs uvicorn + Starlette on loopback, on a free port, in a thread with its own asyncio loop,
so the clients can run on asyncio or trio.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ._scenario import Schedule

__all__ = ("FlakyLLMServer",)


class FlakyLLMServer:
    """``POST /v1/complete {"prompt": ...}``: answers, or fails as the schedule says."""

    def __init__(self, schedule: Schedule, duration: float, seed: int) -> None:
        self.schedule = schedule
        self.duration = duration
        self._rng = random.Random(seed)
        self._started_at = 0.0
        self.requests: dict[str, int] = {}  # phase kind -> requests that reached the server
        self.answers: dict[int, int] = {}  # HTTP status -> answers sent
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        app = Starlette(routes=[Route("/v1/complete", self._complete, methods=["POST"])])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="flaky-llm", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/complete"

    def phase_now(self) -> str:
        return self.schedule.at(self._fraction()).kind

    async def _complete(self, request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        kind = self.phase_now()
        self.requests[kind] = self.requests.get(kind, 0) + 1
        response = await self._answer(body, kind)
        self.answers[response.status_code] = self.answers.get(response.status_code, 0) + 1
        return response

    async def _answer(self, body: dict[str, Any], kind: str) -> JSONResponse:
        rng = self._rng
        if kind == "outage":
            return JSONResponse({"error": "service unavailable"}, status_code=503)
        if kind == "errors" and rng.random() < 0.6:
            return JSONResponse({"error": "internal error"}, status_code=500)
        if kind == "rate_limited" and rng.random() < 0.8:
            return JSONResponse(
                {"error": "rate limited"}, status_code=429, headers=self._retry_after(rng)
            )
        delay = rng.uniform(1.2, 2.5) if kind == "slow" else rng.uniform(0.04, 0.12)
        await asyncio.sleep(delay)
        words = len(str(body.get("prompt", "")).split())
        return JSONResponse({"text": f"a summary of {words} words", "phase": kind})

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
        self._thread.join(timeout=10)
        self._sock.close()
