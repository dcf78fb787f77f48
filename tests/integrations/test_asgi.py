"""
The ASGI integration, through the example FastAPI app under a real uvicorn server, driven with
httpx: health, status, the events stream, the dashboard route. The bounds of ``/events`` (how
many clients, how long a send may take) are also driven in-process, on both backends, by fake
ASGI clients whose ``receive`` and ``send`` the test controls.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.routing import Mount

from policies import Retry, backoff
from supervisor import Supervisor
from supervisor.integrations.asgi import app as ringfence_app
from supervisor.integrations.asgi import lifespan

from .conftest import LiveServer

#: Lines read from /events before giving up on an expected message.
MAX_LINES = 200
#: Seconds an in-process test may take (virtual on trio): past the app's send timeout (10 s)
#: and ping (15 s), so that neither can race it.
GUARD = 60.0


def sse_messages(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, object]]]:
    """Parse server-sent events: (event name, JSON data) per message; comments skipped."""
    name, data = "message", list[str]()
    for count, line in enumerate(lines):
        if count >= MAX_LINES:
            msg = f"no expected message within {MAX_LINES} lines"
            raise AssertionError(msg)
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", list[str]()
        elif line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].strip())


class Client:
    """
    One fake ASGI client of one request. ``leave()`` makes ``receive`` answer
    ``http.disconnect``; a *stalled* client's sends of body never return (a reader that stopped
    reading: the server's buffers are full). ``done`` is set when the app has answered.
    """

    def __init__(self, *, stalled: bool = False) -> None:
        self.stalled = stalled
        self.messages: list[dict[str, Any]] = []
        self.gone = anyio.Event()
        self.body = anyio.Event()  # a first body message was sent (or is being sent)
        self.done = anyio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body":
            self.body.set()
            if self.stalled:
                await anyio.sleep_forever()

    def leave(self) -> None:
        self.gone.set()

    async def run(self, app: Any, query: bytes = b"") -> None:
        """``GET /events`` on *app*, as an ASGI server would call it."""
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/events",
            "raw_path": b"/events",
            "root_path": "",
            "query_string": query,
            "headers": [(b"host", b"test")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        try:
            await app(scope, self.receive, self.send)
        finally:
            self.done.set()

    def bodies(self) -> list[str]:
        """Each non-empty body sent, one per send."""
        return [m["body"].decode() for m in self.messages[1:] if m.get("body")]

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.messages[0]["headers"]}

    @property
    def text(self) -> str:
        return b"".join(m.get("body", b"") for m in self.messages[1:]).decode()


@pytest.mark.anyio
async def test_events_past_max_event_clients_get_503_with_retry_after() -> None:
    """Past the cap, /events answers 503, a short JSON body and Retry-After; no subscription."""
    supervisor = Supervisor()
    app = ringfence_app(supervisor, max_event_clients=2)
    first, second, refused = Client(), Client(), Client()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.run, app)
            tg.start_soon(second.run, app)
            await first.body.wait()
            await second.body.wait()
            await refused.run(app)  # answered at once
            assert 2 == supervisor.subscribers
            first.leave()
            second.leave()
    assert (200, 200, 503) == (first.status, second.status, refused.status)
    assert "event: snapshot" in first.text
    assert refused.headers["content-type"] == "application/json"
    assert int(refused.headers["retry-after"]) >= 1
    body = json.loads(refused.text)
    assert body == {"error": body["error"], "max_event_clients": 2}
    assert "/events" in body["error"]
    assert 0 == supervisor.subscribers


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["disconnect", "disconnect mid-send", "cancelled"])
async def test_an_events_slot_frees_when_its_client_goes(how: str) -> None:
    """
    However a client's response ends (http.disconnect while it waits for an event or while a
    send is stuck, or the server cancelling the request), its subscription and its slot go.
    """
    supervisor = Supervisor()
    # no send times out here: only the client or the server ends a response
    app = ringfence_app(supervisor, max_event_clients=1, send_timeout=3600.0)
    clients = [Client(stalled=how == "disconnect mid-send") for _ in range(3)]
    refused: list[int] = []
    with anyio.fail_after(GUARD):
        for client in clients:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.run, app)
                await client.body.wait()
                await anyio.wait_all_tasks_blocked()
                assert 1 == supervisor.subscribers
                late = Client()
                await late.run(app)
                refused.append(late.status)
                if how == "cancelled":
                    tg.cancel_scope.cancel()
                else:
                    client.leave()
            assert client.done.is_set()
            assert 0 == supervisor.subscribers
    assert [200] * 3 == [client.status for client in clients]
    assert [503] * 3 == refused


@pytest.mark.anyio
async def test_a_stalled_events_client_is_dropped_after_send_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client whose sends never return is dropped after send_timeout; its slot frees."""
    structlog.reset_defaults()
    caplog.set_level(logging.WARNING, logger="ringfence")
    supervisor = Supervisor()
    app = ringfence_app(supervisor, max_event_clients=1, send_timeout=0.05)
    stalled, after = Client(stalled=True), Client()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stalled.run, app)
            await stalled.body.wait()
            assert 1 == supervisor.subscribers
            await stalled.done.wait()  # the send timed out: the app answered
            assert 0 == supervisor.subscribers
            tg.start_soon(after.run, app)
            await after.body.wait()
            assert 1 == supervisor.subscribers
            after.leave()
    assert (200, 200) == (stalled.status, after.status)
    assert "event: snapshot" in after.text
    assert ["ringfence.events_client_dropped send_timeout=0.05"] == [
        record.getMessage() for record in caplog.records
    ]


