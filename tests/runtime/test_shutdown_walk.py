"""
Leaving the supervisor cuts off every running call (guarantee 13), however the caller awaits
it. On asyncio the fast path registers nothing per call: shutdown finds its attempts by
walking every task's await chain (``_backends._asyncio_general.cut_fast``). Each case here
hides the attempt behind one way of awaiting it; a walk that misses it leaves the call blocked
on a gate nobody opens, and the hang guard fails the test.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

from policies import Timeout
from supervisor import Supervisor, SupervisorClosed
from supervisor._backends import _asyncio_general

from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio

Call = Callable[[], Awaitable[object]]
CUT_OFF = "supervisor shut down while the call was running"


def _only(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a task group wraps."""
    assert len(group.exceptions) == 1, group
    return group.exceptions[0]


# -- the ways of awaiting a call: each returns the call's result ------------------------------


async def plain(call: Call) -> object:
    return await call()


async def under_asyncio_timeout(call: Call) -> object:
    async with asyncio.timeout(3600):
        return await call()


async def under_wait_for(call: Call) -> object:
    return await asyncio.wait_for(call(), 3600)  # a task of its own on 3.11


async def under_shield(call: Call) -> object:
    return await asyncio.shield(call())  # the call runs in the shield's own task


async def under_gather(call: Call) -> object:
    (result,) = await asyncio.gather(call())  # the awaited link is a future, not a coroutine
    return result


async def in_asyncio_task_group(call: Call) -> object:
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(call())  # type: ignore[arg-type]
    except BaseExceptionGroup as group:
        raise _only(group) from None
    return task.result()


async def under_anyio_scopes(call: Call) -> object:
    with anyio.CancelScope(), anyio.move_on_after(3600):
        return await call()


async def in_anyio_task_group(call: Call) -> object:
    results: list[object] = []

    async def run() -> None:
        results.append(await call())

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
    except BaseExceptionGroup as group:
        raise _only(group) from None
    return results[0]


async def in_async_generator(call: Call) -> object:
    async def items() -> AsyncIterator[object]:
        yield await call()

    agen = items()
    try:
        return await agen.__anext__()  # awaited through an async_generator_asend
    finally:
        await agen.aclose()


async def through_anext(call: Call) -> object:
    async def items() -> AsyncIterator[object]:
        yield await call()

    agen = items()
    try:
        return await anext(agen, None)  # awaited through anext()'s own awaitable
    finally:
        await agen.aclose()


async def in_async_context_manager(call: Call) -> object:
    @asynccontextmanager
    async def entered() -> AsyncIterator[object]:
        yield await call()  # awaited in __aenter__, through the generator's asend

    async with entered() as result:
        return result


class Wrapped:
    """An awaitable whose ``__await__`` hands out the coroutine's own (a coroutine_wrapper)."""

    def __init__(self, awaitable: Awaitable[object]) -> None:
        self.awaitable = awaitable

    def __await__(self) -> Generator[Any, None, object]:
        return self.awaitable.__await__()


class YieldingFrom(Wrapped):
    """An awaitable written as a generator: ``yield from`` the coroutine's ``__await__()``."""

    def __await__(self) -> Generator[Any, None, object]:
        return (yield from self.awaitable.__await__())


class Relay(Wrapped):
    """
    An awaitable written as an iterator object that drives the coroutine by hand: the walk
    cannot see into it, and the garbage collector's referrers find the attempt's task.
    """

    def __await__(self) -> Generator[Any, None, object]:
        return self  # type: ignore[return-value]

    def __next__(self) -> object:
        return self.send(None)

    def send(self, value: object) -> object:
        return self.awaitable.send(value)  # type: ignore[attr-defined]

    def throw(self, *exc: Any) -> object:
        return self.awaitable.throw(*exc)  # type: ignore[attr-defined]


async def via_coroutine_wrapper(call: Call) -> object:
    return await Wrapped(call())


