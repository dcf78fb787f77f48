"""The event hub on its own: bounded streams, drops, filters, endings (issue #11)."""

from __future__ import annotations

import gc
import logging
import random
import threading
from typing import Any

import anyio
import attrs
import pytest
import structlog

from supervisor._events import (
    BreakerTransition,
    CallRejected,
    Event,
    EventHub,
    EventStream,
    RetryScheduled,
)

from .conftest import guard

pytestmark = pytest.mark.anyio


def retry(n: int) -> RetryScheduled:
    return RetryScheduled(
        dependency="dep", at=float(n), wall=1e9 + n, attempt=n, delay=0.1, error=None
    )


async def test_a_stream_gets_every_event_in_order_then_ends_when_the_hub_closes() -> None:
    """Events published before the first read are kept; closing ends the stream after them."""
    hub = EventHub()
    stream = hub.subscribe()
    for n in range(3):
        hub.publish(retry(n))
    hub.close()
    with guard():
        got = [event async for event in stream]
    assert [0, 1, 2] == [event.attempt for event in got]  # type: ignore[attr-defined]


async def test_a_full_buffer_drops_the_oldest_and_the_next_event_says_how_many() -> None:
    """A subscriber that does not read loses its oldest events, never blocks the publisher."""
    hub = EventHub()
    stream = hub.subscribe(buffer=3)
    for n in range(10):
        hub.publish(retry(n))
    hub.close()
    with guard():
        got = [(event.attempt, event.dropped) async for event in stream]  # type: ignore[attr-defined]
    assert [(7, 7), (8, 0), (9, 0)] == got


async def test_publishing_into_full_buffers_builds_no_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    A publish into full buffers appends and counts: no buffered event is rebuilt to carry
    `dropped` (once per subscriber and event, it made idle subscribers cost every call). Each
    reader builds one event, the one it reads after its gap.
    """
    hub = EventHub()
    streams = [hub.subscribe(buffer=2) for _ in range(50)]
    events = [retry(n) for n in range(10)]
    built: list[RetryScheduled] = []
    init = RetryScheduled.__init__

    def counted(self: RetryScheduled, **fields: Any) -> None:
        built.append(self)
        init(self, **fields)

    monkeypatch.setattr(RetryScheduled, "__init__", counted)
    for event in events:
        hub.publish(event)
    built_by_publishing = len(built)
    hub.close()
    with guard():
        got = [[event async for event in stream] for stream in streams]
    assert 0 == built_by_publishing
    assert 50 == len(built)
    monkeypatch.undo()
    for read in got:
        assert [attrs.evolve(events[8], dropped=8), events[9]] == read
        assert read[1] is events[9]  # delivered as published


async def test_dropped_is_exact_under_any_mix_of_publishing_and_reading() -> None:
    """
    Whatever the interleaving, each event read says exactly how many of this subscriber's
    events were lost between it and the one read before it (its kinds only): read + dropped
    adds up to what was published to it.
    """
    rng = random.Random(20240611)
    hub = EventHub()
    streams: dict[EventStream, str | None] = {
        hub.subscribe(buffer=1): None,
        hub.subscribe(buffer=3): None,
        hub.subscribe(buffer=7): None,
        hub.subscribe(kinds=[CallRejected], buffer=2): "call_rejected",
    }
    sent: dict[EventStream, list[int]] = {stream: [] for stream in streams}
    seen: dict[EventStream, list[tuple[int, int]]] = {stream: [] for stream in streams}

    async def read(stream: EventStream, most: int) -> None:
        for _ in range(min(most, stream.pending)):
            event = await stream.__anext__()
            seen[stream].append((int(event.at), event.dropped))

    with guard():
        for n in range(3000):
            event: Event = retry(n)
            if rng.random() < 0.4:
                event = CallRejected(dependency="dep", at=float(n), wall=1e9, reason="paused")
            hub.publish(event)
            for stream, kind in streams.items():
                if kind is None or kind == event.kind:
                    sent[stream].append(n)
                if rng.random() < 0.2:
                    await read(stream, rng.randint(1, 4))
        hub.close()
        for stream in streams:
            await read(stream, stream.pending)
            assert 0 == stream.pending
    for stream in streams:
        position = {n: index for index, n in enumerate(sent[stream])}
        previous = -1
        for n, dropped in seen[stream]:
            assert position[n] - previous - 1 == dropped
            previous = position[n]
        assert len(sent[stream]) == len(seen[stream]) + sum(d for _, d in seen[stream])
        assert sent[stream][-1] == seen[stream][-1][0]  # the newest is never lost
    assert all(any(d for _, d in seen[stream]) for stream in streams)  # drops did happen


async def test_kinds_filter_by_class_or_name_and_unknown_kinds_are_refused() -> None:
    """`kinds` takes classes or their kind strings; a typo is a ValueError listing the kinds."""
    hub = EventHub()
    by_class = hub.subscribe(kinds=[BreakerTransition])
    by_name = hub.subscribe(kinds=["call_rejected"])
    hub.publish(retry(1))
    hub.publish(CallRejected(dependency="dep", at=1.0, wall=1.0, reason="bulkhead_full"))
    hub.publish(
        BreakerTransition(
            dependency="dep",
            at=2.0,
            wall=2.0,
            source="closed",
            target="open",
            reason="consecutive_failures",
            break_duration=5.0,
            rejected_since_last=0,
        )
    )
    hub.close()
    with guard():
        assert ["breaker_transition"] == [e.kind async for e in by_class]
        assert ["call_rejected"] == [e.kind async for e in by_name]
    with pytest.raises(ValueError, match=r"^unknown event kind 'retry'; known: "):
        hub.subscribe(kinds=["retry"])
    with pytest.raises(ValueError, match=r"^'buffer' must be an int >= 1, got 0$"):
        hub.subscribe(buffer=0)


async def test_a_waiting_reader_wakes_on_publish_and_unsubscribing_stops_delivery() -> None:
    """A reader parked in __anext__ wakes on publish; after aclose() nothing more arrives."""
    hub = EventHub()
    got: list[int] = []
    with guard():
        async with anyio.create_task_group() as tg:
            async with hub.subscribe() as stream:

                async def read() -> None:
                    got.extend([event.attempt async for event in stream])  # type: ignore[attr-defined]

                tg.start_soon(read)
                await anyio.wait_all_tasks_blocked()
                hub.publish(retry(1))
                await anyio.wait_all_tasks_blocked()
            assert 0 == hub.subscribers
            hub.publish(retry(2))
    assert [1] == got  # read before aclose(); 2 was published after it


async def test_a_stream_nobody_holds_is_unsubscribed() -> None:
    """Leaving `async for` over a dropped stream frees its subscription (no leak per visitor)."""
    hub = EventHub()
    for _ in range(1000):
        hub.subscribe()
    gc.collect()
    assert 0 == hub.subscribers


async def test_a_stream_freed_in_a_worker_thread_is_unsubscribed_on_the_hubs_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    The cyclic GC frees a stream in whatever thread triggers it (a sync dependency's worker
    thread too): the hub's subscriber tuples are only rebuilt on its own thread.
    """
    hub = EventHub()
    kept = hub.subscribe()
    threads: list[int] = []
    unsubscribe = EventHub.unsubscribe

    def recorded(self: EventHub, inbox: Any) -> None:
        threads.append(threading.get_ident())
        unsubscribe(self, inbox)

    monkeypatch.setattr(EventHub, "unsubscribe", recorded)
    gc.disable()
    try:
        cycle: list[object] = [hub.subscribe(kinds=[RetryScheduled]) for _ in range(3)]
        cycle.append(cycle)
        del cycle
        with guard():
            await anyio.to_thread.run_sync(gc.collect)
    finally:
        gc.enable()
    hub.publish(retry(1))
    assert 1 == hub.subscribers
    assert [threading.get_ident()] * 3 == threads
    assert 1 == kept.pending


