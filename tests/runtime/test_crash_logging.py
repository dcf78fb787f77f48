"""Crash restarts and structured logging (DESIGN.md guarantees 6, 7, 15, 16)."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest
import structlog
from anyio import wait_all_tasks_blocked

from policies import Breaker, BreakHistory, Bulkhead, Retry, backoff
from supervisor import BreakerOpen, DependencyCrashed, Supervisor

from .conftest import Fake, guard

pytestmark = pytest.mark.anyio


def exploding(history: BreakHistory) -> float:
    """A user's break-duration callable with a bug."""
    raise ZeroDivisionError("user bug")


async def test_crashed_actor_is_restarted_and_callers_do_not_hang(sup: Supervisor) -> None:
    """A raising break_duration crashes the actor: the caller gets DependencyCrashed, the
    actor restarts with a fresh closed breaker, and the next call works."""
    fake = Fake(ConnectionError("x"), "after restart")
    sup.register("dep", fake, breaker=Breaker(failure_threshold=1, break_duration=exploding))
    with guard():
        async with sup:
            with pytest.raises(
                DependencyCrashed,
                match=r"^dependency 'dep' crashed and was restarted: ZeroDivisionError: user bug$",
            ) as caught:
                await sup.call("dep")
            assert isinstance(caught.value.__cause__, ZeroDivisionError)
            status = sup.status("dep")
            assert (
                status.state,
                status.restarts,
                status.crash,
            ) == ("closed", 1, "ZeroDivisionError: user bug")
            assert await sup.call("dep") == "after restart"


async def test_restart_limit_leaves_the_dependency_down_and_others_working(
    sup: Supervisor,
) -> None:
    """Past 3 restarts in 60 s the dependency stays down (isolated, crashed); others work."""
    fake = Fake(*[ConnectionError("x")] * 4)
    sup.register("dep", fake, breaker=Breaker(failure_threshold=1, break_duration=exploding))
    sup.register("other", Fake("fine"))
    with guard():
        async with sup:
            for _ in range(3):
                with pytest.raises(DependencyCrashed, match="restarted"):
                    await sup.call("dep")
            with pytest.raises(DependencyCrashed, match=r"is down \(restart limit reached\)"):
                await sup.call("dep")
            with pytest.raises(DependencyCrashed, match="is down"):
                await sup.call("dep")  # rejected without reaching the dependency
            status = sup.status("dep")
            assert (
                status.state,
                status.transitions[-1].reason,
                status.restarts,
            ) == ("isolated", "crashed", 3)
            assert await sup.call("other") == "fine"
            await sup.reset("dep")  # an operator brings it back
            assert await sup.call("dep") == "ok"
    assert fake.count == 5


@pytest.mark.parametrize(("max_restarts", "reason"), [(3, "crashed"), (0, "down")])
async def test_calls_a_crash_fails_out_of_the_queue_are_counted_as_refused(
    each_path: str, max_restarts: int, reason: str
) -> None:
    """Three calls wait in the bulkhead's queue when the call holding the only slot crashes
    the actor: each gets DependencyCrashed at once and never reached the dependency, so each
    is a refusal, counted under `crashed` (the actor restarted) or, when the crash leaves it
    down, under `down`, as every call refused after it is; and `requests` adds up."""
    sup = Supervisor(rng=random.Random(1234), max_restarts=max_restarts)
    gate = anyio.Event()
    started: list[str] = []

    async def dep(label: str) -> str:
        started.append(label)
        await gate.wait()
        raise ConnectionError("x")

    sup.register(
        "dep",
        dep,
        breaker=Breaker(failure_threshold=1, break_duration=exploding),
        bulkhead=Bulkhead(max_concurrent=1, max_queued=3),
    )
    downs: list[bool] = []

    async def call(label: str) -> None:
        with pytest.raises(DependencyCrashed) as caught:
            await sup.call("dep", label)
        downs.append(caught.value.down)

    with guard():
        async with sup, anyio.create_task_group() as tg:
            for label in ("holder", "q1", "q2", "q3"):
                tg.start_soon(call, label)
                await wait_all_tasks_blocked()
            assert 3 == sup.status("dep").queued
            gate.set()
    status = sup.status("dep")
    assert (["holder"], [max_restarts == 0] * 4) == (started, downs)
    assert ({reason: 3}, 3, {}) == (
        status.rejected_by,
        status.rejected,
        status.rejected_by_priority,
    )
    assert (4, 0, 0, 4) == (status.requests, status.successes, status.fallbacks, status.raised)
    assert (0, 0) == (status.in_flight, status.queued)


