"""Regression tests for the defects of issue #8 found by adversarial use (both backends)."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from anyio import wait_all_tasks_blocked

from supervisor import Supervisor, SupervisorClosed

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
