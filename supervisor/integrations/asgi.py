"""
ringfence in a Starlette or FastAPI service (``pip install 'ringfence[web]'``).

    from fastapi import FastAPI
    from supervisor.integrations.asgi import app as ringfence_app, lifespan

    api = FastAPI(lifespan=lifespan(supervisor))
    api.mount("/ringfence", ringfence_app(supervisor))

:func:`lifespan` enters the supervisor when the server starts and leaves it when it stops.
:func:`app` is an ASGI app to mount under any prefix:

===========================  ==================================================================
route                        answer
===========================  ==================================================================
``GET /``                    the dashboard: one self-contained HTML page, live from the routes
                             below (relative URLs, so any mount prefix works)
``GET /health``              ``supervisor.health()`` as JSON; 200, or 503 when unhealthy
``GET /status``              ``{name: status}`` for every dependency (``DependencyStatus.to_dict``)
``GET /status/{name}``       one dependency; 404 naming the registered ones when unknown
``GET /events``              server-sent events: first a ``snapshot`` (``/status``'s JSON), then
                             one message per event, its ``kind`` as the SSE event name and its
                             ``to_dict()`` as data. ``?kinds=breaker_transition,call_rejected``
                             filters (400 for an unknown kind)
===========================  ==================================================================

Everything is read when a request comes: nothing runs on a dependency's call path. A client of
``/events`` that goes away is unsubscribed at once (sse-starlette cancels the generator, whose
``async with`` around the subscription ends it).

JSON has no infinity or NaN (``BreakerOpen.retry_after`` is ``inf`` for an isolated
dependency): such numbers are sent as ``null``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterator, Callable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

try:
    from sse_starlette import EventSourceResponse
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route
except ImportError as error:  # pragma: no cover - exercised only without the extra
    msg = (
        "supervisor.integrations.asgi needs starlette and sse-starlette: "
        "pip install 'ringfence[web]'"
    )
    raise ImportError(msg) from error

from supervisor import EventStream, HealthStatus, UnknownDependency

if TYPE_CHECKING:
    from supervisor import Supervisor

__all__ = ("lifespan", "app")

#: Seconds between SSE keep-alive comments (proxies close idle connections).
PING = 15.0


def lifespan(
    supervisor: Supervisor,
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """
    A Starlette/FastAPI ``lifespan`` that enters *supervisor* at startup and leaves it at
    shutdown (calls queued then fail with ``SupervisorClosed``; see the README).

    An application with a lifespan of its own enters the supervisor in it instead:
    ``async with supervisor: yield``.

    Args:
        supervisor: a supervisor not entered yet (it can be entered once).

    Returns:
        ``lifespan(app)``, an async context manager factory, for ``Starlette(lifespan=...)``
        or ``FastAPI(lifespan=...)``.
    """

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        async with supervisor:
            yield

    return run


def app(supervisor: Supervisor, *, ping: float = PING, buffer: int = 1000) -> Starlette:
    """
    The routes in this module's docstring, as a Starlette app to mount.

    It does not enter the supervisor: use :func:`lifespan` (a mounted app's own lifespan is
    not run by Starlette or FastAPI).

    Args:
        supervisor: the supervisor to show.
        ping: seconds between keep-alive comments on ``/events``.
        buffer: each ``/events`` client's event buffer (``supervisor.events(buffer=...)``).

    Returns:
        A Starlette application.
    """
    page = resources.files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")

    async def dashboard(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def health(request: Request) -> Response:
        verdict = supervisor.health()
        body = {
            "status": str(verdict.status),
            "down": list(verdict.down),
            "critical_down": list(verdict.critical_down),
            "states": {name: str(state) for name, state in verdict.states.items()},
        }
        code = 503 if verdict.status is HealthStatus.UNHEALTHY else 200
        return _json(body, code)

    async def status(request: Request) -> Response:
        return _json(_statuses(supervisor))

    async def one(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in supervisor.dependencies:
            error = UnknownDependency(name, supervisor.dependencies)
            body = {"error": str(error), "registered": list(supervisor.dependencies)}
            return _json(body, 404)
        return _json(supervisor.status(name).to_dict())

    async def events(request: Request) -> Response:
        raw = request.query_params.get("kinds")
        kinds = [kind.strip() for kind in raw.split(",") if kind.strip()] if raw else None
        try:
            stream = supervisor.events(kinds=kinds, buffer=buffer)
        except ValueError as error:
            return _json({"error": str(error)}, 400)
        return EventSourceResponse(_messages(supervisor, stream), ping=ping)

    return Starlette(
        routes=[
            Route("/", dashboard),
            Route("/health", health),
            Route("/status", status),
            Route("/status/{name:str}", one),
            Route("/events", events),
        ]
    )


async def _messages(supervisor: Supervisor, stream: EventStream) -> AsyncIterator[dict[str, str]]:
    """The SSE messages of one client: the snapshot, then each event until either side ends."""
    async with stream:
        yield {"event": "snapshot", "data": _dumps(_statuses(supervisor))}
        async for event in stream:
            yield {"event": event.kind, "data": _dumps(event.to_dict())}


def _statuses(supervisor: Supervisor) -> dict[str, object]:
    return {name: status.to_dict() for name, status in supervisor.status().items()}


def _json(body: object, status_code: int = 200) -> Response:
    return Response(_dumps(body), status_code=status_code, media_type="application/json")


def _dumps(value: object) -> str:
    return json.dumps(_finite(value), allow_nan=False, separators=(",", ":"))


def _finite(value: object) -> object:
    """*value* with every infinite or NaN float (at any depth) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
