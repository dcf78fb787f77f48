"""Admission: breaker, then slot, then queue, then BulkheadFull (DESIGN.md guarantees 1, 2, 4)."""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from policies import Breaker, Bulkhead, Retry, backoff
from supervisor import BreakerOpen, BulkheadFull, Supervisor, SupervisorClosed

from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio


async def test_free_slot_runs_at_once(sup: Supervisor) -> None:
    """With a free slot the call runs and returns the dependency's result."""
    fake = Fake("answer")
    sup.register("dep", fake, bulkhead=Bulkhead(max_concurrent=1))
    with guard():
        async with sup:
            assert await sup.call("dep", "prompt", temperature=0) == "answer"
    assert fake.calls == [(("prompt",), {"temperature": 0})]
    assert sup.status("dep").calls == 1


async def test_queue_is_fifo_and_full_queue_rejects_at_once(sup: Supervisor) -> None:
    """Busy slots: callers queue in arrival order; past max_queued, BulkheadFull at once."""
    gate = Gate()
    fake = Fake(gate)
    order: list[int] = []
    sup.register("dep", fake, bulkhead=Bulkhead(max_concurrent=1, max_queued=3))

    async def caller(i: int) -> None:
        await sup.call("dep", i)
        order.append(i)

    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(caller, 0)
            await fake.entered.wait()
            for i in (1, 2, 3):
                tg.start_soon(caller, i)
                await wait_all_tasks_blocked()
            assert sup.status("dep").queued == 3
            with pytest.raises(
                BulkheadFull, match=r"^bulkhead for 'dep' is full: 1 running and 3 queued$"
            ):
                await sup.call("dep", 4)
            assert fake.count == 1  # the rejected call never reached the dependency
            gate.open()
    assert order == [0, 1, 2, 3]
    assert [args[0] for args, _ in fake.calls] == [0, 1, 2, 3]
    status = sup.status("dep")
    assert (status.calls, status.rejected) == (4, 1)


async def test_open_breaker_rejects_before_the_bulkhead(sup: Supervisor) -> None:
    """An open breaker rejects with BreakerOpen at once, even when the bulkhead is full."""
    gate = Gate()
    fake = Fake(gate, ConnectionError("down"))
    sup.register(
        "dep",
        fake,
        breaker=Breaker(failure_threshold=1, break_duration=30.0),
        bulkhead=Bulkhead(max_concurrent=1, max_queued=0),
    )
    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(sup.call, "dep")
            await fake.entered.wait()
            with pytest.raises(BulkheadFull):  # closed breaker, full bulkhead
                await sup.call("dep")
            await sup.isolate("dep")
            with pytest.raises(BreakerOpen) as caught:
                await sup.call("dep")
            assert sup.status("dep").queued == 0
            gate.open()
    assert float("inf") == caught.value.retry_after
    assert fake.count == 1


async def test_backoff_sleep_holds_no_slot(sup: Supervisor) -> None:
    """While a call sleeps before its retry, its slot is free for another caller."""
    fake = Fake(ConnectionError("flaky"), "second")
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=2, backoff=backoff.constant(3600.0)),
        bulkhead=Bulkhead(max_concurrent=1),
    )
    outcome: list[BaseException] = []

    async def first() -> None:
        try:
            await sup.call("dep", "a")
        except SupervisorClosed as exc:  # woken from its backoff by the shutdown
            outcome.append(exc)

    with guard():
        async with anyio.create_task_group() as tg, sup:
            tg.start_soon(first)
            await wait_all_tasks_blocked()  # first attempt failed; sleeping in backoff
            assert sup.status("dep").in_flight == 0
            assert await sup.call("dep", "b") == "second"  # gets the slot at once
    assert [str(e) for e in outcome] == ["supervisor shut down while the call waited to retry"]


async def test_breaker_open_is_not_retried(sup: Supervisor) -> None:
    """A retry that meets an open breaker stops with BreakerOpen; no more attempts."""
    fake = Fake(ConnectionError("down"))
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=5, backoff=backoff.constant(0.0)),
        breaker=Breaker(failure_threshold=1, break_duration=60.0),
    )
    with guard():
        async with sup:
            with pytest.raises(BreakerOpen):
                await sup.call("dep")
    assert fake.count == 1
    assert sup.status("dep").rejected == 1


