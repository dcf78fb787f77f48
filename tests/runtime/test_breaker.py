"""The breaker inside the runtime (DESIGN.md guarantees 8, 9, 10), manual control, status."""

from __future__ import annotations

import math

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from policies import Breaker, Bulkhead, IllegalTransition
from supervisor import BreakerOpen, HealthStatus, Supervisor, UnknownDependency

from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio


async def test_state_accounts_for_a_call_when_it_returns(sup: Supervisor) -> None:
    """When call() raises, status already shows the failure; the threshold-th one opens."""
    fake = Fake(ConnectionError("a"), ConnectionError("b"), "fine")
    sup.register("dep", fake, breaker=Breaker(failure_threshold=2, break_duration=60.0))
    with guard():
        async with sup:
            with pytest.raises(ConnectionError):
                await sup.call("dep")
            status = sup.status("dep")
            assert (
                status.calls,
                status.failures,
                status.consecutive_failures,
                status.state,
            ) == (1, 1, 1, "closed")
            with pytest.raises(ConnectionError):
                await sup.call("dep")
            assert sup.status("dep").state == "open"
            with pytest.raises(BreakerOpen, match=r"^breaker for 'dep' is open: retry after"):
                await sup.call("dep")
    status = sup.status("dep")
    assert (status.calls, status.failures, status.rejected) == (2, 2, 1)
    assert dict(status.errors) == {"ConnectionError": 2}
    assert status.break_duration == 60.0
    assert status.failure_rate == 1.0


@pytest.mark.parametrize(("failing", "expected"), [(5, "open"), (4, "closed")])
async def test_ratio_breaker_opens_at_or_above_the_ratio(
    sup: Supervisor, failing: int, expected: str
) -> None:
    """Ratio 0.5 over 10 calls: 5 failures open the breaker (at, not only above); 4 don't."""
    fake = Fake(*(["ok"] * (10 - failing) + [ConnectionError("x")] * failing))
    sup.register("dep", fake, breaker=Breaker(failure_ratio=0.5, min_throughput=10, sampling=60.0))
    with guard():
        async with sup:
            for _ in range(10):
                try:
                    await sup.call("dep")
                except ConnectionError:
                    pass
    assert expected == sup.status("dep").state


async def test_ratio_breaker_waits_for_min_throughput(sup: Supervisor) -> None:
    """Below min_throughput, even 100% failures keep the breaker closed."""
    fake = Fake(*[ConnectionError("x")] * 10)
    sup.register("dep", fake, breaker=Breaker(failure_ratio=0.5, min_throughput=10))
    with guard():
        async with sup:
            for _ in range(9):
                with pytest.raises(ConnectionError):
                    await sup.call("dep")
            assert sup.status("dep").state == "closed"
            with pytest.raises(ConnectionError):
                await sup.call("dep")
    assert sup.status("dep").state == "open"


async def test_unrecorded_exceptions_count_as_successes(sup: Supervisor) -> None:
    """Exceptions outside `record` count as successes; `ignore`d ones count as neither."""
    fake = Fake(ConnectionError("1"), KeyError("k"), ConnectionError("2"), ValueError("v"))
    sup.register(
        "dep",
        fake,
        breaker=Breaker(failure_threshold=2, record=(ConnectionError,), ignore=ValueError),
    )
    with guard():
        async with sup:
            for exc in (ConnectionError, KeyError, ConnectionError, ValueError):
                with pytest.raises(exc):
                    await sup.call("dep")
    status = sup.status("dep")
    assert (status.state, status.consecutive_failures) == ("closed", 1)
    assert (status.calls, status.failures) == (4, 2)
    assert dict(status.errors) == {"ConnectionError": 2, "KeyError": 1, "ValueError": 1}


