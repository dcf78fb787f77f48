"""
``ringfence demo --web``: the dashboard (:func:`supervisor.integrations.asgi.app`) served
beside the demo, on the supervisor's own event loop, with the Prometheus collector's text at
``/metrics`` when prometheus-client is installed.

Its own loop, not a thread of its own as the fake LLM server has: the dashboard's routes call
``supervisor.status()`` and ``supervisor.events()``, which belong to the loop the supervisor
runs on. uvicorn runs on asyncio only, so ``--web`` needs ``--backend asyncio``.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, TextIO

import anyio
import uvicorn

from supervisor import Supervisor

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ("DEFAULT_PORT", "DashboardPortError", "dashboard", "listen")

#: The port tried first when none is given; a free one is taken when it is busy.
DEFAULT_PORT = 8642


class DashboardPortError(OSError):
    """The port asked for (``--web-port``) cannot be bound."""


class _Server(uvicorn.Server):
    """uvicorn, started inside the demo: says when it listens and leaves the signals alone."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()  # started or failed: whoever waits looks at `started`

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would take SIGINT for itself (stopping the dashboard, not the demo) and
        # raise it again only once it stopped. Ctrl-C belongs to the demo.
        yield


def _app(supervisor: Supervisor) -> tuple[Starlette, bool]:
    """
    The dashboard's app (:func:`supervisor.integrations.asgi.app`) at ``/``, and when
    prometheus-client is installed the collector's text at ``/metrics``, read on this loop;
    and whether ``/metrics`` is there.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Mount, Route

    from supervisor.integrations.asgi import app

    routes: list[Route | Mount] = []
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        from supervisor.integrations.prometheus import collector
    except ImportError:
        pass
    else:
        registry = CollectorRegistry()
        registry.register(collector(supervisor))

        async def metrics(request: Request) -> Response:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

        routes.append(Route("/metrics", metrics))
    routes.append(Mount("/", app(supervisor)))
    return Starlette(routes=routes), len(routes) > 1


def listen(port: int | None) -> socket.socket:
    """
    A socket bound to ``127.0.0.1``: *port*, or with ``None`` :data:`DEFAULT_PORT` when it is
    free and any free port when not (``0`` always takes a free one).

    Raises:
        DashboardPortError: an explicit *port* cannot be bound (in use, or not allowed).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # As uvicorn does: a port left in TIME_WAIT by the last run can be bound again at
        # once, while one another server listens on still cannot (Linux).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", DEFAULT_PORT if port is None else port))
        except OSError as error:
            if port is not None:
                msg = f"cannot serve the dashboard on 127.0.0.1:{port}: {error.strerror}"
                raise DashboardPortError(msg) from error
            if error.errno != errno.EADDRINUSE:
                raise
            sock.bind(("127.0.0.1", 0))
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def dashboard(supervisor: Supervisor, port: int | None, out: TextIO) -> AsyncIterator[str]:
    """
    Serve the dashboard of *supervisor* on ``127.0.0.1`` while the block runs; write its URL
    to *out* once it answers; yield the URL. Leaving stops the server (requests still running
    get a few seconds to end; the supervisor leaving first ends the ``/events`` streams).
    """
    sock = listen(port)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    web, metrics = _app(supervisor)
    config = uvicorn.Config(
        web,
        log_level="warning",
        access_log=False,
        lifespan="off",  # the demo enters the supervisor itself
        timeout_graceful_shutdown=3,
    )
    server = _Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            await server.ready.wait()
            if not server.started:
                msg = f"the dashboard server did not start on {url}"
                raise RuntimeError(msg)
            more = "; Prometheus text at /metrics" if metrics else ""
            out.write(f"dashboard: {url} (live while the demo runs{more})\n")
            out.flush()
            try:
                yield url
            finally:
                server.should_exit = True
    finally:
        sock.close()
