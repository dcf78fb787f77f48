"""
A FastAPI service whose backends are protected by ringfence, with its dashboard mounted.

Run it (``pip install 'ringfence[web]' fastapi uvicorn``)::

    uvicorn fastapi_app:app --app-dir examples
    open http://127.0.0.1:8000/ringfence/          # the dashboard
    curl 'http://127.0.0.1:8000/ask?q=hello'        # a call through the flaky "llm"
    curl -X POST http://127.0.0.1:8000/admin/isolate/llm   # hold its breaker open
    curl -X POST http://127.0.0.1:8000/admin/reset/llm     # and close it again
    curl -X POST 'http://127.0.0.1:8000/admin/outage/search?on=true'  # make "search" fail

Three backends stand in for remote services: ``llm`` (fails a share of its calls; retried,
with a cached fallback; critical, so ``/ringfence/health`` says 503 while it is down),
``search`` (a consecutive-failures breaker, no fallback) and ``db`` (a sync function, run in a
worker thread).
"""

# The banned-api rules guard policies/ (sans-I/O); an application may use anyio and supervisor.
# ruff: noqa: TID251

from __future__ import annotations

import math
import random
import time
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException

from policies import Breaker, Bulkhead, IllegalTransition, Retry, Timeout, backoff
from supervisor import BreakerOpen, Supervisor, SupervisorError, UnknownDependency
from supervisor.integrations.asgi import app as ringfence_app
from supervisor.integrations.asgi import lifespan


class Backend:
    """A pretend remote service: answers after a few ms, fails a share of calls or all of them."""

    def __init__(self, name: str, failure_rate: float, rng: random.Random) -> None:
        self.name = name
        self.failure_rate = failure_rate
        self.outage = False
        self._rng = rng

    async def __call__(self, query: str) -> str:
        await anyio.sleep(self._rng.uniform(0.002, 0.01))
        if self.outage or self._rng.random() < self.failure_rate:
            msg = f"{self.name} is unreachable"
            raise ConnectionError(msg)
        return f"{self.name} says: {query}"


def read_db(key: str) -> dict[str, str]:
    """A blocking client call (ringfence runs sync callables in a worker thread)."""
    time.sleep(0.001)
    return {"key": key, "value": key.upper()}


def create_app(failure_rate: float = 0.2, seed: int | None = None) -> FastAPI:
    """
    The service, with a fresh supervisor of its own (a supervisor that was left can be entered
    again, but the app's backends keep state: a fresh app starts clean).

    Args:
        failure_rate: the share of ``llm`` calls that fail.
        seed: seeds the backends' randomness, for reproducible runs.
    """
    rng = random.Random(seed)
    supervisor = Supervisor(rng=random.Random(seed))
    backends = {
        "llm": Backend("llm", failure_rate, rng),
        "search": Backend("search", 0.0, rng),
    }
    supervisor.register(
        "llm",
        backends["llm"],
        retry=Retry(attempts=3, backoff=backoff.exponential(base=0.05, factor=2.0, cap=0.5)),
        breaker=Breaker(failure_ratio=0.5, min_throughput=10, sampling=10.0, break_duration=15.0),
        timeout=Timeout(attempt=2.0, total=5.0),
        bulkhead=Bulkhead(max_concurrent=8, max_queued=16),
        fallback=lambda error, query: f"(cached) an earlier answer to {query}",
        critical=True,
    )
    supervisor.register(
        "search",
        backends["search"],
        breaker=Breaker(failure_threshold=3, break_duration=20.0),
        timeout=Timeout(attempt=1.0),
    )
    supervisor.register("db", read_db, bulkhead=Bulkhead(max_concurrent=4, max_queued=8))

    api = FastAPI(title="ringfence example", lifespan=lifespan(supervisor))
    api.state.supervisor = supervisor
    api.mount("/ringfence", ringfence_app(supervisor))

    @api.get("/ask")
    async def ask(q: str = "hello") -> dict[str, Any]:
        """Ask the llm; its fallback answers while it is down."""
        try:
            return {"answer": await supervisor.call("llm", q)}
        except SupervisorError as error:
            raise HTTPException(503, detail=str(error)) from error
        except ConnectionError as error:
            raise HTTPException(502, detail=str(error)) from error

    @api.get("/search")
    async def search(q: str = "ringfence") -> dict[str, Any]:
        """Search; rejected at once with 503 and Retry-After while its breaker is open."""
        try:
            return {"result": await supervisor.call("search", q)}
        except BreakerOpen as error:
            # retry_after is inf while isolated: no promise of when, so no header then
            wait = error.retry_after
            headers = {"Retry-After": str(max(1, math.ceil(wait)))} if math.isfinite(wait) else {}
            raise HTTPException(503, detail=str(error), headers=headers) from error
        except SupervisorError as error:
            raise HTTPException(503, detail=str(error)) from error
        except ConnectionError as error:
            raise HTTPException(502, detail=str(error)) from error

    @api.get("/db/{key}")
    async def db(key: str) -> dict[str, Any]:
        """Read through the sync db client."""
        try:
            result: dict[str, Any] = await supervisor.call("db", key)
        except SupervisorError as error:
            raise HTTPException(503, detail=str(error)) from error
        return result

    @api.post("/admin/isolate/{name}")
    async def isolate(name: str) -> dict[str, str]:
        """Hold a dependency's breaker open (maintenance, or to test the dashboard)."""
        return await _control(supervisor.isolate, name)

    @api.post("/admin/reset/{name}")
    async def reset(name: str) -> dict[str, str]:
        """Close a dependency's breaker."""
        return await _control(supervisor.reset, name)

    @api.post("/admin/outage/{name}")
    async def outage(name: str, on: bool = True) -> dict[str, Any]:
        """Make a pretend backend fail every call (``on=false`` ends the outage)."""
        backend = backends.get(name)
        if backend is None:
            raise HTTPException(404, detail=f"no pretend backend {name!r}: {sorted(backends)}")
        backend.outage = on
        return {"backend": name, "outage": on}

    return api


async def _control(action: Any, name: str) -> dict[str, str]:
    try:
        transition = await action(name, reason="admin")
    except UnknownDependency as error:
        raise HTTPException(404, detail=str(error)) from error
    except IllegalTransition as error:
        raise HTTPException(409, detail=str(error)) from error
    return {"dependency": name, "state": str(transition.target)}


app = create_app()
