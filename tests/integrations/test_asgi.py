"""
The ASGI integration, through the example FastAPI app under a real uvicorn server, driven with
httpx: health, status, the events stream, the dashboard route.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType

import httpx

from .conftest import LiveServer

#: Lines read from /events before giving up on an expected message.
MAX_LINES = 200


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
