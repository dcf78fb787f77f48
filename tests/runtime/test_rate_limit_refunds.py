"""
Turns given back at admission never bring later calls closer together than the limit allows
(issue 16, item 3, defect 4): a caller cancelled while it waits for its turn gives the turn
back, but the callers queued behind it keep the start times they were promised, so a new call
must not be handed the same slot (policies/rate_limit.py, rule 7).

Start times are recorded inside the dependency with ``anyio.current_time()``. The first test
runs on both backends and asserts an outcome only (a call is refused at once, or not), with
margins of an hour, so real time on asyncio cannot change it. The second asserts start times:
it runs on trio only, whose virtual clock makes them exact; on asyncio the same scenario would
have to wait real time and compare real timestamps, which a loaded machine makes flaky, and
the first test already covers asyncio.
"""

from __future__ import annotations

import itertools
import math

import anyio
import anyio.lowlevel
import pytest

from policies import RateLimit, Timeout
from supervisor import RateLimited, Supervisor

from .conftest import guard

pytestmark = pytest.mark.anyio


async def blocked(is_trio: bool) -> None:
    """Let the tasks just started run until they block (see test_rate_limits.blocked)."""
    if is_trio:
        await anyio.wait_all_tasks_blocked()
    else:
        for _ in range(5):
            await anyio.lowlevel.checkpoint()


class Starts:
    """A dependency that records when each call started, by the name it was called with."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    async def __call__(self, name: str) -> str:
        self.at[name] = anyio.current_time()
        return name


async def test_a_waiter_cancelled_in_the_middle_of_the_line_leaves_its_slot_to_nobody(
    sup: Supervisor, is_trio: bool
) -> None:
    """One call an hour, burst 1: `a` goes, `b` to `e` wait for their turns at 1 to 4 h. `b`
    is cancelled. `e` still holds 4 h, so a new call's turn is at 5 h, past its total deadline
    of 4.5 h: RateLimited at once. Moving the schedule back by `b`'s hour gave the new call
    4 h, `e`'s slot: two calls due together under a burst of 1."""
    hour = 3600.0
    starts = Starts()
    sup.register(
        "llm",
        starts,
        rate_limit=RateLimit(1, per=hour, max_wait=math.inf),
        timeout=Timeout(total=4.5 * hour),
    )
    scopes = {name: anyio.CancelScope() for name in "bcde"}
    outcome: list[object] = []
    with guard():
        async with sup, anyio.create_task_group() as tg:
            assert "a" == await sup.call("llm", "a")

            async def wait_for_turn(name: str) -> None:
                with scopes[name]:
                    await sup.call("llm", name)

            for name in "bcde":
                tg.start_soon(wait_for_turn, name)
                await blocked(is_trio)
            scopes["b"].cancel()
            await blocked(is_trio)  # b is gone, and its turn with it

            with anyio.move_on_after(1.0):  # only reached if the call waits: a failure
                try:
                    outcome.append(await sup.call("llm", "f"))
                except RateLimited as error:
                    outcome.append(error)
            tg.cancel_scope.cancel()
    assert 1 == len(outcome), "the new call was admitted to wait for a turn"
    refused = outcome[0]
    assert isinstance(refused, RateLimited)
    assert 5 * hour == pytest.approx(refused.retry_after, rel=1e-3)
    assert ["a"] == list(starts.at)


async def test_cancelled_waiters_never_bring_later_calls_closer_than_the_limit(
    sup: Supervisor, is_trio: bool
) -> None:
    """Ten a second, burst 1 (trio only: start times, see the module docstring). Eight calls
    line up at once; two in the middle of the line are cancelled half a turn later, while two
    new calls arrive; then the end of the line is cancelled and one more call arrives. Every
    call that started did so at least T = 0.1 s after the one before."""
    if not is_trio:
        pytest.skip("asserts start times: trio's virtual clock only (module docstring)")
    interval = 0.1
    starts = Starts()
    sup.register("llm", starts, rate_limit=RateLimit(10, per=1.0, burst=1, max_wait=math.inf))
    scopes = {name: anyio.CancelScope() for name in "abcdefghijk"}
    with guard():
        async with sup, anyio.create_task_group() as tg:
            t0 = anyio.current_time()

            async def call(name: str) -> None:
                with scopes[name]:
                    await sup.call("llm", name)

            for name in "abcdefgh":  # a goes at once; b..h wait 0.1 .. 0.7 s
                tg.start_soon(call, name)
                await anyio.wait_all_tasks_blocked()
            await anyio.sleep(interval / 2)
            scopes["c"].cancel()
            scopes["e"].cancel()
            await anyio.wait_all_tasks_blocked()
            for name in "ij":  # behind h: 0.8 and 0.9 s, not c's and e's slots
                tg.start_soon(call, name)
                await anyio.wait_all_tasks_blocked()
            await anyio.sleep(interval * 2)
            scopes["j"].cancel()  # the end of the line
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(call, "k")
    times = sorted(t - t0 for t in starts.at.values())
    assert set("abdfghik") == set(starts.at)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= interval - 1e-9 for gap in gaps), (times, gaps)


async def test_a_call_that_used_less_than_its_estimate_gives_no_promised_slot_away(
    sup: Supervisor, is_trio: bool
) -> None:
    """The same through settle: 100 tokens an hour, `a` estimated at 100 runs; `b` (100)
    waits for its turn at 1 h; `a` reports 10 used. Its 90 unused tokens lie below `b`'s
    turn, so a new call of 90 still waits for `b`: due at 1.9 h, past its deadline of 1.5 h,
    RateLimited at once. Moving the schedule back by 90 gave it 1 h, `b`'s turn."""
    hour = 3600.0
    gate = anyio.Event()
    usage = {"a": 10}

    async def fn(name: str, tokens: int) -> str:
        if name == "a":
            await gate.wait()
        return name

    sup.register(
        "llm",
        fn,
        rate_limit=RateLimit(
            100,
            per=hour,
            max_wait=math.inf,
            cost=lambda name, tokens: tokens,
            settle=lambda name: usage.get(name, 100),
        ),
        timeout=Timeout(total=1.5 * hour),
    )
    outcome: list[object] = []
    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(sup.call, "llm", "a", 100)
            await blocked(is_trio)
            tg.start_soon(sup.call, "llm", "b", 100)  # waits for its turn at 1 h
            await blocked(is_trio)
            gate.set()  # `a` ends, and settles at 10
            await blocked(is_trio)
            with anyio.move_on_after(1.0):  # only reached if the call waits: a failure
                try:
                    outcome.append(await sup.call("llm", "c", 90))
                except RateLimited as error:
                    outcome.append(error)
            tg.cancel_scope.cancel()
    assert 1 == len(outcome), "the new call was admitted to wait for a turn"
    assert isinstance(outcome[0], RateLimited)
    assert 1.9 * hour == pytest.approx(outcome[0].retry_after, rel=1e-3)


async def test_the_latest_call_that_used_less_than_its_estimate_gives_the_rest_back(
    sup: Supervisor,
) -> None:
    """Estimated at 100 tokens, used 10: with no call queued behind it, the 90 come back at
    once (the call names its own turn, so the limit knows nothing was promised above it)."""

    async def fn(prompt: str) -> dict[str, int]:
        return {"usage": 10}

    sup.register(
        "llm",
        fn,
        rate_limit=RateLimit(
            1000, per=3600.0, cost=lambda prompt: 100, settle=lambda result: result["usage"]
        ),
    )
    with guard():
        async with sup:
            await sup.call("llm", "hello")
            left = sup.status("llm").rate_limit[0]
    assert 990 == pytest.approx(left, abs=0.5)
