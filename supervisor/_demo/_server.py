"""
A real HTTP server imitating an LLM completion API, with a seeded fault schedule.

It runs uvicorn + Starlette on loopback, on a free port, in a thread with its own asyncio loop,
so the clients can run on asyncio or trio.
"""

from __future__ import annotations

import asyncio
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
        elapsed = time.monotonic() - self._started_at
        return self.schedule.at(elapsed / self.duration).kind

    async def _complete(self, request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        kind = self.phase_now()
        self.requests[kind] = self.requests.get(kind, 0) + 1
        rng = self._rng
        if kind == "outage":
            return JSONResponse({"error": "service unavailable"}, status_code=503)
        if kind == "errors" and rng.random() < 0.6:
            return JSONResponse({"error": "internal error"}, status_code=500)
        if kind == "rate_limited" and rng.random() < 0.8:
            wait = round(rng.uniform(0.2, 0.6), 2)
            return JSONResponse(
                {"error": "rate limited"}, status_code=429, headers={"Retry-After": str(wait)}
            )
        delay = rng.uniform(1.2, 2.5) if kind == "slow" else rng.uniform(0.04, 0.12)
        await asyncio.sleep(delay)
        words = len(str(body.get("prompt", "")).split())
        return JSONResponse({"text": f"a summary of {words} words", "phase": kind})

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