async def test_subscribers_counts_the_open_streams_and_is_read_only() -> None:
    """Each subscription counts until it is closed, left, freed or the hub closes."""
    hub = EventHub()
    counts = [hub.subscribers]
    first, second = hub.subscribe(), hub.subscribe(kinds=[CallRejected])
    counts.append(hub.subscribers)
    with guard():
        await first.aclose()
        counts.append(hub.subscribers)
        async with hub.subscribe():
            counts.append(hub.subscribers)
        counts.append(hub.subscribers)
        hub.subscribe()  # held by nobody: freed at once on CPython
        gc.collect()
        counts.append(hub.subscribers)
        hub.add_listener(lambda event: None)  # a listener is not a subscriber
        counts.append(hub.subscribers)
        hub.close()
        counts.append(hub.subscribers)
        hub.subscribe()  # after close: born ended, never counted
        counts.append(hub.subscribers)
    assert [0, 2, 1, 2, 1, 1, 1, 0, 0] == counts
    assert second is not None  # held until here
    with pytest.raises(AttributeError):
        hub.subscribers = 3  # type: ignore[misc]


def test_log_lines_go_to_the_stdlib_logger_when_structlog_is_not_configured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An application that never configured structlog gets no stdout lines: stdlib `ringfence`."""
    structlog.reset_defaults()
    hub = EventHub()
    with caplog.at_level(logging.INFO, logger="ringfence"):
        hub.publish(retry(4))
    [record] = caplog.records
    assert "ringfence" == record.name
    assert record.getMessage().startswith("ringfence.retry_scheduled dependency='dep' attempt=4")
    assert "retry_scheduled" == record.ringfence_event["kind"]  # type: ignore[attr-defined]
