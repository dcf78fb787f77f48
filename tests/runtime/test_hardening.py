"""Regression tests for the defects of issue #8 found by adversarial use (both backends)."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from anyio import wait_all_tasks_blocked

from policies import Breaker, BreakHistory, Retry, backoff
from supervisor import DependencyCrashed, Supervisor, SupervisorClosed

from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio


class _Stop(BaseException):
    """A user's own BaseException (not an Exception, not a cancellation)."""


# -- defect 4: the body's exception comes out as itself -------------------------------------------


@pytest.mark.parametrize("error", [KeyError("k"), _Stop("stop")], ids=["KeyError", "BaseException"])
async def test_the_body_exception_leaves_async_with_as_itself(
    sup: Supervisor, error: BaseException
) -> None:
    """An exception raised in the body of `async with supervisor:` is not wrapped in a group,
    and the call the body left running is still cut off with SupervisorClosed."""
    fake = Fake(Gate())  # never opened: only the shutdown ends the call
    handle = sup.register("dep", fake)
    outcomes: list[str] = []

    async def caller() -> None:
        try:
            await handle()
        except SupervisorClosed as exc:
            outcomes.append(str(exc))

    async def body(tg: anyio.abc.TaskGroup) -> None:
        async with sup:
            tg.start_soon(caller)
            await fake.entered.wait()
            raise error

    with guard():
        async with anyio.create_task_group() as tg:
            with pytest.raises(type(error)) as caught:
                await body(tg)
    assert error is caught.value
    assert ["supervisor shut down while the call was running"] == outcomes
    with pytest.raises(SupervisorClosed):
        await handle()
    assert 0 == len(await _pending_tasks())


async def _pending_tasks() -> list[str]:
    """Names of the actor tasks still alive (none once `async with` is left)."""
    await wait_all_tasks_blocked()
    return [
        task.name
        for task in anyio.get_running_tasks()
        if task.name is not None and task.name.startswith("ringfence actor")
    ]


async def test_a_cancelled_body_is_caught_by_its_own_scope(sup: Supervisor) -> None:
    """Cancellation of the body still reaches the enclosing cancel scope that asked for it."""
    sup.register("dep", Fake())
    with guard():
        with anyio.CancelScope() as scope:
            async with sup:
                scope.cancel()
                await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert 0 == len(await _pending_tasks())


# -- defect 7: an unprintable user exception does not disable the breaker -------------------------


class _Unprintable(Exception):
    """A user's exception whose __str__ itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("broken __str__")


def _unprintable_break(history: BreakHistory) -> float:
    """A user's break-duration callable with a bug and an unprintable error."""
    raise _Unprintable


async def test_unprintable_crash_restarts_the_actor_then_leaves_it_down(sup: Supervisor) -> None:
    """A break_duration raising an exception whose __str__ raises crashes the actor as any
    crash does: callers get DependencyCrashed, restarts, then down; never the __str__ error."""
    fake = Fake(*[ConnectionError("x")] * 4)
    sup.register(
        "dep", fake, breaker=Breaker(failure_threshold=1, break_duration=_unprintable_break)
    )
    with guard():
        async with sup:
            for _ in range(3):
                with pytest.raises(
                    DependencyCrashed,
                    match=r"^dependency 'dep' crashed and was restarted: "
                    r"_Unprintable: <unprintable _Unprintable object>$",
                ) as caught:
                    await sup.call("dep")
                assert isinstance(caught.value.__cause__, _Unprintable)
            assert "closed" == sup.status("dep").state
            for _ in range(2):  # the 4th crash leaves it down; then rejected without a call
                with pytest.raises(DependencyCrashed, match=r"is down \(restart limit reached\)"):
                    await sup.call("dep")
            status = sup.status("dep")
    assert ("isolated", 3, "_Unprintable: <unprintable _Unprintable object>") == (
        status.state,
        status.restarts,
        status.crash,
    )
    assert 4 == fake.count


# -- defect 8: the attempts note is added once ----------------------------------------------------


async def test_a_reraised_exception_carries_one_attempts_note(sup: Supervisor) -> None:
    """A pre-allocated exception raised by every attempt of 1,000 calls carries one ringfence
    note (and the user's own notes); a later single-attempt raise drops the stale one."""
    error = ConnectionError("the same object every time")
    error.add_note("the user's own note")
    retrying = [True]

    async def always_fails() -> None:
        raise error

    sup.register(
        "dep",
        always_fails,
        retry=Retry(attempts=3, backoff=backoff.constant(0.0), retry_on=lambda _: retrying[0]),
    )
    with guard():
        async with sup:
            for _ in range(1_000):
                with pytest.raises(ConnectionError):
                    await sup.call("dep")
            assert [
                "the user's own note",
                "ringfence: 3 attempts on 'dep' failed; this is the last one's error",
            ] == error.__notes__
            retrying[0] = False
            with pytest.raises(ConnectionError):
                await sup.call("dep")
    assert ["the user's own note"] == error.__notes__
