"""
Bulkhead(max_concurrent=AdaptiveLimit(...)) in the runtime (issue 20, part 1): the machine's
limit is the bulkhead's; raising it hands slots to queued calls, lowering it takes slots back
as calls end; status().limit, LimitChanged, reconfigure between fixed and adaptive. Both
backends, on virtual time.
"""

from __future__ import annotations

import contextlib

import anyio
import pytest

from policies import AdaptiveLimit, Breaker, Bulkhead, Timeout
from policies.concurrency import GradientLimit
from supervisor import BreakerOpen, BulkheadFull, LimitChanged, Supervisor, load_config

from ._virtual_loop import anyio_backend as anyio_backend  # both backends, virtual time
from ._virtual_loop import wait_idle
from .conftest import Gate, guard

pytestmark = pytest.mark.anyio

#: every sample closes a window; growth by one slot per window at full use; no probes
QUICK = {"window_samples": 1, "window": 1e-9, "smoothing": 1.0, "probe_every": 10_000}


class Gated:
    """A dependency whose calls each wait for their own gate, opened by the test in order."""

    def __init__(self) -> None:
        self.gates: list[Gate] = []
        self.started = 0

    async def __call__(self) -> str:
        gate = Gate()
        self.gates.append(gate)
        self.started += 1
        await gate.event.wait()
        return "ok"


async def test_the_limit_is_the_bulkheads_and_status_shows_it(sup: Supervisor) -> None:
    sup.register("fixed", Gated(), bulkhead=Bulkhead(max_concurrent=7))
    sup.register("adaptive", Gated(), bulkhead=Bulkhead(max_concurrent=AdaptiveLimit(initial=3)))
    sup.register("unbounded", Gated())
    with guard():
        async with sup:
            assert sup.status("fixed").limit == 7
            assert sup.status("adaptive").limit == 3
            assert sup.status("unbounded").limit is None


async def test_a_raised_limit_hands_slots_to_queued_calls(sup: Supervisor, path: str) -> None:
    """2 running, 3 queued; one ends at steady latency and full use: the limit goes to 3,
    its slot and the new one go to the two oldest queued calls."""
    dep = Gated()
    sup.register(
        "dep",
        dep,
        bulkhead=Bulkhead(max_concurrent=AdaptiveLimit(initial=2, **QUICK), max_queued=5),
    )
    events: list[LimitChanged] = []
    with guard():
        async with sup, anyio.create_task_group() as tg:
            async with sup.events(kinds=[LimitChanged]) as stream:
                for _ in range(5):
                    tg.start_soon(sup.call, "dep")
                await wait_idle()
                assert (sup.status("dep").in_flight, sup.status("dep").queued) == (2, 3)
                await anyio.sleep(1.0)
                dep.gates[0].open()
                await wait_idle()
                status = sup.status("dep")
                assert (status.limit, status.in_flight, status.queued) == (3, 3, 1)
                assert dep.started == 4
                events.append(await stream.__anext__())
            assert (events[0].previous, events[0].limit) == (2, 3)
            while dep.gates[-1].event.is_set() is False or dep.started < 5:
                for gate in dep.gates:
                    gate.open()
                await wait_idle()


async def test_a_lowered_limit_takes_slots_back_as_calls_end(sup: Supervisor) -> None:
    """Latency doubles: the limit drops; the slots of calls ending above it are not passed
    on to the queue until the calls running are under it."""
    dep = Gated()
    sup.register(
        "dep",
        dep,
        bulkhead=Bulkhead(max_concurrent=AdaptiveLimit(initial=4, **QUICK), max_queued=5),
    )
    with guard():
        async with sup, anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(sup.call, "dep")
            await wait_idle()
            await anyio.sleep(1.0)
            dep.gates[0].open()  # 1 s at 4 in flight: the long-term latency; limit 5
            await wait_idle()
            assert sup.status("dep").limit == 5
            for _ in range(4):
                tg.start_soon(sup.call, "dep")  # 3 running, 4 more: 2 run, 2 queue
            await wait_idle()
            assert (sup.status("dep").in_flight, sup.status("dep").queued) == (5, 2)
            await anyio.sleep(1.0)  # the others have run 2 s: twice as slow
            dep.gates[1].open()
            await wait_idle()
            status = sup.status("dep")
            assert status.limit == 4  # 5 * 0.5 (the gradient's floor) + 1, rounded
            assert (status.in_flight, status.queued) == (4, 2)  # its slot went, not passed on
            for gate in list(dep.gates):
                gate.open()
            while sup.status("dep").in_flight or sup.status("dep").queued:
                for gate in list(dep.gates):
                    gate.open()
                await wait_idle()