async def test_late_outcomes_do_not_reopen_or_extend(sup: Supervisor) -> None:
    """Calls admitted before the breaker opened report late: one transition, same break."""
    gates = {"late-1": Gate(), "late-2": Gate()}

    async def dep(who: str) -> str:
        if who in gates:
            await gates[who].event.wait()
        raise ConnectionError(who)

    sup.register("dep", dep, breaker=Breaker(failure_threshold=1, break_duration=30.0))
    with guard():
        async with sup, anyio.create_task_group() as tg:

            async def late(who: str) -> None:
                with pytest.raises(ConnectionError, match=who):
                    await sup.call("dep", who)

            for who in gates:
                tg.start_soon(late, who)
            await wait_all_tasks_blocked()
            with pytest.raises(ConnectionError, match="opens"):
                await sup.call("dep", "opens")
            opened = sup.status("dep")
            assert opened.state == "open"
            for gate in gates.values():
                gate.open()
                await wait_all_tasks_blocked()
            after = sup.status("dep")
    assert [(t.source, t.target) for t in after.transitions] == [("closed", "open")]
    assert (opened.since, opened.break_duration) == (after.since, after.break_duration)
    assert after.state == "open"
    assert (after.calls, after.failures) == (3, 3)  # still counted in the lifetime totals


async def test_queued_callers_fail_at_once_when_the_breaker_opens(sup: Supervisor) -> None:
    """Opening the breaker fails every queued caller with BreakerOpen (or their fallback)."""
    gate = Gate()
    outcomes: list[object] = []

    async def dep() -> str:
        await gate.event.wait()
        raise ConnectionError("down")

    sup.register(
        "dep",
        dep,
        breaker=Breaker(failure_threshold=1, break_duration=30.0),
        bulkhead=Bulkhead(max_concurrent=1, max_queued=5),
    )
    sup.register(
        "with_fallback",
        dep,
        breaker=Breaker(failure_threshold=1, break_duration=30.0),
        bulkhead=Bulkhead(max_concurrent=1, max_queued=5),
        fallback=lambda exc: f"fallback for {type(exc).__name__}",
    )

    async def caller(name: str) -> None:
        try:
            outcomes.append(await sup.call(name))
        except (BreakerOpen, ConnectionError) as exc:
            outcomes.append(type(exc).__name__)

    with guard():
        async with sup, anyio.create_task_group() as tg:
            for name in ("dep", "with_fallback"):
                for _ in range(4):
                    tg.start_soon(caller, name)
                    await wait_all_tasks_blocked()
                assert sup.status(name).queued == 3
            gate.open()
    assert sorted(
        ["ConnectionError"]
        + ["BreakerOpen"] * 3
        + ["fallback for ConnectionError"]
        + ["fallback for BreakerOpen"] * 3
    ) == sorted(map(str, outcomes))
    assert sup.status("dep").rejected == 3


async def test_manual_control_is_acknowledged_and_illegal_moves_change_nothing(
    sup: Supervisor,
) -> None:
    """isolate/force_half_open/reset return the transition; an illegal one raises."""
    fake = Fake()
    sup.register("dep", fake)
    with guard():
        async with sup:
            transition = await sup.isolate("dep", reason="maintenance")
            assert (
                transition.source,
                transition.target,
                transition.reason,
            ) == ("closed", "isolated", "maintenance")
            with pytest.raises(BreakerOpen) as caught:
                await sup.call("dep")
            assert math.inf == caught.value.retry_after
            before = sup.status("dep")
            with pytest.raises(
                IllegalTransition, match=r"^cannot isolate a breaker that is isolated$"
            ):
                await sup.isolate("dep")
            assert before == sup.status("dep")
            assert (await sup.force_half_open("dep")).target == "half_open"
            with pytest.raises(IllegalTransition):
                await sup.force_half_open("dep")
            assert (await sup.reset("dep")).target == "closed"
            assert await sup.call("dep") == "ok"
    assert fake.count == 1


async def test_unknown_dependency_lists_the_registered_ones(sup: Supervisor) -> None:
    """A wrong name raises UnknownDependency (a LookupError) naming what is registered."""
    sup.register("llm", Fake())
    sup.register("db", Fake())
    with guard():
        async with sup:
            with pytest.raises(
                UnknownDependency, match=r"^no dependency named 'lm'; registered: 'llm', 'db'$"
            ):
                await sup.call("lm")
            with pytest.raises(LookupError):
                await sup.reset("lm")
    with pytest.raises(UnknownDependency):
        sup.status("lm")


async def test_status_before_start_is_blank_and_closed(sup: Supervisor) -> None:
    """Before `async with`, status() is a blank closed snapshot."""
    sup.register("dep", Fake(), breaker=Breaker())
    status = sup.status("dep")
    assert (
        status.state,
        status.calls,
        status.in_flight,
        status.queued,
        status.break_duration,
        status.transitions,
    ) == ("closed", 0, 0, 0, None, ())
    assert (status.latency.p50, status.latency.p95, status.latency.p99) == (None, None, None)
    assert sup.health().status == HealthStatus.HEALTHY


