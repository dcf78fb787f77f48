"""Retries, fallbacks and which errors reach them (DESIGN.md guarantees 11, 12)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from policies import Breaker, Bulkhead, Retry, Timeout, backoff
from supervisor import (
    AttemptTimeout,
    BulkheadFull,
    Supervisor,
    SupervisorClosed,
    UnknownDependency,
)

from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio

NO_WAIT = backoff.constant(0.0)


@pytest.fixture(params=["type", "tuple", "predicate"])
def on_connection_error(request: pytest.FixtureRequest) -> Any:
    """`retry_on` in each of its three forms, all meaning "ConnectionError"."""
    return {
        "type": ConnectionError,
        "tuple": (ConnectionError,),
        "predicate": lambda exc: isinstance(exc, ConnectionError),
    }[request.param]


async def test_retries_until_success(sup: Supervisor, on_connection_error: Any) -> None:
    """Matching failures are retried; the first success is returned."""
    fake = Fake(ConnectionError("1"), ConnectionError("2"), "third time")
    sup.register(
        "dep", fake, retry=Retry(attempts=3, backoff=NO_WAIT, retry_on=on_connection_error)
    )
    with guard():
        async with sup:
            assert await sup.call("dep") == "third time"
    assert fake.count == 3
    assert (sup.status("dep").calls, sup.status("dep").failures) == (3, 2)


async def test_non_matching_error_is_not_retried(sup: Supervisor, on_connection_error: Any) -> None:
    """An error retry_on does not match propagates after one attempt, without a note."""
    fake = Fake(KeyError("k"))
    sup.register(
        "dep", fake, retry=Retry(attempts=3, backoff=NO_WAIT, retry_on=on_connection_error)
    )
    with guard():
        async with sup:
            with pytest.raises(KeyError) as caught:
                await sup.call("dep")
    assert fake.count == 1
    assert not getattr(caught.value, "__notes__", [])


async def test_last_exception_propagates_unchanged_with_a_note(sup: Supervisor) -> None:
    """After the last attempt, the last exception itself propagates, noting the attempts."""
    last = ConnectionError("third")
    fake = Fake(ConnectionError("first"), ConnectionError("second"), last)
    sup.register("dep", fake, retry=Retry(attempts=3, backoff=NO_WAIT))
    with guard():
        async with sup:
            with pytest.raises(ConnectionError) as caught:
                await sup.call("dep")
    assert last is caught.value
    assert (caught.value.__notes__) == [
        "ringfence: 3 attempts on 'dep' failed; this is the last one's error"
    ]


async def test_attempt_timeout_is_retried_by_default(sup: Supervisor, is_trio: bool) -> None:
    """AttemptTimeout is retried when retry_on matches it, as the default does."""
    fake = Fake(Gate(), "second try")
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=2, backoff=NO_WAIT),
        timeout=Timeout(attempt=5.0 if is_trio else 0.05),
    )
    with guard():
        async with sup:
            assert await sup.call("dep") == "second try"
    status = sup.status("dep")
    assert dict(status.errors) == {"AttemptTimeout": 1}
    assert (status.calls, status.failures) == (2, 1)


async def test_bulkhead_full_is_not_retried(sup: Supervisor) -> None:
    """BulkheadFull is ringfence's own rejection: never retried, even by a catch-all predicate."""
    gate = Gate()
    fake = Fake(gate)
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=5, backoff=NO_WAIT, retry_on=lambda exc: True),
        bulkhead=Bulkhead(max_concurrent=1),
    )
    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(sup.call, "dep")
            await fake.entered.wait()
            with pytest.raises(BulkheadFull):
                await sup.call("dep")
            assert sup.status("dep").rejected == 1
            gate.open()
    assert fake.count == 1


async def test_retry_on_result_returns_the_last_result(sup: Supervisor) -> None:
    """A result retry_on_result rejects is retried; the last one is returned when out of tries."""
    fake = Fake(None, None, None)
    sup.register(
        "dep", fake, retry=Retry(attempts=3, backoff=NO_WAIT, retry_on_result=lambda r: r is None)
    )
    sup.register(
        "dep2",
        Fake(None, "value"),
        retry=Retry(attempts=3, backoff=NO_WAIT, retry_on_result=lambda r: r is None),
    )
    with guard():
        async with sup:
            assert await sup.call("dep") is None
            assert await sup.call("dep2") == "value"
    assert fake.count == 3


