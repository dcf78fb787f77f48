"""
What a cut-off counts, for calls and streams alike (issue 17: one decision, one place).

A wait ringfence cuts off (the total deadline, an attempt's or an item's limit, the supervisor
leaving) counts the same in ``status()`` whether a call or a stream was waiting: each test runs
a call and a stream side by side, with the same policies against a dependency that hangs the
same way, and asserts their counters are the same and reconcile
(``requests == successes + fallbacks + raised``, ``DependencyStatus``).

Every test runs on virtual time on both backends: trio's ``MockClock(autojump_threshold=0)``
and asyncio on :class:`~tests.runtime._virtual_loop.VirtualClockLoop`; "hangs" is an event
nobody sets, and a caller's own time with an item is an ``anyio.sleep`` on that clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from policies import Hedge, Retry, Timeout, backoff
from supervisor import (
    DependencyStatus,
    Supervisor,
    SupervisorClosed,
)

from ._virtual_loop import anyio_backend as anyio_backend  # both backends, virtual time
from .conftest import guard

pytestmark = pytest.mark.anyio

NO_WAIT = backoff.constant(0.0)


class Hangs:
    """
    A call that hangs until the test lets it go, and a stream that yields *items* and then
    hangs the same way. ``reached`` is set when either is hanging.
    """

    def __init__(self, *items: str) -> None:
        self.items = items
        self.reached = anyio.Event()
        self.go = anyio.Event()
        self.closed = 0

    async def call(self) -> str:
        self.reached.set()
        await self.go.wait()
        return "answer"

    async def stream(self) -> AsyncIterator[str]:
        try:
            for item in self.items:
                yield item
            self.reached.set()
            await self.go.wait()
            yield "late"
        finally:
            self.closed += 1


def counters(status: DependencyStatus) -> dict[str, object]:
    """What ``status()`` counts of the callers' calls and their attempts."""
    return {
        "calls": status.calls,
        "failures": status.failures,
        "errors": dict(status.errors),
        "retries": status.retries,
        "rejected": status.rejected,
        "cut_off": status.cut_off,
        "requests": status.requests,
        "successes": status.successes,
        "fallbacks": status.fallbacks,
        "raised": status.raised,
        "in_flight": status.in_flight,
    }


def reconciled(status: DependencyStatus) -> dict[str, object]:
    """:func:`counters`, once the invariant the docstring promises is checked."""
    assert status.requests == status.successes + status.fallbacks + status.raised
    return counters(status)


async def call(sup: Supervisor) -> str:
    """The call's caller: what it got."""
    try:
        return str(await sup.call("call"))
    except Exception as exc:
        return type(exc).__name__


async def stream(sup: Supervisor, holds: float = 0.0) -> str:
    """The stream's caller, holding each item *holds* seconds: what it got after its items."""
    try:
        async with sup.stream("stream") as items:
            async for _ in items:
                await anyio.sleep(holds)
    except Exception as exc:
        return type(exc).__name__
    return "items"


def register(sup: Supervisor, dep: Hangs, **policies: Any) -> None:
    sup.register("call", dep.call, **policies)
    sup.register("stream", dep.stream, **policies)


@pytest.mark.parametrize(
    ("items", "holds"),
    [((), 0.0), (("a",), 0.0), (("a", "b"), 0.1)],
    ids=["before_the_first_item", "between_items", "spent_by_the_caller"],
)
async def test_the_total_deadline_counts_a_stream_as_it_counts_a_call(
    sup: Supervisor, items: tuple[str, ...], holds: float
) -> None:
    """
    ``Timeout.total`` cuts a hanging call and a stream (waiting for its first item, for a
    later one, or spent by its caller holding an item): ``DeadlineExceeded`` to both callers,
    and one request, raised, cut off (not the dependency's failure) for both.
    """
    dep = Hangs(*items)
    register(sup, dep, timeout=Timeout(total=0.05))
    with guard():
        async with sup:
            got = (await call(sup), await stream(sup, holds))
            status = (sup.status("call"), sup.status("stream"))
    assert ("DeadlineExceeded", "DeadlineExceeded") == got
    expected = counters(status[0])
    assert (1, 1, 1, 0) == (
        expected["requests"],
        expected["raised"],
        expected["cut_off"],
        expected["calls"],
    )
    assert expected == reconciled(status[1])
    assert 1 == dep.closed


