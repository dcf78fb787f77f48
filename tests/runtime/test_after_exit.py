"""
A call coroutine made while the supervisor runs and first awaited after it left (``pending =
llm(x)`` inside ``async with``, ``await pending`` after it) raises ``SupervisorClosed``
whatever its breaker's state, counts nothing, and changes nothing: it does not ask the breaker
for a permit, so an open breaker whose break has ended stays open (``Actor._refuse``). Both
backends, on virtual time.
"""

from __future__ import annotations

import anyio
import pytest

from policies import Breaker, State
from supervisor import DependencyCrashed, Supervisor, SupervisorClosed

from ._virtual_loop import anyio_backend as anyio_backend  # both backends, virtual time
from .conftest import guard

pytestmark = pytest.mark.anyio


class _Broken(Exception):
    pass


async def _fails() -> str:
    raise _Broken


def _crashing_break(history: object) -> float:
    raise RuntimeError("a bug in a break duration")


#: the breaker's state before the call that is awaited after exit, and after it
STATES = {
    "closed": State.CLOSED,
    "open": State.OPEN,
    "open, break over": State.OPEN,  # (its next call would have made it half-open)
    "isolated": State.ISOLATED,
    "down": State.ISOLATED,  # a crash with no restart left isolates it
}


@pytest.mark.parametrize("state", list(STATES))
async def test_a_call_awaited_after_exit_is_refused_and_counts_nothing(state: str) -> None:
    crashes = state == "down"
    sup = Supervisor(max_restarts=0)
    breaker = Breaker(
        failure_threshold=1,
        break_duration=_crashing_break if crashes else 10.0,  # type: ignore[arg-type]
    )
    dependency = sup.register("dep", _fails, breaker=breaker)
    with guard():
        async with sup:
            if state != "closed":
                with pytest.raises(DependencyCrashed if crashes else _Broken):
                    await dependency()
            if state == "isolated":
                await sup.isolate("dep")
            pending = dependency()
            if state == "open, break over":
                await anyio.sleep(20.0)  # (virtual time: the break ends, nobody calls)
            before = sup.status("dep")
        with pytest.raises(SupervisorClosed):
            await pending
    after = sup.status("dep")
    assert (STATES[state], before.requests, before.rejected_by, before.transitions) == (
        after.state,
        after.requests,
        after.rejected_by,
        after.transitions,
    )
