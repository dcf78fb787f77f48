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
                             filters (400 for an unknown kind). At most ``max_event_clients``
                             at once: past them, 503 with ``Retry-After`` and a short JSON body
===========================  ==================================================================

Everything is read when a request comes: nothing runs on a dependency's call path. ``/events``
is bounded on every side, so that watching cannot cost the calls watched:

* each client has a subscription with a bounded buffer (``buffer``): one that falls behind
  loses its oldest events (the next one it gets says ``dropped``), and publishing an event
  costs each client an append and a wake, never a copy (see ``supervisor._events``);
* at most ``max_event_clients`` clients at once (each event is written to every one of them,
  on the loop the calls run on): the next is answered 503 at once, with ``Retry-After``;
* each send to a client may take ``send_timeout`` seconds: a client that stopped reading
  (its connection's buffers are full, so a send waits) is dropped after that, and the server
  closes its connection (uvicorn logs "ASGI callable returned without completing response");
* a client's subscription and its place among the ``max_event_clients`` are given back however
  its response ends: the client went (``http.disconnect``), a send timed out, the request was
  cancelled (the server stopping) or the supervisor left ``async with``.

The frames sent for an event are encoded once, whatever the number of clients, and the events a
client has buffered go out in one send.

JSON has no infinity or NaN (``BreakerOpen.retry_after`` is ``inf`` for an isolated
dependency): such numbers are sent as ``null``.

:func:`install_error_handlers` maps ringfence's errors, escaping a route, to HTTP answers:

======================  ====  ================================================================
error                   code  ``Retry-After``
======================  ====  ================================================================
``BreakerOpen``         503   the rest of the break, rounded up; ``0`` half-open with every
                              probe busy; none while isolated (``inf``)
``BulkheadFull``        503   its hint (the latest call's latency), rounded up
``RateLimited``         429   the pause or the turn, rounded up
``DeadlineExceeded``    504   none
``AttemptTimeout``      504   none
======================  ====  ================================================================

with a small JSON body: ``{"error": "breaker_open", "dependency": "llm", "detail": "...",
"retry_after": 12.5}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, final

import structlog

try:
    from sse_starlette import EventSourceResponse
    from sse_starlette.sse import SendTimeoutError
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route
    from starlette.types import Receive, Scope, Send
except ImportError as error:  # pragma: no cover - exercised only without the extra
    msg = (
        "supervisor.integrations.asgi needs starlette and sse-starlette: "
        "pip install 'ringfence[web]'"
    )
    raise ImportError(msg) from error

from supervisor import (
    AttemptTimeout,
    BreakerOpen,
    BulkheadFull,
    DeadlineExceeded,
    Event,
    EventStream,
    HealthStatus,
    RateLimited,
    SupervisorError,
    UnknownDependency,
)

if TYPE_CHECKING:
    from supervisor import Supervisor

__all__ = ("lifespan", "app", "install_error_handlers")

#: Seconds between SSE keep-alive comments (proxies close idle connections).
PING = 15.0
#: ``/events`` clients served at once, by default.
MAX_EVENT_CLIENTS = 100
#: Seconds one send to an ``/events`` client may take, by default, before it is dropped.
SEND_TIMEOUT = 10.0
#: ``Retry-After`` (seconds) of the 503 answered past ``max_event_clients``.
RETRY_AFTER = 5

#: The longest ``Retry-After`` (seconds) :func:`install_error_handlers` sends: a day.
MAX_RETRY_AFTER = 86_400

_log = logging.getLogger("ringfence")

#: Each error :func:`install_error_handlers` maps: its status code and its body's ``error``.
_HTTP: Final[dict[type[SupervisorError], tuple[int, str]]] = {
    BreakerOpen: (503, "breaker_open"),
    BulkheadFull: (503, "bulkhead_full"),
    RateLimited: (429, "rate_limited"),
    DeadlineExceeded: (504, "deadline_exceeded"),
    AttemptTimeout: (504, "attempt_timeout"),
}


def lifespan(
    supervisor: Supervisor,
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """
    A Starlette/FastAPI ``lifespan`` that enters *supervisor* at startup and leaves it at
    shutdown (calls queued then fail with ``SupervisorClosed``; see the README).

    An application with a lifespan of its own enters the supervisor in it instead:
    ``async with supervisor: yield``.

    Args:
        supervisor: a supervisor not running now (one that was left is entered again,
            with fresh actors: the lifespan may run once per test).

    Returns:
        ``lifespan(app)``, an async context manager factory, for ``Starlette(lifespan=...)``
        or ``FastAPI(lifespan=...)``.
    """

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        async with supervisor:
            yield

    return run


def app(
    supervisor: Supervisor,
    *,
    ping: float = PING,
    buffer: int = 1000,
    max_event_clients: int = MAX_EVENT_CLIENTS,
    send_timeout: float = SEND_TIMEOUT,
) -> Starlette:
    """
    The routes in this module's docstring, as a Starlette app to mount.

    It does not enter the supervisor: use :func:`lifespan` (a mounted app's own lifespan is
    not run by Starlette or FastAPI).

    Args:
        supervisor: the supervisor to show.
        ping: seconds between keep-alive comments on ``/events`` (0: none).
        buffer: each ``/events`` client's event buffer (``supervisor.events(buffer=...)``).
        max_event_clients: ``/events`` clients served at once; past them, 503 with
            ``Retry-After``.
        send_timeout: seconds one send to an ``/events`` client may take; a client that
            stopped reading is dropped after that.

    Returns:
        A Starlette application.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument out of its range.
    """
    _check_int("buffer", buffer)
    _check_int("max_event_clients", max_event_clients)
    _check_seconds("ping", ping, "seconds >= 0 (0: no keep-alive)", zero=True)
    _check_seconds("send_timeout", send_timeout, "seconds > 0", zero=False)
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

    events = _Events(supervisor, ping, buffer, max_event_clients, float(send_timeout))
    return Starlette(
        routes=[
            Route("/", dashboard),
            Route("/health", health),
            Route("/status", status),
            Route("/status/{name:str}", one),
            Route("/events", events, methods=["GET"]),
        ]
    )


def install_error_handlers(app: Starlette) -> None:
    """
    Answer ringfence's rejections and timeouts escaping *app*'s routes as HTTP errors
    (the table in this module's docstring): ``BreakerOpen`` and ``BulkheadFull`` 503,
    ``RateLimited`` 429, each with ``Retry-After`` when it is known and finite (at most
    :data:`MAX_RETRY_AFTER`); ``DeadlineExceeded`` and ``AttemptTimeout`` 504. The body is
    JSON naming the dependency. Any other error is left to the app.

    One handler per error type, not one for ``Exception``: Starlette re-raises an error its
    ``Exception`` handler answered, and uvicorn then closes the keep-alive connection.

    Args:
        app: a Starlette or FastAPI application (anything with ``add_exception_handler``).

    Raises:
        TypeError: *app* has no ``add_exception_handler``.
    """
    add = getattr(app, "add_exception_handler", None)
    if not callable(add):
        msg = (
            "'app' must be a Starlette or FastAPI application (with add_exception_handler),"
            f" got {app!r} of type {type(app).__name__}"
        )
        raise TypeError(msg)
    for error_type in _HTTP:
        add(error_type, _error_response)


async def _error_response(request: Request, error: Exception) -> Response:
    """One of ringfence's errors as its HTTP answer (see :func:`install_error_handlers`)."""
    status_code, name = next(
        (code for error_type, code in _HTTP.items() if isinstance(error, error_type)),
        (503, "unavailable"),
    )
    hint = getattr(error, "retry_after", None)
    body = {
        "error": name,
        "dependency": getattr(error, "dependency", None),
        "detail": str(error),
        "retry_after": hint,
    }
    headers = {"Cache-Control": "no-store"}
    if isinstance(hint, int | float) and math.isfinite(hint) and hint >= 0:
        headers["Retry-After"] = str(min(math.ceil(hint), MAX_RETRY_AFTER))
    return _json(body, status_code, headers)


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"'{name}' must be an int >= 1, got {value!r}"
        raise TypeError(msg)
    if value < 1:
        msg = f"'{name}' must be an int >= 1, got {value!r}"
        raise ValueError(msg)


def _check_seconds(name: str, value: object, rule: str, *, zero: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"'{name}' must be {rule}, got {value!r}"
        raise TypeError(msg)
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        msg = f"'{name}' must be {rule}, got {value!r}"
        raise ValueError(msg)


@final
class _Events:
    """
    ``GET /events``, as a plain ASGI app (so that taking a client's place and giving it back
    happen in one ``try``, around the whole response).
    """

    __slots__ = ("_buffer", "_clients", "_frames", "_limit", "_ping", "_send_timeout", "_sup")

    def __init__(
        self, supervisor: Supervisor, ping: float, buffer: int, limit: int, send_timeout: float
    ) -> None:
        self._sup = supervisor
        self._ping = ping
        self._buffer = buffer
        self._limit = limit
        self._send_timeout = send_timeout
        self._clients = 0
        self._frames = _Frames()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = Request(scope).query_params.get("kinds")
        kinds = [kind.strip() for kind in raw.split(",") if kind.strip()] if raw else None
        try:
            stream = self._sup.events(kinds=kinds, buffer=self._buffer)
        except ValueError as error:
            await _json({"error": str(error)}, 400)(scope, receive, send)
            return
        async with stream:  # unsubscribed however this ends
            if self._clients >= self._limit:
                await self._busy(scope, receive, send)
                return
            self._clients += 1
            try:
                response = EventSourceResponse(
                    _messages(self._sup, stream, self._frames),
                    ping=self._ping,
                    send_timeout=self._send_timeout,
                )
                await response(scope, receive, send)
            except SendTimeoutError:
                # The client stopped reading: drop it (the server closes the connection).
                _dropped(self._send_timeout)
            finally:
                self._clients -= 1

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {
            "error": (
                f"/events is serving its {self._limit} clients (max_event_clients); "
                f"try again in {RETRY_AFTER} s"
            ),
            "max_event_clients": self._limit,
        }
        headers = {"Retry-After": str(RETRY_AFTER), "Cache-Control": "no-store"}
        await _json(body, 503, headers)(scope, receive, send)


@final
class _Frames:
    """
    The SSE frame of each recent event, encoded once for every client. Keyed by the event's
    identity, each entry holding its event (so an id cannot be reused while it is kept); an
    event that carries ``dropped`` is one client's own and is not kept.
    """

    __slots__ = ("_kept",)

    #: events kept: more than one client is likely to lag behind
    SIZE: Final = 64

    def __init__(self) -> None:
        self._kept: dict[int, tuple[Event, bytes]] = {}

    def __call__(self, event: Event) -> bytes:
        kept = self._kept.get(id(event))
        if kept is not None and kept[0] is event:
            return kept[1]
        frame = _frame(event.kind, _dumps(event.to_dict()))
        if not event.dropped:
            if len(self._kept) >= self.SIZE:
                del self._kept[next(iter(self._kept))]
            self._kept[id(event)] = (event, frame)
        return frame


def _dropped(send_timeout: float) -> None:
    """Say that an /events client was dropped, as ringfence's other lines are said."""
    if structlog.is_configured():
        structlog.get_logger("ringfence").warning(
            "ringfence.events_client_dropped", send_timeout=send_timeout
        )
    else:
        _log.warning("ringfence.events_client_dropped send_timeout=%r", send_timeout)


def _frame(name: str, data: str) -> bytes:
    """One SSE message (``data`` is JSON: one line)."""
    return f"event: {name}\r\ndata: {data}\r\n\r\n".encode()


async def _messages(
    supervisor: Supervisor, stream: EventStream, frames: _Frames
) -> AsyncIterator[bytes]:
    """The SSE messages of one client: the snapshot, then each event until either side ends."""
    async with stream:
        yield _frame("snapshot", _dumps(_statuses(supervisor)))
        async for event in stream:
            if not stream.pending:
                yield frames(event)
                continue
            # Behind: what it has buffered goes out in one send.
            batch = [frames(event)]
            while stream.pending:
                batch.append(frames(await anext(stream)))
            yield b"".join(batch)


def _statuses(supervisor: Supervisor) -> dict[str, object]:
    return {name: status.to_dict() for name, status in supervisor.status().items()}


def _json(
    body: object, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        _dumps(body), status_code=status_code, headers=headers, media_type="application/json"
    )


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