class Gated(Client):
    """A client whose sends of body wait for ``gate`` once it is closed (a slow reader)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()
        self.gate.set()
        self.waiting = anyio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        await super().send(message)


def sse_text(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The messages of *text*, SSE frames as sent."""
    return list(sse_messages(iter(text.replace("\r\n", "\n").split("\n"))))


@pytest.mark.anyio
async def test_a_client_behind_gets_its_buffered_events_in_one_send_with_dropped() -> None:
    """
    While a client's send is stuck, its buffer keeps the newest events; once the send
    returns, what it has buffered goes out in one send, the first saying how many it lost.
    """
    supervisor = Supervisor()
    script = iter(range(1000))

    async def flaky() -> str:
        if next(script) % 2 == 0:
            raise ConnectionError("once")
        return "ok"

    supervisor.register(
        "dep", flaky, retry=Retry(attempts=2, backoff=backoff.constant(0.0), budget=None)
    )
    app = ringfence_app(supervisor, buffer=3)
    slow, quick = Gated(), Client()
    with anyio.fail_after(GUARD):
        async with supervisor, anyio.create_task_group() as tg:
            tg.start_soon(slow.run, app, b"kinds=retry_scheduled")
            tg.start_soon(quick.run, app, b"kinds=retry_scheduled")
            await slow.body.wait()
            await quick.body.wait()
            slow.gate = anyio.Event()
            await supervisor.call("dep")  # retry 1: the slow client's send gets stuck on it
            await slow.waiting.wait()
            for _ in range(9):  # retries 2..10: the slow client's buffer keeps the last 3
                await supervisor.call("dep")
                await anyio.wait_all_tasks_blocked()
            slow.gate.set()
            await anyio.wait_all_tasks_blocked()
            slow.leave()
            quick.leave()
    [snapshot, first, rest] = slow.bodies()
    assert "snapshot" == sse_text(snapshot)[0][0]
    assert [("retry_scheduled", 0)] == [(name, e["dropped"]) for name, e in sse_text(first)]
    # retries 2..7 were lost while retry 1's send was stuck; 8, 9 and 10 come in one send
    assert [("retry_scheduled", 6), ("retry_scheduled", 0), ("retry_scheduled", 0)] == [
        (name, e["dropped"]) for name, e in sse_text(rest)
    ]
    everything = sse_text("".join(quick.bodies()))
    assert ["snapshot"] + ["retry_scheduled"] * 10 == [name for name, _ in everything]
    assert not any(e.get("dropped") for _, e in everything[1:])  # the quick one lost none