@pytest.mark.parametrize("why", ["crash", "breaker opens"])
async def test_a_queued_call_cancelled_as_the_queue_fails_counts_nothing(
    each_path: str, why: str
) -> None:
    """The caller of a queued call cancels it in the very step its queue is failed (a crash,
    an opening breaker): it ends cancelled and is in no count, as any cancelled call (the
    refusal is counted as a call takes its error, not when it is woken)."""
    sup = Supervisor(rng=random.Random(1234), max_restarts=3)
    gate = anyio.Event()
    scope = anyio.CancelScope()
    crashes = why == "crash"

    async def dep() -> str:
        await gate.wait()
        scope.cancel()  # the queued caller gives up in the step the holder fails
        raise ConnectionError("x")

    breaker = Breaker(failure_threshold=1, break_duration=exploding if crashes else 10.0)
    sup.register("dep", dep, breaker=breaker, bulkhead=Bulkhead(max_concurrent=1, max_queued=1))

    async def holder() -> None:
        with pytest.raises(DependencyCrashed if crashes else ConnectionError):
            await sup.call("dep")

    async def queued() -> None:
        with scope:
            await sup.call("dep")
        assert scope.cancelled_caught

    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await wait_all_tasks_blocked()
            tg.start_soon(queued)
            await wait_all_tasks_blocked()
            assert 1 == sup.status("dep").queued
            gate.set()
    status = sup.status("dep")
    assert ({}, 1, 1) == (status.rejected_by, status.requests, status.raised)
    assert (0, 0) == (status.in_flight, status.queued)


async def test_arguments_and_results_are_never_logged(sup: Supervisor) -> None:
    """A secret argument, keyword, result and exception message appear in no log event."""
    secret = "s3cr3t-prompt-4242"

    class Boom(ConnectionError):  # transient: retried and recorded by default
        pass

    fake = Fake(Boom(secret), Boom(secret), secret)
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=2, backoff=backoff.constant(0.0)),
        breaker=Breaker(failure_threshold=2, break_duration=0.0),
    )
    with structlog.testing.capture_logs() as logs, guard():
        async with sup:
            with pytest.raises(Boom):
                await sup.call("dep", secret, key=secret)
            assert secret == await sup.call("dep", secret, key=secret)
    assert logs  # retries and transitions were logged...
    assert all(secret not in repr(event) for event in logs)  # ...without the secret


async def test_events_are_named_and_carry_only_types_and_numbers(sup: Supervisor) -> None:
    """Retry, transition and rejection events: exact dicts, exception type names only."""
    fake = Fake(ConnectionError("a"), ConnectionError("b"))
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=2, backoff=backoff.constant(0.0)),
        breaker=Breaker(failure_threshold=2, break_duration=30.0),
    )
    with structlog.testing.capture_logs() as logs, guard():
        async with sup:
            with pytest.raises(ConnectionError):
                await sup.call("dep")
            for _ in range(3):
                with pytest.raises(BreakerOpen):
                    await sup.call("dep")
            await sup.reset("dep")
    events: list[dict[str, Any]] = list(logs)
    assert [
        {
            "event": "ringfence.retry_scheduled",
            "dependency": "dep",
            "attempt": 1,
            "delay": 0.0,
            "error": "ConnectionError",
            "status": None,
            "log_level": "info",
        },
        {
            "event": "ringfence.breaker_opened",
            "dependency": "dep",
            "source": "closed",
            "target": "open",
            "reason": "consecutive_failures",
            "break_duration": 30.0,
            "rejected_since_last": 0,
            "log_level": "warning",
        },
        {
            "event": "ringfence.call_rejected",
            "dependency": "dep",
            "reason": "breaker_open",
            "state": "open",
            "retry_after": pytest.approx(30.0, abs=5.0),  # real time on asyncio
            "log_level": "info",
        },
        {
            "event": "ringfence.breaker_closed",
            "dependency": "dep",
            "source": "open",
            "target": "closed",
            "reason": "manual",
            "break_duration": None,
            "rejected_since_last": 3,
            "log_level": "info",
        },
    ] == events


async def test_crash_events_are_logged(sup: Supervisor) -> None:
    """Crashes log ringfence.actor_crashed and then actor_restarted (or actor_gave_up)."""
    sup = Supervisor(max_restarts=1)
    sup.register(
        "dep",
        Fake(*[ConnectionError("x")] * 2),
        breaker=Breaker(failure_threshold=1, break_duration=exploding),
    )
    with structlog.testing.capture_logs() as logs, guard():
        async with sup:
            for _ in range(2):
                with pytest.raises(DependencyCrashed):
                    await sup.call("dep")
    names = [e["event"] for e in logs if "actor" in e["event"]]
    assert names == [
        "ringfence.actor_crashed",
        "ringfence.actor_restarted",
        "ringfence.actor_crashed",
        "ringfence.actor_gave_up",
    ]
    crashed = next(e for e in logs if e["event"] == "ringfence.actor_crashed")
    assert {"error": "ZeroDivisionError", "dependency": "dep"}.items() <= crashed.items()


async def test_structlog_configured_after_register_still_applies(sup: Supervisor) -> None:
    """ringfence never freezes structlog's configuration: configuring later still applies."""
    seen: list[str] = []

    def keep(_logger: object, _name: str, event: dict[str, Any]) -> Any:
        seen.append(event["event"])
        raise structlog.DropEvent

    sup.register(
        "dep", Fake(ConnectionError("x")), retry=Retry(attempts=2, backoff=backoff.constant(0.0))
    )
    structlog.configure(processors=[keep])
    try:
        with guard():
            async with sup:
                await sup.call("dep")
    finally:
        structlog.reset_defaults()
    assert ["ringfence.retry_scheduled"] == seen
