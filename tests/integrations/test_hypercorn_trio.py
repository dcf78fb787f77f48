"""
The ASGI integration on trio, under hypercorn (issue 21: the README says it runs there). A
real hypercorn server on a loopback socket, trio's event loop, the supervisor entered by the
app's lifespan; httpx asks for every route, a protected call, an error mapped to HTTP, and
the first server-sent event.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from policies import Retry, backoff
from supervisor import Supervisor
from supervisor.integrations.asgi import app as ringfence_app
from supervisor.integrations.asgi import install_error_handlers, lifespan

hypercorn_trio = pytest.importorskip("hypercorn.trio")  # the test extra installs it
from hypercorn.config import Config  # noqa: E402


def _service() -> tuple[Starlette, Supervisor]:
    supervisor = Supervisor()
    backends: list[str] = []

    async def backend(query: str) -> str:
        backends.append(trio.lowlevel.current_task().name)  # runs on trio, or raises
        return query.upper()

    ask = supervisor.register("ask", backend, retry=Retry(backoff=backoff.constant(0.0)))

    async def answer(request: Request) -> JSONResponse:
        return JSONResponse({"answer": await ask(request.query_params["q"])})

    web = Starlette(
        lifespan=lifespan(supervisor),
        routes=[Route("/ask", answer), Mount("/ringfence", ringfence_app(supervisor))],
    )
    install_error_handlers(web)
    return web, supervisor


async def _first_event(port: int) -> tuple[str, object]:
    """GET /events on a raw socket (httpx's stream generators warn when cut short on
    trio): the first message's event name and its "ask" state."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /ringfence/events HTTP/1.1\r\nHost: t\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received.partition(b"event: ")[2]:
            chunk = await stream.receive_some()
            assert chunk, "the server closed /events before its first message"
            received += chunk
    message = received.partition(b"\r\n\r\n")[2].decode()
    message = message[message.index("event: ") :]
    name, data = message.split("\r\n")[:2]
    return name, json.loads(data.removeprefix("data: "))["ask"]["state"]


def test_the_asgi_app_serves_on_trio_under_hypercorn() -> None:
    web, supervisor = _service()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    answers: dict[str, object] = {}

    async def main() -> None:
        stop = trio.Event()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: hypercorn_trio.serve(
                        web, config, shutdown_trigger=stop.wait, task_status=task_status
                    )
                )
                base = f"http://127.0.0.1:{port}"
                async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                    answers["ask"] = (await client.get("/ask", params={"q": "hi"})).json()
                    answers["health"] = (await client.get("/ringfence/health")).json()
                    answers["status"] = sorted((await client.get("/ringfence/status")).json())
                    one = await client.get("/ringfence/status/ask")
                    answers["one"] = (one.status_code, one.json()["calls"])
                    missing = await client.get("/ringfence/status/nope")
                    answers["missing"] = missing.status_code
                    await supervisor.isolate("ask")
                    refused = await client.get("/ask", params={"q": "hi"})
                    answers["refused"] = (refused.status_code, refused.json()["error"])
                    answers["events"] = await _first_event(port)
                stop.set()

    try:
        trio.run(main)
    finally:
        sock.detach()  # hypercorn took the descriptor over, and closed it
    assert {
        "ask": {"answer": "HI"},
        "health": {
            "status": "healthy",
            "down": [],
            "critical_down": [],
            "states": {"ask": "closed"},
        },
        "status": ["ask"],
        "one": (200, 1),
        "missing": 404,
        "refused": (503, "breaker_open"),
        "events": ("event: snapshot", "isolated"),
    } == answers
