"""
A hedged call is one request whatever its contenders did (issues 19 and 21): ``status()``'s
``requests``, ``successes``, ``fallbacks`` and ``raised`` count what callers got, so a
contender's failure that the race absorbed (another contender answered, or the call raised
another's error) is not a second request nor a second error raised to a caller; the attempt
counts (``calls``, ``failures``, ``errors``, ``cut_off``) still count every contender, as the
breaker saw them. Virtual time on both backends, as in ``test_hedge.py``.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from policies import Hedge, Retry, Timeout
from supervisor import DeadlineExceeded, DependencyStatus, Supervisor, SupervisorClosed

from .conftest import guard
from .test_hedge import Tail, TailStream
from .test_hedge import anyio_backend as anyio_backend  # both backends, virtual time

pytestmark = pytest.mark.anyio

BOOM = ("raise", 0.2, ConnectionError("boom"))
QUICK_BOOM = ("raise", 0.01, ConnectionError("quick"))


def caller_view(status: DependencyStatus) -> tuple[int, int, int, int]:
    """(requests, successes, fallbacks, raised), checked to reconcile."""
    view = (status.requests, status.successes, status.fallbacks, status.raised)
    assert view[0] == sum(view[1:]), view
    return view


async def run(sup: Supervisor, *steps: object, **policies: Any) -> DependencyStatus:
    """One hedged call (delay 0.1 s) over *steps*; its status after."""
    sup.register("dep", Tail(*steps), hedge=Hedge(delay=0.1), **policies)
    with guard():
        async with sup:
            try:
                await sup.call("dep")
            except (ConnectionError, DeadlineExceeded):
                pass
            return sup.status("dep")


@pytest.mark.parametrize(
    ("steps", "policies", "view", "attempts"),
    [
        # the hedge wins, the stalled attempt is cancelled: one call, one success
        ((10.0, 0.02), {}, (1, 1, 0, 0), (1, 0, 0)),
        # the attempt fails while the hedge runs; the hedge answers
        ((("raise", 0.15, ConnectionError("a")), 0.1), {}, (1, 1, 0, 0), (2, 1, 0)),
        # the hedge fails at once; the attempt answers later
        ((0.3, QUICK_BOOM), {}, (1, 1, 0, 0), (2, 1, 0)),
        # both fail: the last error is raised, once
        ((BOOM, BOOM), {}, (1, 0, 0, 1), (2, 2, 0)),
        # both fail, then the retry answers
        ((BOOM, BOOM, 0.01), {"retry": Retry(attempts=2, budget=None)}, (1, 1, 0, 0), (3, 2, 0)),
        # both fail, the fallback answers
        ((BOOM, BOOM), {"fallback": lambda *a: "fb"}, (1, 0, 1, 0), (2, 2, 0)),
        # both cut off by the call's total deadline: one DeadlineExceeded
        ((10.0, 10.0), {"timeout": Timeout(total=0.5)}, (1, 0, 0, 1), (0, 0, 2)),
    ],
    ids=[
        "hedge-wins",
        "attempt-fails-hedge-wins",
        "hedge-fails-attempt-wins",
        "both-fail",
        "both-fail-then-retry",
        "both-fail-then-fallback",
        "both-cut-by-deadline",
    ],
)
async def test_a_hedged_call_is_one_request(
    sup: Supervisor,
    steps: tuple[object, ...],
    policies: dict[str, Any],
    view: tuple[int, int, int, int],
    attempts: tuple[int, int, int],
) -> None:
    status = await run(sup, *steps, **policies)
    assert view == caller_view(status)
    assert attempts == (status.calls, status.failures, status.cut_off)


async def test_a_hedged_stream_whose_contenders_all_failed_is_one_request(
    sup: Supervisor,
) -> None:
    """The stream's opening and its hedge both fail: one request, one error raised."""

    async def failing(*args: Any) -> Any:
        await anyio.sleep(0.2)  # the hedge starts at 0.1 s
        raise ConnectionError("no stream")
        yield  # an async generator

    sup.register("llm", failing, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            with pytest.raises(ConnectionError):
                async with sup.stream("llm") as items:
                    await items.__anext__()
            status = sup.status("llm")
    assert (1, 0, 0, 1) == caller_view(status)
    assert (2, 2, 1) == (status.calls, status.failures, status.hedges)


async def test_a_hedged_stream_won_by_the_hedge_is_one_request(sup: Supervisor) -> None:
    gen = TailStream(10.0, 0.02)
    sup.register("llm", gen, hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            async with sup.stream("llm") as items:
                assert [1, 101] == [item async for item in items]
            status = sup.status("llm")
    assert (1, 1, 0, 0) == caller_view(status)


async def test_a_hedged_call_cut_off_by_leaving_counts_nothing(sup: Supervisor) -> None:
    """Shutdown cuts the attempt and its hedge off: as for any call, nothing is counted."""
    tail = Tail(10.0, 10.0)
    sup.register("dep", tail, hedge=Hedge(delay=0.1))
    with guard():
        async with anyio.create_task_group() as tg, sup:

            async def call() -> None:
                with pytest.raises(SupervisorClosed):
                    await sup.call("dep")

            tg.start_soon(call)
            await anyio.sleep(0.2)  # virtual: the hedge has started
            assert 2 == len(tail.started)
        status = sup.status("dep")
    assert (0, 0, 0, 0) == caller_view(status)
    assert (0, 1) == (status.calls, status.hedges)


async def test_a_hedged_call_the_caller_cancels_counts_no_request(sup: Supervisor) -> None:
    """
    The attempt fails at 0.15 s while the hedge runs; the caller gives up at 0.3 s: as any
    cancelled call, no request (the failure stays an attempt's: calls 1, failures 1).
    """
    sup.register("dep", Tail(("raise", 0.15, ConnectionError("a")), 10.0), hedge=Hedge(delay=0.1))
    with guard():
        async with sup:
            with anyio.move_on_after(0.3) as scope:
                await sup.call("dep")
            assert scope.cancelled_caught
            status = sup.status("dep")
    assert (0, 0, 0, 0) == caller_view(status)
    assert (1, 1, 1) == (status.calls, status.failures, status.hedges)
