"""
``install_error_handlers`` (issue 21): ringfence's errors escaping a route become 503/429/504
with ``Retry-After`` when known and a JSON body naming the dependency; through httpx's ASGI
transport on both backends, and under a real uvicorn server over 2,000 requests on one
keep-alive connection.
"""

from __future__ import annotations

import math
import socket

import anyio
import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from policies import Breaker, Bulkhead
from supervisor import (
    AttemptTimeout,
    BreakerOpen,
    BulkheadFull,
    DeadlineExceeded,
    RateLimited,
    Supervisor,
)
from supervisor.integrations.asgi import MAX_RETRY_AFTER, install_error_handlers

from .conftest import LiveServer

ERRORS: dict[str, Exception] = {
    "open": BreakerOpen("llm", 12.2, "open"),
    "half_open": BreakerOpen("llm", 0.0, "half_open"),
    "isolated": BreakerOpen("llm", math.inf, "isolated"),
    "full": BulkheadFull("db", 4, 8, 0.25),
    "full_unknown": BulkheadFull("db", 4, 8),
    "limited": RateLimited("llm", 2.5),
    "forever": RateLimited("llm", 1e12),
    "deadline": DeadlineExceeded("llm", 30.0),
    "attempt": AttemptTimeout("llm", 10.0),
}


async def _raise(request: Request) -> PlainTextResponse:
    name = request.path_params["name"]
    if name == "ok":
        return PlainTextResponse("ok")
    if name == "other":
        raise LookupError("not ringfence's")
    raise ERRORS[name]


def _app(factory: type[Starlette] = Starlette) -> Starlette:
    web = factory(routes=[Route("/{name}", _raise)])
    install_error_handlers(web)
    return web


@pytest.mark.anyio
@pytest.mark.parametrize("factory", [Starlette, FastAPI])
@pytest.mark.parametrize(
    ("name", "code", "retry_after", "error", "dependency"),
    [
        ("open", 503, "13", "breaker_open", "llm"),
        ("half_open", 503, "0", "breaker_open", "llm"),
        ("isolated", 503, None, "breaker_open", "llm"),
        ("full", 503, "1", "bulkhead_full", "db"),
        ("full_unknown", 503, None, "bulkhead_full", "db"),
        ("limited", 429, "3", "rate_limited", "llm"),
        ("forever", 429, str(MAX_RETRY_AFTER), "rate_limited", "llm"),
        ("deadline", 504, None, "deadline_exceeded", "llm"),
        ("attempt", 504, None, "attempt_timeout", "llm"),
    ],
)
async def test_each_error_becomes_its_http_answer(
    factory: type[Starlette],
    name: str,
    code: int,
    retry_after: str | None,
    error: str,
    dependency: str,
) -> None:
    """Status code, Retry-After (rounded up, capped, absent when unknown or inf), JSON body."""
    transport = httpx.ASGITransport(app=_app(factory))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(f"/{name}")
    assert code == response.status_code
    assert retry_after == response.headers.get("retry-after")
    body = response.json()
    assert (error, dependency, str(ERRORS[name])) == (
        body["error"],
        body["dependency"],
        body["detail"],
    )
    hint = getattr(ERRORS[name], "retry_after", None)
    assert (None if hint is None or math.isinf(hint) else hint) == body["retry_after"]


@pytest.mark.anyio
async def test_other_errors_are_left_to_the_app() -> None:
    """Only ringfence's errors are answered: anything else is the app's (here: a 500)."""
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert 500 == (await client.get("/other")).status_code
        assert 200 == (await client.get("/ok")).status_code


def test_the_app_must_take_handlers() -> None:
    with pytest.raises(TypeError, match=r"^'app' must be a Starlette or FastAPI application"):
        install_error_handlers(object())  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_real_rejections_through_a_protected_route(is_trio: bool) -> None:
    """A supervisor's own errors: isolated (no Retry-After), then open, then bulkhead full."""
    supervisor = Supervisor()
    release = anyio.Event()
    entered = anyio.Event()

    async def slow() -> str:
        entered.set()
        await release.wait()
        return "ok"

    async def failing() -> str:
        raise ConnectionError("down")

    breaker = Breaker(failure_ratio=0.5, min_throughput=1, sampling=60.0)
    protected = supervisor.register("dep", failing, breaker=breaker)
    pool = supervisor.register("pool", slow, bulkhead=Bulkhead(max_concurrent=1, max_queued=0))

    async def call_dep(request: Request) -> JSONResponse:
        return JSONResponse(await protected())

    async def call_pool(request: Request) -> JSONResponse:
        return JSONResponse(await pool())

    web = FastAPI(routes=[Route("/dep", call_dep), Route("/pool", call_pool)])
    install_error_handlers(web)
    transport = httpx.ASGITransport(app=web, raise_app_exceptions=False)
    with anyio.fail_after(30):
        async with (
            supervisor,
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            await supervisor.isolate("dep")
            isolated = await client.get("/dep")
            await supervisor.reset("dep")
            assert 500 == (await client.get("/dep")).status_code  # ConnectionError: the app's
            opened = await client.get("/dep")
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.get, "/pool")
                await entered.wait()
                full = await client.get("/pool")
                release.set()
    assert (503, None, "isolated") == (
        isolated.status_code,
        isolated.headers.get("retry-after"),
        isolated.json()["detail"].split(" is ")[1].split(":")[0],
    )
    assert (503, "breaker_open") == (opened.status_code, opened.json()["error"])
    assert 1 <= int(opened.headers["retry-after"]) <= 60
    assert (503, "bulkhead_full", "pool") == (
        full.status_code,
        full.json()["error"],
        full.json()["dependency"],
    )
    assert "retry-after" not in full.headers  # no call had ended yet: no hint


def _connections(web: Starlette, paths: list[str]) -> tuple[list[int], set[object], int]:
    """GET each path on one pooled connection to a real uvicorn: codes, local addresses, errors."""
    server = LiveServer(web)
    # Without TCP_NODELAY (uvicorn does not set it on sockets it is given), each answer's
    # second write waits for the client's delayed ACK: ~45 ms a request here.
    server._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server.start()
    codes, local, failures = [], set(), 0
    try:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(base_url=server.base, timeout=10.0, limits=limits) as client:
            for path in paths:
                try:
                    response = client.get(path)
                except httpx.TransportError:
                    failures += 1
                    continue
                codes.append(response.status_code)
                stream = response.extensions["network_stream"]
                local.add(stream.get_extra_info("client_addr"))
    finally:
        server.stop()
    return codes, local, failures


def test_keep_alive_survives_2000_requests_under_uvicorn() -> None:
    """Every answer on one connection: no handler re-raises, so uvicorn never closes it."""
    names = ["ok", "open", "isolated", "full", "limited", "deadline", "attempt", "half_open"]
    paths = [f"/{names[i % len(names)]}" for i in range(2000)]
    codes, local, failures = _connections(_app(FastAPI), paths)
    expected = {"ok": 200, "limited": 429, "deadline": 504, "attempt": 504}
    assert [expected.get(path[1:], 503) for path in paths] == codes
    assert (0, 1) == (failures, len(local))
