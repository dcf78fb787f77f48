"""Sync callables in worker threads (DESIGN.md guarantee 14).

These tests use the backends' real clocks: with an autojumping mock clock, virtual time would
jump while a worker thread is still running (trio's MockClock docstring warns about this).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Coroutine
from typing import Any

import anyio
import pytest
from anyio.lowlevel import checkpoint

from policies import Breaker, Bulkhead, Timeout
from supervisor import AttemptTimeout, BulkheadFull, Supervisor
from supervisor._actor import SYNC_THREADS

from .conftest import guard

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Both backends, real clocks."""
    return request.param


async def test_sync_callable_runs_in_a_worker_thread(sup: Supervisor) -> None:
    """A sync callable runs off the event-loop thread and its result comes back."""
    loop_thread = threading.get_ident()

    def blocking(x: int) -> tuple[int, bool]:
        return x * 2, threading.get_ident() != loop_thread

    handle = sup.register("sync", blocking)
    with guard():
        async with sup:
            assert await handle(21) == (42, True)


async def test_sync_attempt_timeout_keeps_the_slot_until_the_thread_ends(
    sup: Supervisor,
) -> None:
    """Attempt timeout on a sync callable: AttemptTimeout at once, slot held by the thread."""
    release = threading.Event()

    def stuck() -> str:
        release.wait(timeout=30)
        return "late"

    sup.register("sync", stuck, timeout=Timeout(attempt=0.05), bulkhead=Bulkhead(max_concurrent=1))
    with guard():
        async with sup:
            with pytest.raises(AttemptTimeout, match=r"^attempt on 'sync' timed out after 0.05s$"):
                await sup.call("sync")
            status = sup.status("sync")
            assert (status.in_flight, status.failures) == (1, 1)
            release.set()
            while sup.status("sync").in_flight:  # the thread's end is delivered to the loop
                await checkpoint()
                await anyio.to_thread.run_sync(lambda: None)


async def _until_no_call_in_flight(sup: Supervisor, name: str) -> None:
    """Wait until abandoned threads have ended and given their slots back."""
    while sup.status(name).in_flight:  # the thread's end is delivered to the loop
        await checkpoint()
        await anyio.to_thread.run_sync(lambda: None)


async def test_a_plain_callable_returning_a_coroutine_is_awaited_on_the_loop(
    sup: Supervisor,
) -> None:
    """A lambda returning a coroutine: the coroutine is awaited on the loop (the real value,
    failures counted), and after the first call the lambda itself is called on the loop."""
    loop_thread = threading.get_ident()
    made_on_loop: list[bool] = []
    ran_on_loop: list[bool] = []

    async def answer(x: int) -> int:
        await checkpoint()
        ran_on_loop.append(threading.get_ident() == loop_thread)
        if x < 0:
            raise ConnectionError("down")
        return x * 2

    def make(x: int) -> Coroutine[Any, Any, int]:
        made_on_loop.append(threading.get_ident() == loop_thread)
        return answer(x)

    handle = sup.register("dep", lambda x: make(x), breaker=Breaker(failure_threshold=2))
    with guard():
        async with sup:
            assert 42 == await handle(21)
            for _ in range(2):
                with pytest.raises(ConnectionError, match=r"^down$"):
                    await handle(-1)
    assert [False, True, True] == made_on_loop
    assert [True, True, True] == ran_on_loop
    status = sup.status("dep")
    assert ("open", 3, 2) == (status.state, status.calls, status.failures)


async def test_the_attempt_timeout_covers_the_awaited_coroutine(sup: Supervisor) -> None:
    """The coroutine a lambda returns is awaited under the attempt timeout: AttemptTimeout, on
    the first call (made in a thread) and on later ones (made on the loop)."""
    sup.register("dep", lambda: anyio.sleep_forever(), timeout=Timeout(attempt=0.05))
    with guard():
        async with sup:
            for _ in range(2):
                with pytest.raises(AttemptTimeout):
                    await sup.call("dep")
    assert (2, 2) == (sup.status("dep").calls, sup.status("dep").failures)


async def test_a_coroutine_returned_after_its_call_timed_out_is_closed(sup: Supervisor) -> None:
    """A thread that returns a coroutine after its caller got AttemptTimeout: nobody will await
    it, so it is closed (no "never awaited" warning), and the slot comes back."""
    release = threading.Event()
    made: list[Coroutine[Any, Any, None]] = []

    def slow_factory() -> Coroutine[Any, Any, None]:
        release.wait(timeout=30)
        made.append(checkpoint())
        return made[-1]

    sup.register("dep", slow_factory, timeout=Timeout(attempt=0.05))
    with guard():
        async with sup:
            with pytest.raises(AttemptTimeout):
                await sup.call("dep")
            release.set()
            await _until_no_call_in_flight(sup, "dep")
    assert [inspect.CORO_CLOSED] == [inspect.getcoroutinestate(c) for c in made]