async def test_a_deadline_after_a_timed_out_attempt_counts_the_same(sup: Supervisor) -> None:
    """
    The first attempt times out (its limit, 0.03 s: a failure, retried), the second is cut by
    the total deadline (0.05 s): one request, one retry, one failure, one cut-off, for both.
    """
    dep = Hangs()
    sup.register(
        "call",
        dep.call,
        timeout=Timeout(attempt=0.03, total=0.05),
        retry=Retry(attempts=3, backoff=NO_WAIT),
    )
    sup.register(
        "stream",
        dep.stream,
        timeout=Timeout(first_item=0.03, total=0.05),
        retry=Retry(attempts=3, backoff=NO_WAIT),
    )
    with guard():
        async with sup:
            got = (await call(sup), await stream(sup))
            status = (sup.status("call"), sup.status("stream"))
    assert ("DeadlineExceeded", "DeadlineExceeded") == got
    expected = counters(status[0])
    assert (1, 1, 1, 1, 1) == (
        expected["requests"],
        expected["raised"],
        expected["cut_off"],
        expected["retries"],
        expected["failures"],
    )
    assert expected == reconciled(status[1])


async def test_a_deadline_the_fallback_answers_counts_the_same(sup: Supervisor) -> None:
    """The fallback answers the cut-off's ``DeadlineExceeded``: one request, a fallback, none raised."""

    async def cached(error: Exception) -> AsyncIterator[str]:
        yield f"cached after {type(error).__name__}"

    dep = Hangs()
    timeout = Timeout(total=0.05)
    sup.register("call", dep.call, timeout=timeout, fallback=lambda error: type(error).__name__)
    sup.register("stream", dep.stream, timeout=timeout, fallback=cached)
    with guard():
        async with sup:
            answer = await sup.call("call")
            async with sup.stream("stream") as items:
                streamed = [item async for item in items]
            status = (sup.status("call"), sup.status("stream"))
    assert ("DeadlineExceeded", ["cached after DeadlineExceeded"]) == (answer, streamed)
    expected = counters(status[0])
    assert (1, 1, 0, 1) == (
        expected["requests"],
        expected["fallbacks"],
        expected["raised"],
        expected["cut_off"],
    )
    assert expected == reconciled(status[1])


@pytest.mark.parametrize(
    ("items", "limit"),
    [((), "first_item"), (("a",), "between_items")],
)
async def test_an_items_limit_counts_a_stream_as_an_attempts_limit_counts_a_call(
    sup: Supervisor, items: tuple[str, ...], limit: str
) -> None:
    """
    ``first_item`` / ``between_items`` cut a stream as ``attempt`` cuts a call:
    ``AttemptTimeout``, the dependency's failure; one request, raised, no cut-off.
    """
    dep = Hangs(*items)
    sup.register("call", dep.call, timeout=Timeout(attempt=0.05))
    sup.register("stream", dep.stream, timeout=Timeout(**{limit: 0.05}))
    with guard():
        async with sup:
            got = (await call(sup), await stream(sup))
            status = (sup.status("call"), sup.status("stream"))
    assert ("AttemptTimeout", "AttemptTimeout") == got
    expected = counters(status[0])
    assert (1, 1, 1, {"AttemptTimeout": 1}, 0) == (
        expected["requests"],
        expected["raised"],
        expected["failures"],
        expected["errors"],
        expected["cut_off"],
    )
    assert expected == reconciled(status[1])


