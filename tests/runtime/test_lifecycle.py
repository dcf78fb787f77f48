"""Cancellation, shutdown and sync callables (DESIGN.md guarantees 3, 5, 13, 14)."""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from policies import Breaker, Bulkhead, Retry, backoff
from supervisor import Supervisor, SupervisorClosed

from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio


async def test_call_before_entering_raises_supervisor_closed(sup: Supervisor) -> None:
    """A call before `async with` is entered says so, and never reaches the dependency."""
    fake = Fake()
    sup.register("dep", fake)
    with pytest.raises(
        SupervisorClosed,
        match=r"^supervisor is not running: enter `async with supervisor:` before calling$",
    ):
        await sup.call("dep")
    assert fake.count == 0


async def test_call_after_leaving_raises_supervisor_closed(sup: Supervisor) -> None:
    """A call after `async with` was left says the supervisor shut down."""
    fake = Fake()
    handle = sup.register("dep", fake)
    with guard():
        async with sup:
            await handle()
    with pytest.raises(SupervisorClosed, match=r"^supervisor has shut down"):
        await handle()
    assert fake.count == 1


@pytest.mark.parametrize("with_fallback", [False, True])
async def test_leaving_fails_queued_and_cuts_off_running_calls(
    sup: Supervisor, with_fallback: bool
) -> None:
    """
    Leaving `async with`: queued calls and running calls both end with SupervisorClosed,
    and a fallback never sees them (guarantee 12).
    """
    fake = Fake(Gate(), Gate())  # never opened: only the shutdown can end them
    fallback_saw: list[str] = []

    def fallback(exc: BaseException) -> str:
        fallback_saw.append(type(exc).__name__)
        return "fallback"

    sup.register(
        "dep",
        fake,
        bulkhead=Bulkhead(max_concurrent=1, max_queued=1),
        fallback=fallback if with_fallback else None,
    )
    errors: list[str] = []

    async def caller() -> None:
        try:
            await sup.call("dep")
        except SupervisorClosed as exc:
            errors.append(str(exc))

    with guard():
        async with anyio.create_task_group() as tg, sup:
            tg.start_soon(caller)
            await fake.entered.wait()
            tg.start_soon(caller)
            await wait_all_tasks_blocked()
            assert (sup.status("dep").in_flight, sup.status("dep").queued) == (1, 1)
    assert sorted(errors) == [
        "supervisor shut down while the call was queued",
        "supervisor shut down while the call was running",
    ]
    assert fallback_saw == []
    status = sup.status("dep")
    assert (status.calls, status.failures, status.rejected) == (0, 0, 0)


async def test_cancelled_caller_frees_its_slot_and_counts_nothing(sup: Supervisor) -> None:
    """A caller cancelled mid-attempt frees its slot; no call, failure or error is counted."""
    fake = Fake(Gate())
    fallback_calls: list[BaseException] = []
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=3, backoff=backoff.constant(0.0)),
        breaker=Breaker(failure_threshold=1),
        bulkhead=Bulkhead(max_concurrent=1),
        fallback=lambda exc: fallback_calls.append(exc),
    )
    with guard():
        async with sup:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sup.call, "dep")
                    await fake.entered.wait()
                    scope.cancel()
            assert scope.cancelled_caught
            status = sup.status("dep")
            assert (status.in_flight, status.calls, status.failures, status.rejected) == (
                0,
                0,
                0,
                0,
            )
            assert dict(status.errors) == {}
            assert status.state == "closed"
            assert await sup.call("dep") == "ok"  # the slot is free again
    assert fake.count == 1 + 1  # not retried
    assert fallback_calls == []  # never sent to the fallback


async def test_cancelled_queued_caller_frees_its_queue_place(sup: Supervisor) -> None:
    """A caller cancelled while queued leaves the queue; the place is usable again."""
    gate = Gate()
    fake = Fake(gate)
    sup.register("dep", fake, bulkhead=Bulkhead(max_concurrent=1, max_queued=1))
    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(sup.call, "dep")
            await fake.entered.wait()
            scope = anyio.CancelScope()

            async def queued() -> None:
                with scope:
                    await sup.call("dep")

            tg.start_soon(queued)
            await wait_all_tasks_blocked()
            assert sup.status("dep").queued == 1
            scope.cancel()
            await wait_all_tasks_blocked()
            assert sup.status("dep").queued == 0
            tg.start_soon(sup.call, "dep")  # takes the freed queue place
            await wait_all_tasks_blocked()
            assert sup.status("dep").queued == 1
            gate.open()
    assert fake.count == 2


async def test_cancelled_probe_gives_its_permit_back(sup: Supervisor) -> None:
    """A half-open probe whose caller is cancelled counts nothing; the next caller probes."""
    fake = Fake(Gate(), "probe")
    sup.register("dep", fake, breaker=Breaker(failure_threshold=1))
    with guard():
        async with sup:
            await sup.force_half_open("dep")
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sup.call, "dep")
                    await fake.entered.wait()
                    scope.cancel()
            assert sup.status("dep").state == "half_open"
            assert await sup.call("dep") == "probe"
            assert sup.status("dep").state == "closed"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_base_exceptions_propagate_uncounted(sup: Supervisor, exc_type: type) -> None:
    """KeyboardInterrupt and friends are never retried, never sent to a fallback, not counted."""
    fake = Fake(exc_type)
    fallback_calls: list[BaseException] = []
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=3, backoff=backoff.constant(0.0), retry_on=lambda e: True),
        fallback=lambda exc: fallback_calls.append(exc),
    )
    with guard():
        async with sup:
            with pytest.raises(exc_type):
                await sup.call("dep")
            status = sup.status("dep")
            assert (status.calls, status.failures, status.in_flight) == (0, 0, 0)
    assert fake.count == 1
    assert fallback_calls == []