async def via_yield_from(call: Call) -> object:
    return await YieldingFrom(call())


async def via_hand_driven_iterator(call: Call) -> object:
    return await Relay(call())


ASYNCIO_ONLY = {
    under_asyncio_timeout,
    under_wait_for,
    under_shield,
    under_gather,
    in_asyncio_task_group,
    via_hand_driven_iterator,
}
WAYS = [
    plain,
    under_asyncio_timeout,
    under_wait_for,
    under_shield,
    under_gather,
    in_asyncio_task_group,
    under_anyio_scopes,
    in_anyio_task_group,
    in_async_generator,
    through_anext,
    in_async_context_manager,
    via_coroutine_wrapper,
    via_yield_from,
    via_hand_driven_iterator,
]


async def _cut_off_on_leaving(
    sup: Supervisor, ways: list[Callable[[Call], Awaitable[object]]]
) -> list[str]:
    """Each way awaits a call that only the shutdown can end: what each caller got."""
    fake = Fake(*(Gate() for _ in ways))  # never opened
    sup.register("dep", fake)
    outcomes: list[str] = []

    async def caller(way: Callable[[Call], Awaitable[object]]) -> None:
        try:
            outcomes.append(repr(await way(lambda: sup.call("dep"))))
        except SupervisorClosed as exc:
            outcomes.append(str(exc))

    with guard():
        async with anyio.create_task_group() as tg, sup:
            for way in ways:
                tg.start_soon(caller, way)
            while fake.running < len(ways):  # every call is in the dependency
                await anyio.wait_all_tasks_blocked()
    status = sup.status("dep")
    assert (status.calls, status.failures, status.in_flight) == (0, 0, 0)
    return outcomes


@pytest.mark.parametrize("way", WAYS, ids=lambda way: way.__name__)
async def test_leaving_cuts_off_a_call_however_it_is_awaited(
    sup: Supervisor, each_path: str, is_trio: bool, way: Callable[[Call], Awaitable[object]]
) -> None:
    if is_trio and way in ASYNCIO_ONLY:
        pytest.skip("asyncio's own primitives")
    assert await _cut_off_on_leaving(sup, [way]) == [CUT_OFF]


async def test_leaving_cuts_off_calls_awaited_every_way_at_once(
    sup: Supervisor, each_path: str, is_trio: bool
) -> None:
    """One walk finds them all, and as many as are running (none is cut twice or missed)."""
    ways = [way for way in WAYS if not (is_trio and way in ASYNCIO_ONLY)]
    assert await _cut_off_on_leaving(sup, ways) == [CUT_OFF] * len(ways)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in Python 3.12")
async def test_leaving_cuts_off_a_call_in_an_eager_task(
    sup: Supervisor, each_path: str, is_trio: bool
) -> None:
    """An eager task runs its first step inside create_task: the call is entered there."""
    if is_trio:
        pytest.skip("asyncio's own primitives")
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    try:
        assert await _cut_off_on_leaving(sup, [plain, under_shield, under_gather]) == [CUT_OFF] * 3
    finally:
        loop.set_task_factory(factory)


async def test_leaving_cuts_off_a_call_re_entering_its_dependency(
    sup: Supervisor, each_path: str
) -> None:
    """A dependency that calls itself in the same task: the inner call is cut off, and the
    outer one ends with what its dependency raised."""
    gate = Gate()  # never opened
    depth = 0

    async def dep() -> str:
        nonlocal depth
        depth += 1
        if depth == 1:
            return str(await sup.call("dep"))
        await gate.event.wait()
        return "ok"

    sup.register("dep", dep)
    outcome: list[str] = []

    async def caller() -> None:
        try:
            await sup.call("dep")
        except SupervisorClosed as exc:
            outcome.append(str(exc))

    with guard():
        async with anyio.create_task_group() as tg, sup:
            tg.start_soon(caller)
            while depth < 2 or sup.status("dep").in_flight < 2:
                await anyio.wait_all_tasks_blocked()
    assert outcome == [CUT_OFF]
    assert sup.status("dep").in_flight == 0


