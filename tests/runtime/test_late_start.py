"""
No attempt starts after the call's total deadline (``policies.timeout``), however late the
event loop resumes the call. A retry is decided only when its backoff ends before the
deadline, and a wait for a turn, a pause or a queue place only when it ends before it; but a
loop that runs late (a stalled process, a long step of another task) resumes the call after
the instant it was due. The call is then turned away without reaching the dependency:
``DeadlineExceeded``, counted as a ``deadline`` rejection.

On virtual time, every path of both backends: :func:`jump` moves the clock past the deadline while the call
waits, as a stall would, and the loop then runs every due timer at once.
"""

from __future__ import annotations

import math

import anyio
import httpx
import pytest

from policies import Bulkhead, RateLimit, Retry, Timeout, backoff
from supervisor import DeadlineExceeded, Supervisor

from ._virtual_loop import anyio_backend as anyio_backend
from ._virtual_loop import jump, wait_idle
from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio


def http_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://api.example.invalid/v1/complete")
    response = httpx.Response(status, headers=headers or {}, request=request)
    return httpx.HTTPStatusError(f"status {status}", request=request, response=response)


async def call(sup: Supervisor, outcome: list[BaseException | object]) -> None:
    """A call to "llm"; its result or its exception goes to *outcome*."""
    try:
        outcome.append(await sup.call("llm"))
    except Exception as exc:
        outcome.append(exc)


async def late(sup: Supervisor, seconds: float) -> BaseException | object:
    """Start a call, let it reach its wait, stall the loop for *seconds*; its outcome."""
    outcome: list[BaseException | object] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, sup, outcome)
        await wait_idle()
        jump(seconds)
    return outcome[0]


async def test_a_retry_whose_backoff_the_loop_ends_past_the_deadline_is_not_started(
    sup: Supervisor,
    each_path: str,
) -> None:
    """Backoff 1 s within a 5 s deadline: decided; the loop resumes the call at 10 s."""
    failure = http_error(503)
    fake = Fake(failure)
    sup.register(
        "llm",
        fake,
        retry=Retry(attempts=3, backoff=backoff.constant(1.0)),
        timeout=Timeout(total=5.0),
    )
    with guard():
        async with sup:
            outcome = await late(sup, 10.0)
            status = sup.status("llm")
    assert isinstance(outcome, DeadlineExceeded)
    assert outcome.__cause__ is failure  # what it was retrying
    assert 1 == fake.count  # the retry never reached the dependency
    assert {"deadline": 1} == status.rejected_by
    assert 1 == status.retries


async def test_a_turn_the_loop_resumes_past_the_deadline_is_not_used(
    sup: Supervisor, each_path: str
) -> None:
    """The turn is due at 10 s within a 15 s deadline: the call waits for it; the loop resumes
    it at 20 s. Its turn goes back."""
    fake = Fake()
    sup.register(
        "llm",
        fake,
        rate_limit=RateLimit(1, per=10.0, max_wait=math.inf),
        timeout=Timeout(total=15.0),
    )
    with guard():
        async with sup:
            await sup.call("llm")  # the bucket is empty
            outcome = await late(sup, 20.0)
            status = sup.status("llm")
    assert isinstance(outcome, DeadlineExceeded)
    assert 1 == fake.count
    assert {"deadline": 1} == status.rejected_by
    assert status.rate_limit[0] == pytest.approx(1.0)  # full again: nothing spent at 20 s


async def test_a_pause_the_loop_ends_past_the_deadline_does_not_let_the_call_go(
    sup: Supervisor,
    each_path: str,
) -> None:
    """A 429 pauses the dependency for 5 s; a call with an 8 s deadline waits the pause out;
    the loop resumes it at 20 s."""
    fake = Fake(http_error(429, {"retry-after": "5"}))
    sup.register("llm", fake, timeout=Timeout(total=8.0))
    with guard():
        async with sup:
            with pytest.raises(httpx.HTTPStatusError):
                await sup.call("llm")
            outcome = await late(sup, 20.0)
            status = sup.status("llm")
    assert isinstance(outcome, DeadlineExceeded)
    assert 1 == fake.count
    assert {"deadline": 1} == status.rejected_by


async def test_a_slot_granted_in_time_to_a_call_the_loop_resumes_too_late_is_passed_on(
    sup: Supervisor,
    each_path: str,
) -> None:
    """The only slot is freed at the instant the queued call's 5 s deadline passes, as the
    loop resumes at 10 s: granted or not, the call does not go, and the slot is free."""
    gate = Gate()
    fake = Fake(gate)
    sup.register("llm", fake, bulkhead=Bulkhead(max_concurrent=1, max_queued=1))
    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(sup.call, "llm")  # holds the slot, with no deadline
            await fake.entered.wait()
            await sup.reconfigure("llm", timeout=Timeout(total=5.0))  # for later calls
            outcome: list[BaseException | object] = []
            tg.start_soon(call, sup, outcome)  # queued
            await wait_idle()
            assert 1 == sup.status("llm").queued
            gate.open()  # the first call ends in the loop's next step ...
            jump(10.0)  # ... which comes late
        status = sup.status("llm")
    assert isinstance(outcome[0], DeadlineExceeded)
    assert 1 == fake.count
    assert {"deadline": 1} == status.rejected_by
    assert (0, 0) == (status.in_flight, status.queued)
