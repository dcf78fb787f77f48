"""Priorities under load (issue 20, part 3): the bulkhead queue orders and sheds by priority."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from policies import Breaker, Bulkhead, Priority, RateLimit
from supervisor import BreakerOpen, BulkheadFull, RateLimited, Supervisor

from ._virtual_loop import on_virtual_time
from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio

CRITICAL, DEFAULT, SHEDDABLE = Priority.CRITICAL, Priority.DEFAULT, Priority.SHEDDABLE


def _caller(
    sup: Supervisor, outcomes: dict[str, str]
) -> Callable[[str, int | None], Awaitable[None]]:
    """A task body: call "dep" with *label* at *level* (None: no priority block)."""

    async def call(label: str, level: int | None) -> None:
        try:
            if level is None:
                await sup.call("dep", label)
            else:
                with sup.priority(level):
                    await sup.call("dep", label)
        except BulkheadFull:
            outcomes[label] = "full"
        except BreakerOpen:
            outcomes[label] = "open"
        else:
            outcomes[label] = "ok"

    return call


async def _arrive(tg: Any, call: Callable[..., Awaitable[None]], *calls: tuple[str, Any]) -> None:
    """Start each call in turn, each settled (queued or refused) before the next arrives."""
    for label, level in calls:
        tg.start_soon(call, label, level)
        await wait_all_tasks_blocked()


async def test_free_slots_go_to_the_highest_priority_first_fifo_within_a_level(
    sup: Supervisor, each_path: str
) -> None:
    gate = Gate()
    fake = Fake(gate)
    outcomes: dict[str, str] = {}
    call = _caller(sup, outcomes)
    sup.register("dep", fake, bulkhead=Bulkhead(max_concurrent=1, max_queued=10))
    with guard():
        async with sup, anyio.create_task_group() as tg:
            await _arrive(
                tg,
                call,
                ("first", None),
                ("s1", SHEDDABLE),
                ("d1", None),
                ("c1", CRITICAL),
                ("s2", SHEDDABLE),
                ("d2", DEFAULT),
                ("c2", CRITICAL),
                ("six", 6),
            )
            assert sup.status("dep").queued == 7
            gate.open()
    assert [args[0] for args, _ in fake.calls] == [
        "first", "c1", "c2", "six", "d1", "d2", "s1", "s2"
    ]  # fmt: skip
    assert set(outcomes.values()) == {"ok"}
    assert sup.status("dep").rejected_by_priority == {}


async def test_a_full_queue_sheds_the_newest_lowest_priority_call(
    sup: Supervisor, each_path: str
) -> None:
    """
    A higher-priority arrival takes the place of the newest call of the lowest level
    queued, which gets BulkheadFull at once; equals never displace each other.
    """
    gate = Gate()
    fake = Fake(gate)
    outcomes: dict[str, str] = {}
    call = _caller(sup, outcomes)
    sup.register("dep", fake, bulkhead=Bulkhead(max_concurrent=1, max_queued=3))
    with guard():
        async with sup, anyio.create_task_group() as tg:
            await _arrive(tg, call, ("first", None), ("s1", SHEDDABLE), ("s2", SHEDDABLE))
            await _arrive(tg, call, ("d1", None))  # the queue is full now
            await _arrive(tg, call, ("d2", None))
            assert outcomes == {"s2": "full"}  # the newest sheddable, at once
            await _arrive(tg, call, ("s3", SHEDDABLE))  # nobody below sheddable
            assert outcomes == {"s2": "full", "s3": "full"}
            await _arrive(tg, call, ("c1", CRITICAL))
            assert outcomes["s1"] == "full"
            await _arrive(tg, call, ("d3", DEFAULT))  # only defaults and above queued now
            assert outcomes["d3"] == "full"
            status = sup.status("dep")
            assert (status.queued, status.in_flight) == (3, 1)
            assert status.rejected_by_priority == {"sheddable": 3, "default": 1}
            assert status.rejected_by == {"bulkhead_full": 4}
            assert fake.count == 1
            gate.open()
    assert [args[0] for args, _ in fake.calls] == ["first", "c1", "d1", "d2"]
    assert sup.status("dep").rejected == 4


async def test_an_overloaded_dependency_serves_critical_calls_and_sheds_sheddable_ones(
    sup: Supervisor, each_path: str
) -> None:
    """
    Rounds of overload: each round, two slots and a queue of four meet eight sheddable
    and three critical arrivals, mixed. Every critical call is served; sheddable calls
    get only what is left.
    """
    outcomes: dict[str, str] = {}
    call = _caller(sup, outcomes)
    gates: list[Gate] = []

    async def dependency(label: str) -> str:
        gate = Gate()
        gates.append(gate)
        await gate.event.wait()
        return label

    sup.register("dep", dependency, bulkhead=Bulkhead(max_concurrent=2, max_queued=4))
    with guard():
        async with sup, anyio.create_task_group() as tg:
            for r in range(5):
                arrivals = [(f"s{r}.{i}", SHEDDABLE) for i in range(8)]
                for i in range(3):
                    arrivals.insert(1 + 3 * i, (f"c{r}.{i}", CRITICAL))
                await _arrive(tg, call, *arrivals)
                # Let every running call finish; the queue runs in turn, in priority order.
                while gates:
                    gates.pop(0).open()
                    await wait_all_tasks_blocked()
    critical = {k: v for k, v in outcomes.items() if k.startswith("c")}
    sheddable = {k: v for k, v in outcomes.items() if k.startswith("s")}
    assert set(critical.values()) == {"ok"}
    assert len(critical) == 15
    served = sum(v == "ok" for v in sheddable.values())
    # Each round: 2 slots + 4 places = 6 served; 3 of them critical, so 3 sheddable.
    assert (served, len(sheddable)) == (15, 40)
    assert sup.status("dep").rejected_by_priority == {"sheddable": 25}


async def test_without_priorities_the_same_load_sheds_critical_calls_too(
    sup: Supervisor,
) -> None:
    """The comparison for the test above: all at one level, FIFO, arrivals past 6 refused."""
    outcomes: dict[str, str] = {}
    call = _caller(sup, outcomes)
    gate = Gate()
    sup.register("dep", Fake(gate, gate), bulkhead=Bulkhead(max_concurrent=2, max_queued=4))
    arrivals = [(f"s{i}", None) for i in range(8)]
    for i in range(3):
        arrivals.insert(1 + 3 * i, (f"c{i}", None))
    with guard():
        async with sup, anyio.create_task_group() as tg:
            await _arrive(tg, call, *arrivals)
            gate.open()
    assert {k for k, v in outcomes.items() if v == "full"} == {"c2", "s5", "s6", "s7", "s4"}


async def test_cancelling_a_queued_prioritized_call_leaks_nothing(sup: Supervisor) -> None:
    gate = Gate()
    fake = Fake(gate)
    outcomes: dict[str, str] = {}
    call = _caller(sup, outcomes)
    sup.register("dep", fake, bulkhead=Bulkhead(max_concurrent=1, max_queued=2))
    with guard():
        async with sup, anyio.create_task_group() as tg:
            await _arrive(tg, call, ("first", None), ("s1", SHEDDABLE))
            async with anyio.create_task_group() as inner:
                await _arrive(inner, call, ("c1", CRITICAL))
                assert sup.status("dep").queued == 2  # s1, c1: the queue is full
                inner.cancel_scope.cancel()
            assert sup.status("dep").queued == 1  # c1 left: its place is free again
            await _arrive(tg, call, ("c2", CRITICAL))
            assert outcomes == {}  # c2 took the free place: nobody displaced
            await _arrive(tg, call, ("d1", None))
            assert outcomes == {"s1": "full"}  # d1 displaced s1
            assert sup.status("dep").queued == 2
            gate.open()
    assert [args[0] for args, _ in fake.calls] == ["first", "c2", "d1"]
    assert outcomes == {"s1": "full", "c2": "ok", "d1": "ok", "first": "ok"}


async def test_a_breaker_that_opens_fails_every_queued_call_whatever_its_priority(
    sup: Supervisor,
) -> None:
    gate = Gate()
    fake = Fake(gate)
    outcomes: dict[str, str] = {}
    call = _caller(sup, outcomes)
    sup.register(
        "dep",
        fake,
        breaker=Breaker(failure_threshold=1),
        bulkhead=Bulkhead(max_concurrent=1, max_queued=4),
    )
    with guard():
        async with sup, anyio.create_task_group() as tg:
            await _arrive(tg, call, ("first", None), ("s", SHEDDABLE), ("c", CRITICAL), ("d", 5))
            await sup.isolate("dep")
            await wait_all_tasks_blocked()
            assert outcomes == {"s": "open", "c": "open", "d": "open"}
            gate.open()
    assert sup.status("dep").rejected_by_priority == {}


async def test_a_stream_carries_the_priority_of_its_block(sup: Supervisor) -> None:
    gate = Gate()
    order: list[str] = []

    async def items(label: str) -> Any:
        order.append(label)
        yield label

    sup.register("gen", items, bulkhead=Bulkhead(max_concurrent=1, max_queued=1))
    outcomes: dict[str, str] = {}

    async def stream(label: str, level: int) -> None:
        try:
            with sup.priority(level):
                async with sup.stream("gen", label) as chunks:
                    async for _ in chunks:
                        await gate.event.wait()
        except BulkheadFull:
            outcomes[label] = "full"
        else:
            outcomes[label] = "ok"

    with guard():
        async with sup, anyio.create_task_group() as tg:
            for label, level in (("first", DEFAULT), ("s", SHEDDABLE), ("c", CRITICAL)):
                tg.start_soon(stream, label, level)
                await wait_all_tasks_blocked()
            assert outcomes == {"s": "full"}
            gate.open()
    assert order == ["first", "c"]
    assert sup.status("gen").rejected_by_priority == {"sheddable": 1}


async def test_bad_levels_are_refused_at_the_block_and_naming_them(sup: Supervisor) -> None:
    with pytest.raises(TypeError, match=r"got 'critical' \(str\)"):
        sup.priority("critical")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"got True \(bool\)"):
        sup.priority(True)
    with pytest.raises(TypeError, match=r"got 9\.0 \(float\)"):
        sup.priority(9.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"from 0 \(Priority.SHEDDABLE\) to 9 .*got 10$"):
        sup.priority(10)
    with pytest.raises(ValueError, match=r"got -1$"):
        sup.priority(-1)


async def test_a_priority_block_outside_calls_is_harmless_and_nests(sup: Supervisor) -> None:
    fake = Fake()
    sup.register("dep", fake, bulkhead=Bulkhead(max_concurrent=1))
    with sup.priority(SHEDDABLE) as level:  # before the supervisor runs: nothing to do
        assert level == SHEDDABLE
        with sup.priority(CRITICAL), sup.priority(3):
            pass
    with guard():
        async with sup:
            with sup.priority(CRITICAL):
                assert await sup.call("dep") == "ok"
    with sup.priority(DEFAULT):  # and after it left
        pass
    assert sup.status("dep").calls == 1


async def test_a_rate_limit_reserve_is_kept_from_sheddable_calls(sup: Supervisor) -> None:
    """RateLimit(reserve=0.2): sheddable calls stop at 8 of 10; higher ones take the last 2."""
    fake = Fake()
    sup.register("dep", fake, rate_limit=RateLimit(10, per=3600, reserve=0.2))
    with guard():
        async with sup:
            with sup.priority(SHEDDABLE):
                for _ in range(8):
                    await sup.call("dep")
                with pytest.raises(RateLimited):
                    await sup.call("dep")
            await sup.call("dep")  # DEFAULT: above the lowest
            with sup.priority(CRITICAL):
                await sup.call("dep")
                with pytest.raises(RateLimited):
                    await sup.call("dep")  # the limit itself is spent
    status = sup.status("dep")
    assert fake.count == 10
    assert status.rejected_by_priority == {"sheddable": 1, "critical": 1}
    assert status.rejected_by == {"rate_limited": 2}


@on_virtual_time()  # the units given back are counted exactly, none refilled meanwhile
async def test_a_sheddable_call_waits_out_the_reserve_and_gives_it_back_when_cancelled(
    sup: Supervisor,
) -> None:
    """A sheddable wait for the reserve is a turn like any: cancelled, it is given back."""
    fake = Fake()
    limit = RateLimit(10, per=1.0, reserve=0.5, max_wait=math.inf)
    sup.register("dep", fake, rate_limit=limit)
    with guard():
        async with sup:
            with sup.priority(CRITICAL):
                for _ in range(5):
                    await sup.call("dep")  # 5 of 10 taken: the reserve is all that is left
            with anyio.CancelScope() as scope, sup.priority(SHEDDABLE):
                scope.cancel()  # (cancelled at its first wait: the reserve's)
                await sup.call("dep")
            assert fake.count == 5
            assert 5.0 == sup.status("dep").rate_limit[0]  # given back: the reserve is whole
            start = anyio.current_time()
            with sup.priority(SHEDDABLE):
                await sup.call("dep")  # waits until one unit drained
            waited = anyio.current_time() - start
    assert fake.count == 6
    assert 0.1 == pytest.approx(waited)


async def test_the_priority_flows_into_tasks_started_in_the_block(sup: Supervisor) -> None:
    """Tasks started inside a block inherit its level (a context variable): they go first."""
    gate = Gate()
    fake = Fake(gate)
    outcomes: dict[str, str] = {}
    call = _caller(sup, outcomes)
    sup.register("dep", fake, bulkhead=Bulkhead(max_concurrent=1, max_queued=1))
    with guard():
        async with sup, anyio.create_task_group() as tg:
            await _arrive(tg, call, ("first", None), ("d1", None))
            with sup.priority(CRITICAL):
                tg.start_soon(call, "inherited", None)  # no block of its own
            await wait_all_tasks_blocked()
            assert outcomes == {"d1": "full"}
            gate.open()
    assert [args[0] for args, _ in fake.calls] == ["first", "inherited"]


async def test_a_displaced_call_goes_to_its_fallback(sup: Supervisor) -> None:
    gate = Gate()
    fake = Fake(gate)
    answers: dict[str, object] = {}

    async def call(label: str, level: int) -> None:
        with sup.priority(level):
            answers[label] = await sup.call("dep", label)

    sup.register(
        "dep",
        fake,
        bulkhead=Bulkhead(max_concurrent=1, max_queued=1),
        fallback=lambda error, label: f"fallback for {label}: {type(error).__name__}",
    )
    with guard():
        async with sup, anyio.create_task_group() as tg:
            for label, level in (("first", DEFAULT), ("s", SHEDDABLE), ("c", CRITICAL)):
                tg.start_soon(call, label, level)
                await wait_all_tasks_blocked()
            assert answers == {"s": "fallback for s: BulkheadFull"}
            gate.open()
    assert answers == {"s": "fallback for s: BulkheadFull", "first": "ok", "c": "ok"}
    status = sup.status("dep")
    assert (status.fallbacks, status.rejected_by_priority) == (1, {"sheddable": 1})