@pytest.mark.parametrize("probes", [1, 3])
async def test_herd_at_half_open_lets_exactly_the_probes_through(
    sup: Supervisor, probes: int
) -> None:
    """10,000 callers arriving when the breaker turns half-open: exactly `probes` run."""
    gate = Gate()
    fake = Fake(*([gate] * probes))
    sup.register("dep", fake, breaker=Breaker(failure_threshold=1, half_open_probes=probes))
    outcomes: dict[str, int] = {"ok": 0, "rejected": 0}
    retry_afters: set[float] = set()

    async def caller() -> None:
        try:
            await sup.call("dep")
            outcomes["ok"] += 1
        except BreakerOpen as exc:
            outcomes["rejected"] += 1
            retry_afters.add(exc.retry_after)

    with guard():
        async with sup:
            await sup.force_half_open("dep")
            async with anyio.create_task_group() as tg:
                for _ in range(10_000):
                    tg.start_soon(caller)
                await wait_all_tasks_blocked()
                assert probes == fake.count
                assert probes == fake.running
                gate.open()
    assert {"ok": probes, "rejected": 10_000 - probes} == outcomes
    assert {0.0} == retry_afters
    assert sup.status("dep").state == "closed"


async def test_slot_granted_to_a_cancelled_waiter_passes_to_the_next(sup: Supervisor) -> None:
    """A waiter cancelled in the tick its slot is granted hands the slot on, not drops it."""
    gate = Gate()
    doomed = anyio.CancelScope()
    seen: list[str] = []

    async def dep(who: str) -> str:
        seen.append(who)
        if who == "running":
            await gate.event.wait()
            doomed.cancel()  # lands in the same tick as the slot grant below
        return who

    sup.register("dep", dep, bulkhead=Bulkhead(max_concurrent=1, max_queued=2))
    result: list[str] = []

    async def first_waiter() -> None:
        with doomed:
            await sup.call("dep", "first")

    async def second_waiter() -> None:
        result.append(await sup.call("dep", "second"))

    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(sup.call, "dep", "running")
            await wait_all_tasks_blocked()
            tg.start_soon(first_waiter)
            await wait_all_tasks_blocked()
            tg.start_soon(second_waiter)
            await wait_all_tasks_blocked()
            assert sup.status("dep").queued == 2
            gate.open()
    assert result == ["second"]
    assert seen == ["running", "second"]
    assert doomed.cancelled_caught


async def test_rejections_leave_no_garbage_for_the_cycle_collector(sup: Supervisor) -> None:
    """
    A rejected call is freed by reference counting alone: no frame -> error -> traceback ->
    frame cycle left for the garbage collector (it cost ~600 ns per rejection when the
    hot path raised the error from a local variable). Checked by counting what
    ``gc.collect()`` finds after rejections with the collector paused.
    """
    import gc

    gate = Gate()
    sup.register("open", Fake("x"))
    sup.register("full", Fake(gate), bulkhead=Bulkhead(max_concurrent=1))
    with guard():
        async with sup, anyio.create_task_group() as tg:
            await sup.isolate("open")
            tg.start_soon(sup.call, "full")
            await wait_all_tasks_blocked()
            gc.collect()
            gc.disable()
            try:
                for _ in range(50):
                    with pytest.raises(BreakerOpen):
                        await sup.call("open")
                    with pytest.raises(BulkheadFull):
                        await sup.call("full")
                found = gc.collect()
            finally:
                gc.enable()
            gate.open()
    assert found < 50  # one cycle per rejection would be >= 100


async def test_a_queued_call_asks_the_breaker_again_when_it_moved_meanwhile(
    sup: Supervisor,
) -> None:
    """
    A call queued while closed, whose breaker turned half-open before its slot came, asks
    again: with the only probe taken by a later caller it gets BreakerOpen (and hands its
    slot on); it never runs as a late call of the closed breaker.
    """
    gate = Gate()
    fake = Fake(gate, "probe answered")
    sup.register(
        "dep",
        fake,
        breaker=Breaker(half_open_probes=1),
        bulkhead=Bulkhead(max_concurrent=1, max_queued=2),
    )
    outcomes: dict[str, object] = {}

    async def caller(who: str) -> None:
        try:
            outcomes[who] = await sup.call("dep", who)
        except BreakerOpen as exc:
            outcomes[who] = exc

    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(caller, "running")
            await fake.entered.wait()
            tg.start_soon(caller, "queued while closed")
            await wait_all_tasks_blocked()
            await sup.force_half_open("dep")
            tg.start_soon(caller, "probe")  # takes the only probe, queues behind
            await wait_all_tasks_blocked()
            assert sup.status("dep").queued == 2
            gate.open()
    rejected = outcomes["queued while closed"]
    assert isinstance(rejected, BreakerOpen)
    assert (rejected.state, rejected.retry_after) == ("half_open", 0.0)
    assert outcomes["probe"] == "probe answered"
    assert [args[0] for args, _ in fake.calls] == ["running", "probe"]
    assert sup.status("dep").state == "closed"  # the probe closed it
