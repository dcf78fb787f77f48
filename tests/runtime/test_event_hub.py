"""The event hub on its own: bounded streams, drops, filters, endings (issue #11)."""

from __future__ import annotations

import gc
import logging

import anyio
import pytest
import structlog

from supervisor._events import (
    BreakerTransition,
    CallRejected,
    EventHub,
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