@pytest.mark.anyio
async def test_an_events_response_ends_when_the_supervisor_stops() -> None:
    """The supervisor leaving ends each /events response cleanly, and gives its slot back."""
    supervisor = Supervisor()
    app = ringfence_app(supervisor, max_event_clients=1)
    first, second = Client(), Client()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            async with supervisor:
                tg.start_soon(first.run, app)
                await first.body.wait()
            await first.done.wait()
            await second.run(app)  # after the end: a snapshot, then the end at once
    assert (200, 200) == (first.status, second.status)
    assert {"type": "http.response.body", "body": b"", "more_body": False} == first.messages[-1]
    assert "event: snapshot" in second.text
    assert 0 == supervisor.subscribers


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"max_event_clients": 0}, ValueError, "'max_event_clients' must be an int >= 1, got 0"),
        ({"max_event_clients": 2.0}, TypeError, "'max_event_clients' must be an int >= 1, got 2.0"),
        (
            {"max_event_clients": True},
            TypeError,
            "'max_event_clients' must be an int >= 1, got True",
        ),
        ({"send_timeout": 0}, ValueError, "'send_timeout' must be seconds > 0, got 0"),
        ({"send_timeout": -1.0}, ValueError, "'send_timeout' must be seconds > 0, got -1.0"),
        ({"send_timeout": math.inf}, ValueError, "'send_timeout' must be seconds > 0, got inf"),
        ({"send_timeout": math.nan}, ValueError, "'send_timeout' must be seconds > 0, got nan"),
        ({"send_timeout": "5"}, TypeError, "'send_timeout' must be seconds > 0, got '5'"),
        ({"buffer": 0}, ValueError, "'buffer' must be an int >= 1, got 0"),
        ({"ping": -1}, ValueError, "'ping' must be seconds >= 0 (0: no keep-alive), got -1"),
    ],
)
def test_app_refuses_bad_arguments_naming_them(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Each bound is checked when the app is built, with the argument's name and rule."""
    with pytest.raises(error) as raised:
        ringfence_app(Supervisor(), **arguments)
    assert message == str(raised.value)


def test_events_past_the_cap_get_503_under_uvicorn() -> None:
    """A real server: the second /events client is refused while the first holds the slot."""
    supervisor = Supervisor()
    supervisor.register("dep", lambda: "ok")
    web = Starlette(
        lifespan=lifespan(supervisor),
        routes=[Mount("/ringfence", ringfence_app(supervisor, max_event_clients=1))],
    )
    web.state.supervisor = supervisor
    server = LiveServer(web)
    server.start()
    try:
        with httpx.Client(base_url=server.base, timeout=5.0) as client:
            with client.stream("GET", "/ringfence/events") as first:
                messages = sse_messages(first.iter_lines())
                assert "snapshot" == next(messages)[0]
                refused = client.get("/ringfence/events")
                assert 503 == refused.status_code
                assert int(refused.headers["retry-after"]) >= 1
                assert 1 == refused.json()["max_event_clients"]
            # The server notices the disconnect on its own loop: try again, a bounded number
            # of times, each try a request the server answers on that loop.
            codes: list[int] = []
            while 200 not in codes and len(codes) < 200:
                with client.stream("GET", "/ringfence/events") as again:
                    codes.append(again.status_code)
                    if again.status_code == 200:
                        assert "snapshot" == next(sse_messages(again.iter_lines()))[0]
            assert 200 == codes[-1], codes
    finally:
        server.stop()


def test_health_turns_503_when_a_critical_dependency_is_isolated(live: LiveServer) -> None:
    """/health: 200 healthy, then 503 unhealthy naming the isolated critical dependency."""
    with httpx.Client(base_url=live.base, timeout=5.0) as client:
        before = client.get("/ringfence/health")
        assert (200, "healthy", []) == (
            before.status_code,
            before.json()["status"],
            before.json()["down"],
        )
        assert {"state": "isolated", "dependency": "llm"} == client.post(
            "/admin/isolate/llm"
        ).json()
        after = client.get("/ringfence/health")
    assert 503 == after.status_code
    assert {
        "status": "unhealthy",
        "down": ["llm"],
        "critical_down": ["llm"],
        "states": {"llm": "isolated", "search": "closed", "db": "closed"},
    } == after.json()


def test_status_json_for_all_and_for_one(live: LiveServer) -> None:
    """/status lists every dependency's figures; /status/{name} gives one, as JSON."""
    with httpx.Client(base_url=live.base, timeout=5.0) as client:
        assert 200 == client.get("/db/k").status_code
        everything = client.get("/ringfence/status")
        one = client.get("/ringfence/status/db")
    assert "application/json" == everything.headers["content-type"]
    statuses = everything.json()
    assert ["llm", "search", "db"] == list(statuses)
    db = one.json()
    assert ("db", "closed", 1, 0) == (db["name"], db["state"], db["calls"], db["failures"])
    assert db["wall"] > 0
    assert {"p50", "p95", "p99"} == set(db["latency"])


def test_unknown_dependency_is_404_listing_the_registered_ones(live: LiveServer) -> None:
    """/status/{unknown}: 404 whose JSON names the registered dependencies."""
    response = httpx.get(live.base + "/ringfence/status/nope", timeout=5.0)
    assert 404 == response.status_code
    body = response.json()
    assert ["llm", "search", "db"] == body["registered"]
    assert "nope" in body["error"]


def test_dashboard_is_served_under_the_mount_prefix(live: LiveServer) -> None:
    """GET /ringfence/ is the dashboard page; /ringfence redirects there; URLs are relative."""
    with httpx.Client(base_url=live.base, timeout=5.0, follow_redirects=True) as client:
        page = client.get("/ringfence")
    assert (200, "/ringfence/") == (page.status_code, page.url.path)
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>ringfence</title>" in page.text
    assert 'fetch(BASE + "status")' in page.text
    assert "http" not in page.text.split("<script>")[1]  # no absolute URL, no CDN


def test_events_stream_delivers_the_transition(live: LiveServer) -> None:
    """/events: a snapshot first, then the breaker transition an isolate caused."""
    with (
        httpx.Client(base_url=live.base, timeout=5.0) as client,
        client.stream("GET", "/ringfence/events") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        messages = sse_messages(stream.iter_lines())
        name, snapshot = next(messages)
        assert ("snapshot", ["llm", "search", "db"]) == (name, list(snapshot))
        # subscribed before the snapshot was sent: the transition cannot be missed
        assert 200 == client.post("/admin/isolate/search").status_code
        name, event = next(messages)
        health = client.get("/ringfence/health")  # search is not critical: degraded, still 200
        assert (200, "degraded", ["search"]) == (
            health.status_code,
            health.json()["status"],
            health.json()["down"],
        )
    assert "breaker_transition" == name
    assert {
        "kind": "breaker_transition",
        "dependency": "search",
        "source": "closed",
        "target": "isolated",
        "reason": "admin",
    } == {key: event[key] for key in ("kind", "dependency", "source", "target", "reason")}
    assert isinstance(event["wall"], float)


def test_events_kinds_filter_and_bad_kind(live: LiveServer) -> None:
    """?kinds= filters the stream; an unknown kind is a 400 naming the known ones."""
    bad = httpx.get(live.base + "/ringfence/events?kinds=nonsense", timeout=5.0)
    assert 400 == bad.status_code
    assert "breaker_transition" in bad.json()["error"]
    with (
        httpx.Client(base_url=live.base, timeout=5.0) as client,
        client.stream("GET", "/ringfence/events?kinds=call_rejected") as stream,
    ):
        messages = sse_messages(stream.iter_lines())
        assert "snapshot" == next(messages)[0]
        client.post("/admin/isolate/search")  # a transition: filtered out
        assert 503 == client.get("/search").status_code  # a rejection: delivered
        name, event = next(messages)
    assert ("call_rejected", "search", "breaker_isolated") == (
        name,
        event["dependency"],
        event["reason"],
    )


def test_a_client_leaving_mid_stream_is_unsubscribed(live: LiveServer) -> None:
    """Clients that disconnect from /events leave no subscription behind; others still work."""
    with httpx.Client(base_url=live.base, timeout=5.0) as client:
        for _ in range(3):
            with client.stream("GET", "/ringfence/events") as stream:
                # keep the parser referenced: a discarded one closes httpx's line iterator,
                # and with it the connection
                messages = sse_messages(stream.iter_lines())
                assert "snapshot" == next(messages)[0]
                assert live.subscribers() >= 1  # the previous one may still be leaving
        # The server notices each disconnect on its own loop: poll, a bounded number of times,
        # each poll a request the server answers on that loop.
        left = [live.subscribers()]
        while left[-1] and len(left) < 200:
            assert 200 == client.get("/ringfence/health").status_code
            left.append(live.subscribers())
        assert 0 == left[-1], left
        with client.stream("GET", "/ringfence/events") as stream:
            messages = sse_messages(stream.iter_lines())
            assert "snapshot" == next(messages)[0]
            client.post("/admin/isolate/db")
            name, event = next(messages)
    assert ("breaker_transition", "db") == (name, event["dependency"])


def test_lifespan_enters_the_supervisor_at_startup_and_leaves_at_shutdown(
    example: ModuleType,
) -> None:
    """The app's lifespan runs the supervisor exactly while the server runs."""
    app = example.create_app(seed=3)
    supervisor = app.state.supervisor
    server = LiveServer(app)
    assert repr(supervisor).startswith("<Supervisor new")
    server.start()
    try:
        assert repr(supervisor).startswith("<Supervisor running")
        assert 200 == httpx.get(server.base + "/db/x", timeout=5.0).status_code
    finally:
        server.stop()
    assert repr(supervisor).startswith("<Supervisor closed")
    assert 1 == supervisor.status("db").calls