async def test_health_follows_the_dependencies(sup: Supervisor) -> None:
    """healthy when all closed; degraded when one is down; unhealthy when all or a critical."""
    sup.register("a", Fake())
    sup.register("b", Fake())
    sup.register("c", Fake(), critical=True)
    with guard():
        async with sup:
            assert sup.health().status == HealthStatus.HEALTHY
            await sup.isolate("a")
            health = sup.health()
            assert (
                health.status,
                health.down,
                health.critical_down,
            ) == (HealthStatus.DEGRADED, ("a",), ())
            assert health
            await sup.isolate("c")
            health = sup.health()
            assert (
                health.status,
                health.down,
                health.critical_down,
            ) == (HealthStatus.UNHEALTHY, ("a", "c"), ("c",))
            assert not health
            await sup.reset("c")
            await sup.isolate("b")
            assert sup.health().status != HealthStatus.UNHEALTHY
            await sup.reset("c")
            await sup.isolate("c")
            await sup.reset("c")


async def test_register_after_entering_starts_the_actor(sup: Supervisor) -> None:
    """A dependency registered inside `async with` works at once, control included."""
    with guard():
        async with sup:
            handle = sup.register("late", Fake("hello"))
            assert await handle() == "hello"
            assert (await sup.isolate("late")).target == "isolated"
    assert sup.dependencies == ("late",)


async def test_queued_callers_fail_when_the_breaker_opens_not_when_a_slot_frees(
    sup: Supervisor,
) -> None:
    """
    The breaker opens while another call still holds its slot: the queued callers fail at
    that moment, not later, when the slot would have come to them (guarantee 10).
    """
    gates = {"slow": Gate(), "failing": Gate()}
    outcomes: dict[str, object] = {}

    async def dep(who: str) -> str:
        if who in gates:
            await gates[who].event.wait()
        if who == "failing":
            raise ConnectionError("down")
        return who

    sup.register(
        "dep",
        dep,
        breaker=Breaker(failure_threshold=1, break_duration=30.0),
        bulkhead=Bulkhead(max_concurrent=2, max_queued=2),
    )

    async def caller(who: str) -> None:
        try:
            outcomes[who] = await sup.call("dep", who)
        except (BreakerOpen, ConnectionError) as exc:
            outcomes[who] = type(exc).__name__

    with guard():
        async with sup, anyio.create_task_group() as tg:
            for who in ("slow", "failing", "queued 1", "queued 2"):
                tg.start_soon(caller, who)
                await wait_all_tasks_blocked()
            assert (sup.status("dep").in_flight, sup.status("dep").queued) == (2, 2)
            gates["failing"].open()
            await wait_all_tasks_blocked()
            # "slow" still holds its slot; both queued callers have already failed.
            assert outcomes == {
                "failing": "ConnectionError",
                "queued 1": "BreakerOpen",
                "queued 2": "BreakerOpen",
            }
            assert (sup.status("dep").in_flight, sup.status("dep").queued) == (1, 0)
            gates["slow"].open()
    assert outcomes["slow"] == "slow"  # admitted before the breaker opened: it ran to the end


async def test_isolating_fails_queued_callers_while_every_slot_is_still_held(
    sup: Supervisor,
) -> None:
    """
    A manual isolate frees no slot, so only the transition itself can fail the queue: the
    queued callers get BreakerOpen (retry_after inf) at once, not when the slot frees.
    """
    gate = Gate()
    fake = Fake(gate)
    sup.register("dep", fake, bulkhead=Bulkhead(max_concurrent=1, max_queued=2))
    errors: list[BreakerOpen] = []

    async def caller() -> None:
        try:
            await sup.call("dep")
        except BreakerOpen as exc:
            errors.append(exc)

    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(sup.call, "dep")
            await fake.entered.wait()
            for _ in range(2):
                tg.start_soon(caller)
            await wait_all_tasks_blocked()
            await sup.isolate("dep")
            await wait_all_tasks_blocked()
            assert [(e.state, e.retry_after) for e in errors] == [("isolated", float("inf"))] * 2
            assert (sup.status("dep").in_flight, sup.status("dep").queued) == (1, 0)
            gate.open()
    assert fake.count == 1
