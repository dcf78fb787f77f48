"""supervisor.events() and the counters behind metrics, through a real supervisor (issue #11)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
import structlog

from policies import Breaker, Bulkhead, Retry, backoff
from supervisor import (
    BreakerOpen,
    BreakerTransition,
    CallRejected,
    RetryScheduled,
    Supervisor,
)

from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio


async def test_transitions_retries_and_rejections_arrive_in_order_with_both_clocks(
    sup: Supervisor,
) -> None:
    """A retried failure, an opening and a rejection come out as typed events, in order."""
    fake = Fake(ConnectionError("a"), ConnectionError("b"))
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=2, backoff=backoff.constant(1.0)),
        breaker=Breaker(failure_threshold=2, break_duration=30.0),
    )
    stream = sup.events()
    with guard():
        async with sup:
            start = anyio.current_time()
            with pytest.raises(ConnectionError):
                await sup.call("dep")
            with pytest.raises(BreakerOpen):
                await sup.call("dep")
            status = sup.status("dep")
        got = [event async for event in stream]  # ends: the supervisor has left
    assert [RetryScheduled, BreakerTransition, CallRejected] == [type(e) for e in got]
    retry, opened, rejected = got
    assert (1, 1.0, "ConnectionError") == (retry.attempt, retry.delay, retry.error)  # type: ignore[attr-defined]
    assert ("closed", "open", "consecutive_failures", 30.0) == (
        opened.source,
        opened.target,
        opened.reason,
        opened.break_duration,  # type: ignore[attr-defined]
    )
    assert ("breaker_open", "open") == (rejected.reason, rejected.state)  # type: ignore[attr-defined]
    assert {"dep"} == {e.dependency for e in got}
    assert all(start <= e.at for e in got)
    assert all(abs((e.wall - got[0].wall) - (e.at - got[0].at)) < 1.0 for e in got)
    assert (1, 0, {"breaker_open": 1}, 1) == (
        status.retries,
        status.fallbacks,
        dict(status.rejected_by),
        status.rejected,
    )


async def test_rejections_by_reason_add_up_to_rejected(sup: Supervisor) -> None:
    """Bulkhead, breaker and queued-at-opening rejections are counted by reason."""
    gate = Gate()
    fake = Fake(gate, ConnectionError("x"))
    sup.register(
        "dep",
        fake,
        breaker=Breaker(failure_threshold=1, break_duration=60.0),
        bulkhead=Bulkhead(max_concurrent=1, max_queued=1),
        fallback=lambda error: type(error).__name__,
    )
    with guard():
        async with anyio.create_task_group() as tg, sup:
            results: list[str] = []

            async def call() -> None:
                results.append(await sup.call("dep"))

            tg.start_soon(call)
            await fake.entered.wait()
            tg.start_soon(call)  # queued
            await anyio.wait_all_tasks_blocked()
            assert "BulkheadFull" == await sup.call("dep")  # neither slot nor queue place
            gate.open()
            await anyio.wait_all_tasks_blocked()
            assert "BreakerOpen" == await sup.call("dep")
            status = sup.status("dep")
    assert ["ok", "ConnectionError"] == results
    assert {"bulkhead_full": 1, "breaker_open": 1} == dict(status.rejected_by)
    assert sum(status.rejected_by.values()) == status.rejected
    assert 3 == status.fallbacks


async def test_a_subscriber_that_never_reads_stays_bounded(sup: Supervisor) -> None:
    """Events for a reader that never reads: its buffer keeps the newest, calls are unaffected."""
    fake = Fake(*[ConnectionError("x")] * 50)
    sup.register("dep", fake, retry=Retry(attempts=2, backoff=backoff.constant(0.0), budget=None))
    stream = sup.events(kinds=[RetryScheduled], buffer=5)
    readers = [sup.events() for _ in range(1000)]  # a thousand idle subscribers
    with guard():
        async with sup:
            for _ in range(25):
                with pytest.raises(ConnectionError):
                    await sup.call("dep")
            assert 5 == stream.pending
        got = [event async for event in stream]
    assert 50 == fake.count
    assert [20, 0, 0, 0, 0] == [e.dropped for e in got]
    assert all(25 == r.pending for r in readers)


async def test_idle_subscribers_add_no_event_to_a_retried_call(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A hundred subscribers whose buffers are full: each retried call builds its one event,
    as with none (each full buffer used to rebuild its head event to carry `dropped`).
    """
    fake = Fake(*[ConnectionError("x")] * 20)
    sup.register("dep", fake, retry=Retry(attempts=2, backoff=backoff.constant(0.0), budget=None))
    idle = [sup.events(buffer=1) for _ in range(100)]
    built: list[RetryScheduled] = []
    init = RetryScheduled.__init__

    def counted(self: RetryScheduled, **fields: Any) -> None:
        built.append(self)
        init(self, **fields)

    monkeypatch.setattr(RetryScheduled, "__init__", counted)
    with guard():
        async with sup:
            for _ in range(10):
                with pytest.raises(ConnectionError):
                    await sup.call("dep")
            assert 10 == len(built)  # one retry each
        monkeypatch.undo()
        got = [[(e.attempt, e.dropped) async for e in stream] for stream in idle]  # type: ignore[attr-defined]
    assert 20 == fake.count
    assert all([(1, 9)] == events for events in got)


async def test_leaving_the_loop_unsubscribes_and_the_supervisor_exit_ends_the_stream(
    sup: Supervisor,
) -> None:
    """Breaking out of `async for` ends the subscription; a waiting reader ends at exit."""
    sup.register("dep", Fake(ConnectionError("x")), breaker=Breaker(failure_threshold=1))
    ended: list[str] = []
    first: list[str] = []
    with guard():
        async with anyio.create_task_group() as tg, sup:

            async def wait_forever() -> None:
                async for _ in sup.events(kinds=["actor_crashed"]):
                    pass  # pragma: no cover - none comes
                ended.append("ended")

            async def read_one() -> None:
                async for event in sup.events():
                    first.append(event.kind)
                    break

            tg.start_soon(wait_forever)
            tg.start_soon(read_one)
            await anyio.wait_all_tasks_blocked()
            assert 2 == sup.subscribers
            with pytest.raises(ConnectionError):
                await sup.call("dep")
            await anyio.wait_all_tasks_blocked()
            assert 1 == sup.subscribers  # the one left by `break` is gone
    assert ["ended"] == ended
    assert ["breaker_transition"] == first


def test_without_a_structlog_configuration_lines_go_to_the_stdlib_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An application that never configured structlog gets stdlib records, not stdout lines."""
    structlog.reset_defaults()
    sup = Supervisor()
    sup.register("dep", Fake(ConnectionError("x")), breaker=Breaker(failure_threshold=1))

    async def main() -> None:
        async with sup:
            with pytest.raises(ConnectionError):
                await sup.call("dep")

    with caplog.at_level(logging.INFO, logger="ringfence"):
        anyio.run(main)
    assert ["ringfence.breaker_opened"] == [r.getMessage().split()[0] for r in caplog.records]
    assert logging.WARNING == caplog.records[0].levelno