def _fallback(log: list[str]) -> Any:
    def fallback(exc: BaseException, *args: Any, **kwargs: Any) -> str:
        log.append(type(exc).__name__)
        return f"fallback({type(exc).__name__}, {args}, {kwargs})"

    return fallback


async def test_fallback_gets_the_error_and_the_call_arguments(sup: Supervisor) -> None:
    """The fallback is called as fallback(error, *args, **kwargs) after retries run out."""
    log: list[str] = []
    fake = Fake(ConnectionError("a"), ConnectionError("b"))
    sup.register("dep", fake, retry=Retry(attempts=2, backoff=NO_WAIT), fallback=_fallback(log))
    with guard():
        async with sup:
            assert await sup.call("dep", "p", k=1) == "fallback(ConnectionError, ('p',), {'k': 1})"
    assert log == ["ConnectionError"]
    assert fake.count == 2


async def test_async_fallback_is_awaited(sup: Supervisor) -> None:
    """An async fallback is awaited."""

    async def fallback(exc: BaseException) -> str:
        await anyio.lowlevel.checkpoint()
        return "cached"

    sup.register("dep", Fake(ConnectionError("x")), fallback=fallback)
    with guard():
        async with sup:
            assert await sup.call("dep") == "cached"


async def test_fallback_serves_ringfence_rejections(sup: Supervisor, is_trio: bool) -> None:
    """BreakerOpen, BulkheadFull and AttemptTimeout reach the fallback."""
    log: list[str] = []
    gate = Gate()
    sup.register("open", Fake(), fallback=_fallback(log))
    sup.register("full", Fake(gate), bulkhead=Bulkhead(max_concurrent=1), fallback=_fallback(log))
    sup.register(
        "slow",
        Fake(Gate()),
        timeout=Timeout(attempt=5.0 if is_trio else 0.05),
        fallback=_fallback(log),
    )
    with guard():
        async with sup, anyio.create_task_group() as tg:
            await sup.isolate("open")
            await sup.call("open")
            tg.start_soon(sup.call, "full")
            await wait_all_tasks_blocked()
            await sup.call("full")
            gate.open()
            await sup.call("slow")
    assert log == ["BreakerOpen", "BulkheadFull", "AttemptTimeout"]


async def test_fallback_never_sees_closed_or_unknown_or_cancelled(sup: Supervisor) -> None:
    """SupervisorClosed, UnknownDependency and cancellation never reach the fallback."""
    log: list[str] = []
    fake = Fake(Gate())
    sup.register("dep", fake, fallback=_fallback(log))
    with pytest.raises(SupervisorClosed):
        await sup.call("dep")
    with guard():
        async with sup:
            with pytest.raises(UnknownDependency):
                await sup.call("nope")
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sup.call, "dep")
                    await fake.entered.wait()
                    scope.cancel()
    assert log == []


async def test_breaker_open_goes_to_fallback_without_retry(sup: Supervisor) -> None:
    """With retry and fallback, an opening breaker ends the retries and serves the fallback."""
    log: list[str] = []
    fake = Fake(ConnectionError("down"))
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=4, backoff=NO_WAIT),
        breaker=Breaker(failure_threshold=1, break_duration=30.0),
        fallback=_fallback(log),
    )
    with guard():
        async with sup:
            assert await sup.call("dep") == "fallback(BreakerOpen, (), {})"
    assert log == ["BreakerOpen"]  # attempt 2 met the open breaker and stopped there
    assert fake.count == 1


async def test_attempt_timeout_error_is_a_timeout_error(sup: Supervisor, is_trio: bool) -> None:
    """AttemptTimeout is also a TimeoutError, and says which dependency and limit."""
    sup.register("dep", Fake(Gate()), timeout=Timeout(attempt=5.0 if is_trio else 0.05))
    with guard():
        async with sup:
            with pytest.raises(TimeoutError) as caught:
                await sup.call("dep")
    assert isinstance(caught.value, AttemptTimeout)
    assert caught.value.dependency == "dep"