@pytest.mark.parametrize("items", [(), ("a",)], ids=["opening", "waiting_for_an_item"])
async def test_the_supervisor_leaving_counts_a_stream_as_it_counts_a_call(
    sup: Supervisor, items: tuple[str, ...]
) -> None:
    """
    The supervisor leaves while a call and a stream hang: ``SupervisorClosed`` to both
    callers, each saying what it cut; counted in none of the counters, for both.
    """
    dep = Hangs(*items)
    register(sup, dep, retry=Retry(attempts=3, backoff=NO_WAIT))
    got: dict[str, str] = {}
    messages: list[str] = []

    async def run_call() -> None:
        try:
            await sup.call("call")
        except SupervisorClosed as exc:
            messages.append(str(exc))
            got["call"] = type(exc).__name__

    async def run_stream() -> None:
        try:
            async with sup.stream("stream") as stream_items:
                async for _ in stream_items:
                    pass
        except SupervisorClosed as exc:
            messages.append(str(exc))
            got["stream"] = type(exc).__name__

    with guard():
        async with anyio.create_task_group() as tg, sup:
            tg.start_soon(run_call)
            await dep.reached.wait()
            dep.reached = anyio.Event()
            tg.start_soon(run_stream)
            await dep.reached.wait()
    status = (sup.status("call"), sup.status("stream"))
    assert {"call": "SupervisorClosed", "stream": "SupervisorClosed"} == got
    assert [
        "supervisor shut down while the call was running",
        "supervisor shut down while the stream was open",
    ] == sorted(messages)
    expected = counters(status[0])
    assert (0, 0, 0, 0) == (
        expected["requests"],
        expected["raised"],
        expected["cut_off"],
        expected["calls"],
    )
    assert expected == reconciled(status[1])
    assert 1 == dep.closed


async def test_a_stream_held_across_the_exit_counts_as_a_call_cut_at_exit(
    sup: Supervisor,
) -> None:
    """
    The caller holds the stream's first item when the supervisor leaves (a call hangs
    meanwhile): its next item raises ``SupervisorClosed``; nothing counted, as for the call.
    """
    dep = Hangs("a")
    register(sup, dep)
    holding = anyio.Event()
    left = anyio.Event()
    got: list[str] = []

    async def run_call() -> None:
        try:
            await sup.call("call")
        except SupervisorClosed as exc:
            got.append(str(exc))

    async def run_stream() -> None:
        async with sup.stream("stream") as items:
            got.append(await items.__anext__())
            holding.set()
            await left.wait()  # not in __anext__ when the supervisor leaves
            try:
                await items.__anext__()
            except SupervisorClosed as exc:
                got.append(str(exc))

    with guard():
        async with anyio.create_task_group() as tg:
            async with sup:
                tg.start_soon(run_call)
                await dep.reached.wait()
                tg.start_soon(run_stream)
                await holding.wait()
            left.set()
    status = (sup.status("call"), sup.status("stream"))
    assert [
        "a",
        "supervisor shut down while the call was running",
        "supervisor shut down while the stream was open",
    ] == sorted(got)
    expected = counters(status[0])
    assert (0, 0, 0) == (expected["requests"], expected["raised"], expected["cut_off"])
    assert expected == reconciled(status[1])
    assert 1 == dep.closed


async def test_a_hedged_opening_cut_by_the_deadline_counts_as_a_hedged_call(
    sup: Supervisor,
) -> None:
    """
    A hedged call and a hedged stream, whose attempt and hedge both hang, cut by the total
    deadline: the same counters, reconciled.
    """
    dep = Hangs()
    register(sup, dep, timeout=Timeout(total=0.05), hedge=Hedge(delay=0.01))
    with guard():
        async with sup:
            got = (await call(sup), await stream(sup))
            status = (sup.status("call"), sup.status("stream"))
    assert ("DeadlineExceeded", "DeadlineExceeded") == got
    assert counters(status[0]) == reconciled(status[1])
    assert (1, 1) == (status[1].hedges, status[0].hedges)