async def test_leaving_from_inside_a_call_cuts_that_call_off(
    sup: Supervisor, each_path: str, is_trio: bool
) -> None:
    """The dependency itself leaves the supervisor, in the task running the call: the walk
    finds the call on that task's stack (it is running, not awaiting)."""
    if is_trio:
        pytest.skip("trio forbids leaving a nursery from inside a scope opened in it")
    stack = AsyncExitStack()

    async def dep() -> str:
        await stack.aclose()  # leaves the supervisor, from inside this call
        return "ok"

    sup.register("dep", dep)
    with guard():
        await stack.enter_async_context(sup)
        with pytest.raises(SupervisorClosed, match=CUT_OFF):
            await sup.call("dep")
    status = sup.status("dep")
    assert (status.calls, status.failures, status.in_flight) == (0, 0, 0)


async def test_the_fallback_alone_finds_every_call_and_its_task(
    sup: Supervisor, path: str, is_trio: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    What the walk misses the garbage collector finds, with the task parked on the future
    at the bottom of the call's chain: with a walk that sees nothing, every way still works.
    """
    if is_trio or path == "general":
        pytest.skip("the asyncio fast path's shutdown walk")
    monkeypatch.setattr(_asyncio_general, "_attempts", lambda self, loop: iter(()))
    assert await _cut_off_on_leaving(sup, WAYS) == [CUT_OFF] * len(WAYS)


async def test_a_call_whose_task_cannot_be_told_is_reported(
    sup: Supervisor, path: str, is_trio: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tasks parked on the future at the bottom of the call's chain: which one runs the
    call cannot be told, and a RuntimeWarning says the call was not cut off."""
    if is_trio or path == "general":
        pytest.skip("the asyncio fast path's shutdown walk")
    monkeypatch.setattr(_asyncio_general, "_attempts", lambda self, loop: iter(()))
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    entered = anyio.Event()

    async def dep() -> str:
        entered.set()
        return await future

    sup.register("dep", dep)
    results: list[object] = []

    async def caller() -> None:
        results.append(await sup.call("dep"))

    async def park() -> None:
        results.append(await future)

    with guard():
        async with anyio.create_task_group() as tg:
            tg.start_soon(park)  # a second task parked on it
            stack = AsyncExitStack()
            await stack.enter_async_context(sup)
            tg.start_soon(caller)
            await entered.wait()
            await anyio.wait_all_tasks_blocked()
            with pytest.warns(RuntimeWarning, match="'dep' .* was not cut off at shutdown"):
                await stack.aclose()
            future.set_result("ok")
    assert results == ["ok", "ok"]  # it ran on, to its end


async def test_a_dependency_that_swallows_the_cut_answers_and_leaves_no_cancellation(
    sup: Supervisor, each_path: str, is_trio: bool
) -> None:
    """The dependency catches the shutdown's cancellation and answers anyway: its answer is
    the call's, and the task is left with no cancellation request of ours."""
    if is_trio:
        pytest.skip("asyncio's cancellation counts")
    entered, cut = asyncio.Event(), asyncio.Event()

    async def dep() -> str:
        entered.set()
        try:
            await asyncio.Event().wait()  # only the cut ends it
        except asyncio.CancelledError:
            cut.set()
        await asyncio.sleep(0)  # (an await after the cut: a cancellation would land here)
        return "late"

    sup.register("dep", dep)
    stack = AsyncExitStack()
    with guard():
        await stack.enter_async_context(sup)
        task = asyncio.ensure_future(sup.call("dep"))
        await entered.wait()
        await stack.aclose()
        assert await task == "late"
        assert cut.is_set()
        assert task.cancelling() == 0


async def test_a_cancellation_already_on_its_way_goes_first(
    sup: Supervisor, each_path: str, is_trio: bool
) -> None:
    """The caller's own cancellation is pending when the supervisor leaves: the cut waits a
    loop iteration (anyio's rule, see cancel_pending), the call ends as the caller's
    cancellation and counts nothing, and no cut is left over."""
    if is_trio:
        pytest.skip("asyncio's cancellation counts")
    fake = Fake(Gate())
    sup.register("dep", fake)
    stack = AsyncExitStack()
    with guard():
        await stack.enter_async_context(sup)
        task = asyncio.ensure_future(sup.call("dep"))
        await fake.entered.wait()
        task.cancel()  # on its way, not seen yet
        await stack.aclose()  # leaves in the same iteration
        with pytest.raises(asyncio.CancelledError):
            await task
    status = sup.status("dep")
    assert (status.calls, status.failures, status.in_flight) == (0, 0, 0)


async def test_leaving_cuts_off_each_way_of_one_dependency_once(
    sup: Supervisor, each_path: str, is_trio: bool
) -> None:
    """
    One call runs on the fast way; a reconfigure adds an attempt timeout, and a second call
    runs the general way (a Running record, in the same coroutine). Leaving cuts each off once:
    the walk finds only the fast one (the general one is its timers' and close()'s), and both
    callers get SupervisorClosed, counting nothing.
    """
    gate = Gate()  # never opened
    fake = Fake(gate, gate)
    sup.register("dep", fake)
    outcomes: list[str] = []

    async def caller() -> None:
        try:
            await sup.call("dep")
        except SupervisorClosed as exc:
            outcomes.append(str(exc))

    with guard():
        async with anyio.create_task_group() as tg, sup:
            tg.start_soon(caller)
            while fake.running < 1:
                await anyio.wait_all_tasks_blocked()
            await sup.reconfigure("dep", timeout=Timeout(attempt=3600))
            tg.start_soon(caller)
            while fake.running < 2:
                await anyio.wait_all_tasks_blocked()
            if each_path != "general" and not is_trio:
                # The walk sees the fast one only: the general one is its Running record's.
                actor = sup._actors["dep"]
                found = list(_asyncio_general._attempts(actor, asyncio.get_running_loop()))
                assert [frame.f_locals.get("running", "fast") for frame, _ in found] == ["fast"]
    status = sup.status("dep")
    assert outcomes == [CUT_OFF, CUT_OFF]
    assert (status.calls, status.failures, status.in_flight, status.requests) == (0, 0, 0, 0)


async def test_a_deferred_cut_reaches_a_call_the_walk_cannot_see(
    sup: Supervisor, path: str, is_trio: bool
) -> None:
    """
    A call awaited through a hand-driven iterator (the garbage collector finds it, not the
    walk); the caller's own cancellation is on its way when the supervisor leaves, and the
    dependency swallows it: the cut, deferred a loop iteration, still reaches the call.
    """
    if is_trio or path == "general":
        pytest.skip("the asyncio fast path's shutdown walk")
    gate = Gate()  # never opened
    swallowed: list[bool] = []
    entered = asyncio.Event()

    async def dep() -> str:
        entered.set()
        try:
            await gate.event.wait()
        except asyncio.CancelledError:
            swallowed.append(True)  # and waits again, as a careless dependency would
        await gate.event.wait()
        return "ok"

    sup.register("dep", dep)
    stack = AsyncExitStack()
    with guard():
        await stack.enter_async_context(sup)
        task = asyncio.ensure_future(via_hand_driven_iterator(lambda: sup.call("dep")))
        await entered.wait()
        task.cancel()  # on its way, not seen yet
        await stack.aclose()  # leaves in the same iteration: the cut waits one
        with pytest.raises(SupervisorClosed):  # the cut, after the swallowed cancellation
            await task
    assert swallowed == [True]
    status = sup.status("dep")
    assert (status.calls, status.failures, status.in_flight) == (0, 0, 0)
