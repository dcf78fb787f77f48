"""Sync callables in worker threads (DESIGN.md guarantee 14).

These tests use the backends' real clocks: with an autojumping mock clock, virtual time would
jump while a worker thread is still running (trio's MockClock docstring warns about this).
"""

from __future__ import annotations

import threading

import anyio
import pytest
from anyio.lowlevel import checkpoint

from policies import Bulkhead, Timeout
from supervisor import AttemptTimeout, Supervisor

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