async def test_rejections_work_as_with_a_fixed_limit(sup: Supervisor) -> None:
    dep = Gated()
    sup.register("dep", dep, bulkhead=Bulkhead(max_concurrent=AdaptiveLimit(initial=2)))
    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(sup.call, "dep")
            tg.start_soon(sup.call, "dep")
            await wait_idle()
            with pytest.raises(BulkheadFull):
                await sup.call("dep")
            assert sup.status("dep").rejected_by == {"bulkhead_full": 1}
            for gate in dep.gates:
                gate.open()


async def test_reconfigure_between_fixed_and_adaptive(sup: Supervisor) -> None:
    dep = Gated()
    sup.register("dep", dep, bulkhead=Bulkhead(max_concurrent=1, max_queued=5))
    with guard():
        async with sup, anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(sup.call, "dep")
            await wait_idle()
            assert (sup.status("dep").in_flight, sup.status("dep").queued) == (1, 3)
            adaptive = Bulkhead(max_concurrent=AdaptiveLimit(initial=3), max_queued=5)
            await sup.reconfigure("dep", bulkhead=adaptive)
            await wait_idle()
            status = sup.status("dep")
            assert (status.limit, status.in_flight, status.queued) == (3, 3, 1)
            await sup.reconfigure("dep", bulkhead=Bulkhead(max_concurrent=2, max_queued=5))
            assert sup.status("dep").limit == 2
            dep.gates[0].open()  # 3 running over a limit of 2: its slot goes
            await wait_idle()
            assert (sup.status("dep").in_flight, sup.status("dep").queued) == (2, 1)
            while sup.status("dep").in_flight or sup.status("dep").queued:
                for gate in list(dep.gates):
                    gate.open()
                await wait_idle()


async def test_a_configuration_file_gives_and_swaps_an_adaptive_limit() -> None:
    """From a file: register() takes the table as an AdaptiveLimit (status().limit is its
    initial); a fixed limit loaded from another file replaces it through reconfigure (there is
    no reload: an operator's new file reaches a running dependency this way), and back."""
    adaptive = {"dependencies": {"dep": {"bulkhead": {"max_concurrent": {"initial": 3}}}}}
    fixed = load_config({"dependencies": {"dep": {"bulkhead": {"max_concurrent": 2}}}}, env={})
    sup = Supervisor.from_config(adaptive, env={})
    dep = Gated()
    sup.register("dep", dep)
    with guard():
        async with sup, anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(sup.call, "dep")
            await wait_idle()
            status = sup.status("dep")
            assert (status.limit, status.in_flight) == (3, 3)
            assert sup.config is not None
            with pytest.raises(BulkheadFull):  # max_queued = 0, as the file leaves it
                await sup.call("dep")
            await sup.reconfigure("dep", bulkhead=fixed.policies_for("dep")["bulkhead"])
            assert sup.status("dep").limit == 2
            again = sup.config.policies_for("dep")["bulkhead"]
            await sup.reconfigure("dep", bulkhead=again)
            assert sup.status("dep").limit == 3
            while sup.status("dep").in_flight:
                for gate in list(dep.gates):
                    gate.open()
                await wait_idle()


async def test_every_outcome_but_a_nested_refusal_is_a_sample(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A success, a failure and an error the breaker ignores are each one sample of the
    limit, a timeout a dropped one; a nested call's refusal is none (issue 20)."""
    samples: list[bool] = []
    on_sample = GradientLimit.on_sample

    def spy(limit: GradientLimit, now: float, rtt: float, in_flight: int, dropped: bool) -> object:
        samples.append(dropped)
        return on_sample(limit, now, rtt, in_flight, dropped)

    monkeypatch.setattr(GradientLimit, "on_sample", spy)

    async def ok() -> str:
        return "ok"

    async def ignored() -> None:
        raise KeyError("ignored by the breaker")

    async def failing() -> None:
        raise OSError("down")

    async def refused() -> None:
        raise BreakerOpen("inner", 1.0, "open")

    async def slow() -> None:
        await anyio.sleep(10)

    policies = {
        "breaker": Breaker(ignore=KeyError),
        "bulkhead": Bulkhead(max_concurrent=AdaptiveLimit(initial=3)),
        "timeout": Timeout(attempt=1.0),
    }
    fns = {"ok": ok, "ignored": ignored, "failing": failing, "refused": refused, "slow": slow}
    for name, fn in fns.items():
        sup.register(name, fn, **policies)
    seen = {}
    with guard():
        async with sup:
            for name in fns:
                with contextlib.suppress(Exception):
                    await sup.call(name)
                seen[name] = samples.copy()
                samples.clear()
    assert {
        "ok": [False],
        "ignored": [False],
        "failing": [False],
        "refused": [],
        "slow": [True],
    } == seen
