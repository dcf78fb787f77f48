"""
What does one published event cost with 0, 1, 100 and 500 subscribers?

    python -m benchmarks.events [--backend trio] [--quick] [--before REV]

Two figures per subscriber count, each a median over interleaved rounds:

* ``publish``: ``EventHub.publish`` alone, in two states of its subscribers: *waiting*
  (each reader is parked in ``__anext__``, so every publish wakes it; the readers drain
  between rounds, untimed) and *full* (nobody reads and every buffer is full, so every publish
  drops one event per subscriber);
* ``retried call``: ``await supervisor.call(...)`` of a call that fails once and is retried
  at once, with N clients of the ASGI app's ``GET /events`` run in-process on a fake ASGI
  server, either *reading* (their ``send`` returns at once) or *stalled* (their ``send``
  never returns after the snapshot). The call publishes one ``RetryScheduled`` and yields
  once, so its time includes the loop work the event gave the clients.

``--before REV`` loads ``supervisor/_events.py`` and ``supervisor/integrations/asgi.py`` as
they were at the git revision REV and measures them in the same run, interleaved with the
current ones, so the table's ratios compare like with like on this shared machine.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import subprocess
import sys
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from policies import Retry, backoff
from supervisor import Supervisor, _events
from supervisor.integrations import asgi

from ._harness import Table, header, median

__all__ = ("run",)

ROOT = Path(__file__).resolve().parents[1]
COUNTS = (0, 1, 100, 500)
#: each subscriber's buffer in the *full* state, and each /events client's
FULL_BUFFER = 16


class Version:
    """One version of the event hub and the ASGI app: the current one, or one loaded from git."""

    def __init__(self, name: str, events: Any, web: Any) -> None:
        self.name = name
        self.events = events
        self.web = web

    @classmethod
    def from_git(cls, rev: str) -> Version:
        events = _load(rev, "supervisor/_events.py", "supervisor._events_before", "supervisor")
        web = _load(
            rev,
            "supervisor/integrations/asgi.py",
            "supervisor.integrations._asgi_before",
            "supervisor.integrations",
        )
        return cls(rev, events, web)

    def retry(self, n: int) -> Any:
        return self.events.RetryScheduled(
            dependency="dep", at=float(n), wall=1e9 + n, attempt=n, delay=0.0, error=None
        )

    def app(self, supervisor: Supervisor, clients: int) -> Any:
        options: dict[str, Any] = {"ping": 3600.0, "buffer": FULL_BUFFER}
        if "max_event_clients" in inspect.signature(self.web.app).parameters:
            options["max_event_clients"] = max(clients, 1)
        return self.web.app(supervisor, **options)


def _load(rev: str, path: str, name: str, package: str) -> types.ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType(name)
    module.__file__ = f"{rev}:{path}"
    module.__package__ = package
    sys.modules[name] = module
    # the project's own history, for a like-for-like comparison
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


CURRENT = Version("current", _events, asgi)


# -- publish alone ------------------------------------------------------------------------------


async def _publish_waiting(version: Version, subscribers: int, rounds: int) -> float:
    """ns per publish while every subscriber is parked in ``__anext__``."""
    hub = version.events.EventHub()
    samples: list[float] = []
    async with anyio.create_task_group() as tg:
        for _ in range(subscribers):
            tg.start_soon(_drain, hub.subscribe())
        await anyio.wait_all_tasks_blocked()
        gc.collect()
        for n in range(rounds):
            event = version.retry(n)
            start = time.perf_counter_ns()
            hub.publish(event)
            samples.append(time.perf_counter_ns() - start)
            await anyio.wait_all_tasks_blocked()
        hub.close()
    return median(samples)


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


async def _publish_full(version: Version, subscribers: int, rounds: int) -> float:
    """ns per publish while every subscriber's buffer is full (each publish drops one)."""
    hub = version.events.EventHub()
    streams = [hub.subscribe(buffer=FULL_BUFFER) for _ in range(subscribers)]
    for n in range(FULL_BUFFER):
        hub.publish(version.retry(n))
    events = [version.retry(n) for n in range(rounds)]
    gc.collect()
    samples: list[float] = []
    for chunk in range(0, rounds, 10):
        batch = events[chunk : chunk + 10]
        start = time.perf_counter_ns()
        for event in batch:
            hub.publish(event)
        samples.append((time.perf_counter_ns() - start) / len(batch))
    hub.close()
    del streams
    return median(samples)


