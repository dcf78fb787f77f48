"""BulkheadFull carries a retry_after hint: the latest call's latency (issue 21)."""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.abc import TaskStatus

from policies import Bulkhead
from supervisor import BulkheadFull, Supervisor

from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio


async def test_bulkhead_full_says_how_long_a_call_takes(sup: Supervisor, is_trio: bool) -> None:
    """None before any call ended; then the latest call's latency (exact on trio's clock)."""
    seconds = 2.0 if is_trio else 0.05  # the dependency's own latency (virtual on trio)
    first, second = Gate(), Gate()
    fake = Fake(first, ("sleep", seconds, "ok"), second)
    handle = sup.register("dep", fake, bulkhead=Bulkhead(max_concurrent=1, max_queued=0))

    async def hold(task_status: TaskStatus[None]) -> None:
        task_status.started()
        await handle()

    with guard():
        async with sup, anyio.create_task_group() as tg:
            await tg.start(hold)
            await fake.entered.wait()
            with pytest.raises(BulkheadFull) as before:
                await handle()
            first.open()
            await wait_all_tasks_blocked()
            assert "ok" == await handle()  # takes `seconds`
            fake.entered = anyio.Event()
            await tg.start(hold)
            await fake.entered.wait()
            with pytest.raises(BulkheadFull) as after:
                await handle()
            second.open()
    assert None is before.value.retry_after
    hint = after.value.retry_after
    assert hint is not None
    if is_trio:
        assert seconds == hint
    else:
        assert seconds <= hint < 10 * seconds