async def test_a_stuck_sync_dependency_leaves_the_others_their_threads(sup: Supervisor) -> None:
    """45 calls stuck in one sync dependency's threads: a healthy sync dependency still answers
    at once (no AttemptTimeout, breaker closed); the stuck one runs 40 and queues the rest."""
    release = threading.Event()
    entered: list[int] = []

    def stuck() -> str:
        entered.append(1)
        release.wait(timeout=30)
        return "late"

    stuck_calls = SYNC_THREADS + 5
    sup.register("stuck", stuck)
    sup.register(
        "healthy",
        lambda x: x,
        timeout=Timeout(attempt=1.0),
        breaker=Breaker(failure_threshold=1),
    )
    results: list[object] = []

    async def call_stuck() -> None:
        results.append(await sup.call("stuck"))

    with guard():
        async with sup, anyio.create_task_group() as tg:
            for _ in range(stuck_calls):
                tg.start_soon(call_stuck)
            try:
                while len(entered) < SYNC_THREADS:  # every thread of `stuck` is taken
                    await checkpoint()
                for i in range(3):
                    assert i == await sup.call("healthy", i)
                stuck_status = sup.status("stuck")
            finally:
                release.set()
    assert (SYNC_THREADS, 5) == (stuck_status.in_flight, stuck_status.queued)
    healthy = sup.status("healthy")
    assert ("closed", 3, 0) == (healthy.state, healthy.calls, healthy.failures)
    assert ["late"] * stuck_calls == results


# -- A call cancelled before its thread starts (issue 16, defect 1) ---------------------------


async def test_a_sync_call_cancelled_before_its_thread_starts_frees_its_slot(
    sup: Supervisor, each_path: str
) -> None:
    """
    Cancelled at ``to_thread.run_sync``'s first checkpoint, a sync call never reaches a thread:
    its slot must come back at once (it waited for a thread end that never came), and the
    function must not run late.
    """
    ran = []

    def blocking(x: int) -> int:
        ran.append(x)
        return x

    sup.register("dep", blocking, bulkhead=Bulkhead(max_concurrent=4, max_queued=0))
    with guard():
        async with sup:
            for i in range(10):
                with anyio.move_on_after(0):
                    await sup.call("dep", i)
            assert sup.status("dep").in_flight == 0
            assert await sup.call("dep", 99) == 99
    assert ran == [99]


async def test_a_threadless_sync_call_cancelled_early_leaves_no_waiter(
    sup: Supervisor, each_path: str
) -> None:
    """Without a bulkhead (SYNC_THREADS slots), 60 early cancellations lose no slot."""
    sup.register("dep", lambda: "ok")
    sup.register("other", lambda: "fine")
    with guard():
        async with sup:
            for _ in range(60):
                with anyio.move_on_after(0):
                    await sup.call("dep")
            assert (sup.status("dep").in_flight, sup.status("dep").queued) == (0, 0)
            assert await sup.call("dep") == "ok"


async def test_a_thread_that_started_keeps_its_slot_until_it_ends(
    sup: Supervisor, each_path: str
) -> None:
    """The other side of the race: a thread already running keeps the slot (guarantee 14)."""
    started = threading.Event()
    release = threading.Event()

    def blocking() -> str:
        started.set()
        release.wait(10)
        return "late"

    sup.register("dep", blocking, bulkhead=Bulkhead(max_concurrent=1, max_queued=0))
    with guard():
        async with sup:
            async with anyio.create_task_group() as tg:

                async def cancelled_call() -> None:
                    with anyio.CancelScope() as scope:
                        tg.start_soon(_cancel_when, started, scope)
                        await sup.call("dep")

                tg.start_soon(cancelled_call)
            assert sup.status("dep").in_flight == 1  # the thread runs on
            with pytest.raises(BulkheadFull):
                await sup.call("dep")
            release.set()
            await _until_no_call_in_flight(sup, "dep")
    assert sup.status("dep").in_flight == 0


async def _cancel_when(started: threading.Event, scope: anyio.CancelScope) -> None:
    await anyio.to_thread.run_sync(started.wait, 10)
    scope.cancel()