# -- a retried call with /events clients ----------------------------------------------------------


class _Client:
    """One fake ASGI client of ``GET /events``; *stalled*: its sends block after the snapshot."""

    def __init__(self, stalled: bool) -> None:
        self.stalled = stalled
        self.gone = anyio.Event()
        self.snapshot = anyio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body" or not message.get("body"):
            return
        if self.snapshot.is_set() and self.stalled:
            await anyio.sleep_forever()
        self.snapshot.set()


SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/events",
    "raw_path": b"/events",
    "root_path": "",
    "query_string": b"",
    "headers": [],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 80),
}


async def _retried_call(version: Version, clients: int, stalled: bool, rounds: int) -> float:
    """ns per retried call (one RetryScheduled event) with *clients* /events clients."""
    supervisor = Supervisor()
    if version is not CURRENT:
        supervisor._hub = version.events.EventHub()
    script = iter(range(10**9))

    async def flaky() -> str:
        if next(script) % 2 == 0:
            raise ConnectionError("once")
        return "ok"

    supervisor.register(
        "dep", flaky, retry=Retry(attempts=2, backoff=backoff.constant(0.0), budget=None)
    )
    app = version.app(supervisor, clients)
    fakes = [_Client(stalled) for _ in range(clients)]
    samples: list[float] = []
    async with supervisor, anyio.create_task_group() as tg:
        for fake in fakes:
            tg.start_soon(app, dict(SCOPE), fake.receive, fake.send)
            await fake.snapshot.wait()
        if stalled:  # fill their buffers, so every further event drops one for each
            for _ in range(FULL_BUFFER):
                await supervisor.call("dep")
        await anyio.wait_all_tasks_blocked()
        gc.collect()
        for _ in range(rounds):
            start = time.perf_counter_ns()
            await supervisor.call("dep")
            samples.append(time.perf_counter_ns() - start)
            await anyio.wait_all_tasks_blocked()
        for fake in fakes:
            fake.gone.set()
        tg.cancel_scope.cancel()
    return median(samples)


# -- the table ----------------------------------------------------------------------------------

Measure = Callable[[Version, int, int], Awaitable[float]]


def _measures() -> dict[str, Measure]:
    return {
        "publish, readers waiting": _publish_waiting,
        "publish, buffers full": _publish_full,
        "retried call, /events clients reading": lambda v, n, r: _retried_call(v, n, False, r),
        "retried call, /events clients stalled": lambda v, n, r: _retried_call(v, n, True, r),
    }


async def _measure(versions: list[Version], rounds: int, repeats: int) -> dict[Any, float]:
    samples: dict[Any, list[float]] = {}
    for repeat in range(repeats):
        for what, measure in _measures().items():
            for count in COUNTS:
                order = versions if repeat % 2 == 0 else versions[::-1]
                for version in order:
                    value = await measure(version, count, rounds)
                    samples.setdefault((what, count, version.name), []).append(value)
    return {key: median(values) for key, values in samples.items()}


def run(backend: str, *, quick: bool, before: str | None = None) -> tuple[str, dict[Any, float]]:
    versions = [CURRENT] if before is None else [Version.from_git(before), CURRENT]
    rounds, repeats = (50, 1) if quick else (200, 5)
    results = anyio.run(_measure, versions, rounds, repeats, backend=backend)
    columns = ["what", "subscribers"]
    if before is not None:
        columns += [f"before ({before}) µs", "after µs", "after / before"]
    else:
        columns += ["µs"]
    columns += ["vs 0 subscribers"]
    table = Table(columns)
    for what in _measures():
        for count in COUNTS:
            after = results[(what, count, CURRENT.name)]
            zero = results[(what, 0, CURRENT.name)]
            row: list[object] = [what, count]
            if before is not None:
                was = results[(what, count, before)]
                row += [f"{was / 1000:.2f}", f"{after / 1000:.2f}", f"{after / was:.2f}x"]
            else:
                row += [f"{after / 1000:.2f}"]
            if before is not None:
                was_zero = results[(what, 0, before)]
                row.append(f"{after / zero:.1f}x (before: {was / was_zero:.1f}x)")
            else:
                row.append(f"{after / zero:.1f}x")
            table.add(*row)
    text = header("the cost of one event by subscriber count", backend) + "\n" + table.markdown()
    return text, results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--before", help="a git revision to measure in the same run")
    args = parser.parse_args()
    print(run(args.backend, quick=args.quick, before=args.before)[0])


if __name__ == "__main__":
    main()
