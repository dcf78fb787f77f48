"""
Streamed calls (DESIGN.md "Streaming calls"; issue 10, item 3), on asyncio and trio.

The fake dependency is an async generator playing a script. Its ``finally`` records the task
that ran it: "the generator is closed in the caller's task" is checked by that record, taken
the moment it happens, never by waiting for the garbage collector.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import socket
import threading
import warnings
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from policies import Breaker, Bulkhead, RateLimit, Retry, Timeout, backoff
from supervisor import (
    AttemptTimeout,
    BreakerOpen,
    BulkheadFull,
    DeadlineExceeded,
    DependencyCrashed,
    RateLimited,
    Supervisor,
    SupervisorClosed,
)

from ._virtual_loop import on_virtual_time
from .conftest import guard

pytestmark = pytest.mark.anyio

NO_WAIT = backoff.constant(0.0)
CUT = "supervisor shut down while the stream was open"


def task_id() -> int:
    return anyio.get_current_task().id


class Hold:
    """A step that blocks the generator until the test lets it go; ``reached`` says it got there."""

    def __init__(self) -> None:
        self.reached = anyio.Event()
        self.go = anyio.Event()


class Script:
    """
    A scripted streaming dependency (an async generator behind an async ``__call__``). Each
    call plays the next script, a list of steps: an item to yield, an exception to raise, a
    :class:`Hold`, or ``("sleep", seconds)``. Without a script left it yields "a", "b".
    """

    def __init__(self, *scripts: list[Any]) -> None:
        self.scripts: deque[list[Any]] = deque(scripts)
        self.calls = 0
        self.times: list[float] = []
        self.closed_in: list[int] = []  # the task that ran each call's finally

    async def __call__(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        self.calls += 1
        self.times.append(anyio.current_time())
        script = self.scripts.popleft() if self.scripts else ["a", "b"]
        try:
            for step in script:
                if isinstance(step, Hold):
                    step.reached.set()
                    await step.go.wait()
                elif isinstance(step, tuple) and step and step[0] == "sleep":
                    await anyio.sleep(step[1])
                elif isinstance(step, BaseException):
                    raise step
                else:
                    yield step
        finally:
            self.closed_in.append(task_id())


def counts(sup: Supervisor, name: str = "s") -> tuple[int, int, int]:
    """(calls, failures, in_flight) of *name*."""
    status = sup.status(name)
    return status.calls, status.failures, status.in_flight


# -- items, the slot, the outcome -----------------------------------------------------------


@pytest.mark.parametrize("how", ["supervisor", "handle"])
async def test_items_flow_and_the_slot_is_held_until_the_stream_ends(
    sup: Supervisor, how: str
) -> None:
    """Every item reaches the caller; one slot is held while the stream is open; one success."""
    script = Script(["a", "b", "c"])
    handle = sup.register("s", script)
    seen: list[Any] = []
    in_flight: list[int] = []
    with guard():
        async with sup:
            stream = sup.stream("s", "prompt") if how == "supervisor" else handle.stream("p")
            async with stream as items:
                in_flight.append(sup.status("s").in_flight)
                async for item in items:
                    seen.append(item)  # items before the error count
                    in_flight.append(sup.status("s").in_flight)
                after_end = counts(sup)
            after_exit = counts(sup)
    assert ["a", "b", "c"] == seen
    assert [1, 1, 1, 1] == in_flight
    assert (1, 0, 0) == after_end  # the end of the items settles it, before `async with` ends
    assert after_end == after_exit
    assert [task_id()] == script.closed_in


async def test_the_arguments_reach_the_function(sup: Supervisor) -> None:
    """Positional and keyword arguments are passed through unchanged."""

    async def echo(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        yield args
        yield kwargs

    sup.register("s", echo)
    with guard():
        async with sup, sup.stream("s", 1, "two", three=3) as items:
            assert [(1, "two"), {"three": 3}] == [item async for item in items]


async def test_an_empty_stream_is_a_success(sup: Supervisor) -> None:
    """A stream that ends before its first item: no items, one success, the slot back at once."""
    script = Script([])
    sup.register("s", script)
    with guard():
        async with sup, sup.stream("s") as items:
            at_enter = counts(sup)
            assert [] == [item async for item in items]
    assert (1, 0, 0) == at_enter
    assert [task_id()] == script.closed_in


@pytest.mark.parametrize("stop", ["break", "own_error", "relay_closed"])
async def test_the_caller_stopping_early_is_a_success_and_closes_the_generator(
    sup: Supervisor, stop: str
) -> None:
    """break, an error of the caller's own, a relay generator closed: success; finally ran here."""
    script = Script(["a", "b", Hold(), "never"])
    sup.register("s", script)
    with guard():
        async with sup:
            if stop == "break":
                async with sup.stream("s") as items:
                    async for _ in items:
                        break
            elif stop == "own_error":
                own = KeyError("caller")
                with pytest.raises(KeyError) as caught:  # noqa: PT012  # the stream is the subject
                    async with sup.stream("s") as items:
                        async for _ in items:
                            raise own
                assert own is caught.value
            else:

                async def relay() -> AsyncIterator[Any]:
                    async with sup.stream("s") as items:
                        async for item in items:
                            yield item

                gen = relay()
                assert "a" == await gen.__anext__()
                await gen.aclose()  # GeneratorExit at the relay's yield: the caller stopped
            status = sup.status("s")
    assert (1, 0, 0) == (status.calls, status.failures, status.in_flight)
    assert [task_id()] == script.closed_in


# -- what the function may be -----------------------------------------------------------------


async def numbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


class Numbers:
    """An async iterable that is not a generator, with an aclose() of its own (an SDK stream)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.closed_in: list[int] = []

    def __aiter__(self) -> AsyncIterator[int]:
        return numbers(self.n)

    async def aclose(self) -> None:
        self.closed_in.append(task_id())


class Bound:
    async def numbers(self, n: int) -> AsyncIterator[int]:
        async for i in numbers(n):
            yield i


def wraps_gen(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


async def coroutine_of_iterable(n: int) -> Numbers:
    return Numbers(n)


def sync_of_iterable(n: int) -> AsyncIterator[int]:
    return numbers(n)


def sync_of_awaitable(n: int) -> Any:
    return coroutine_of_iterable(n)  # like openai's create(stream=True) behind a plain def


FORMS = {
    "async_gen": numbers,
    "wraps": wraps_gen(numbers),
    "partial": functools.partial(numbers),
    "bound_method": Bound().numbers,
    "async_call": Script,
    "async_def_returning_iterable": coroutine_of_iterable,
    "sync_def_returning_async_gen": sync_of_iterable,
    "sync_def_returning_awaitable": sync_of_awaitable,
}


@pytest.mark.parametrize("form", list(FORMS))
async def test_every_form_of_stream_function_streams(sup: Supervisor, form: str) -> None:
    """Async generator functions (bare or wrapped) and functions returning an async iterable."""
    fn = FORMS[form]
    sup.register("s", Script([0, 1, 2]) if fn is Script else fn)
    with guard():
        async with sup:
            async with sup.stream("s", 3) as items:
                assert [0, 1, 2] == [item async for item in items]
            settled = counts(sup)
    assert (1, 0, 0) == settled


async def test_an_iterable_with_aclose_is_closed_after_its_iterator(sup: Supervisor) -> None:
    """An SDK-like iterable owning a response: its aclose() runs too, in the caller's task."""
    made: list[Numbers] = []

    async def create(n: int) -> Numbers:
        made.append(Numbers(n))
        return made[-1]

    sup.register("s", create)
    with guard():
        async with sup, sup.stream("s", 5) as items:
            async for _ in items:
                break
    assert [task_id()] == made[0].closed_in


@pytest.mark.parametrize(
    ("result", "what"),
    [
        (42, "int, not an async iterable (nor an awaitable of one)"),
        ([1, 2], "list, not an async iterable (nor an awaitable of one); it is a sync iterable"),
        ("sync_gen", "generator, not an async iterable"),
        ("async_cm", "_CM, not an async iterable (nor an awaitable of one); it is an async"),
    ],
    ids=["int", "list", "sync_generator", "async_context_manager"],
)
async def test_a_result_that_is_no_async_iterable_is_a_type_error(
    sup: Supervisor, result: Any, what: str
) -> None:
    """TypeError naming the type; counted like any error; never retried; the slot back."""
    closed: list[bool] = []

    def sync_gen() -> Any:
        try:
            yield 1
        finally:
            closed.append(True)

    class _CM:
        async def __aenter__(self) -> None: ...
        async def __aexit__(self, *exc: object) -> None: ...

    calls: list[int] = []

    async def make() -> Any:
        calls.append(1)
        if result == "sync_gen":
            gen = sync_gen()
            next(gen)
            return gen
        if result == "async_cm":
            return _CM()
        return result

    sup.register("s", make, retry=Retry(attempts=3, backoff=NO_WAIT, retry_on=(TypeError,)))
    with guard():
        async with sup:
            with pytest.raises(TypeError, match=re.escape(f"the function of 's' returned {what}")):
                async with sup.stream("s"):
                    pass
            status = sup.status("s")
    assert [1] == calls
    assert (1, {"TypeError": 1}, 0) == (status.calls, status.errors, status.in_flight)
    assert closed == ([True] if result == "sync_gen" else [])


async def test_awaiting_a_call_of_an_async_generator_function_says_to_stream(
    sup: Supervisor,
) -> None:
    """`await handle(...)` on an async generator function: TypeError pointing at stream()."""
    handle = sup.register("s", numbers)
    with guard():
        async with sup:
            with pytest.raises(TypeError, match=r"use `async with supervisor\.stream\('s'"):
                await handle(3)


async def test_a_stream_is_entered_once(sup: Supervisor) -> None:
    """Entering the same Stream twice is a RuntimeError; the first one is unaffected."""
    sup.register("s", numbers)
    with guard():
        async with sup:
            stream = sup.stream("s", 2)
            async with stream as items:
                with pytest.raises(RuntimeError, match="entered only once"):
                    async with stream:
                        pass
                assert [0, 1] == [item async for item in items]


async def test_a_stream_outside_the_supervisor_is_supervisor_closed(sup: Supervisor) -> None:
    """Before `async with supervisor` and after it: SupervisorClosed, saying which."""
    sup.register("s", numbers)
    with guard():
        with pytest.raises(SupervisorClosed, match="not running"):
            async with sup.stream("s", 1):
                pass
        async with sup:
            pass
        with pytest.raises(SupervisorClosed, match="shut down"):
            async with sup.stream("s", 1):
                pass


# -- failures, retries, fallback ------------------------------------------------------------


async def test_an_error_after_the_first_item_propagates_unchanged_and_is_not_retried(
    sup: Supervisor,
) -> None:
    """Mid-stream: the dependency's own exception, once, counted as a failure; no fallback."""
    boom = ConnectionError("mid-stream")
    script = Script(["a", boom], ["x", "y"])
    sup.register(
        "s",
        script,
        retry=Retry(attempts=3, backoff=NO_WAIT),
        fallback=lambda error, *args: numbers(1),
    )
    seen: list[Any] = []
    with guard():
        async with sup:
            with pytest.raises(ConnectionError) as caught:  # noqa: PT012  # the stream is the subject
                async with sup.stream("s") as items:
                    async for item in items:
                        seen.append(item)  # noqa: PERF401  # items before the error count
            status = sup.status("s")
    assert boom is caught.value
    assert not getattr(boom, "__notes__", [])  # no "attempts" note: it was not retried
    assert ["a"] == seen
    assert 1 == script.calls
    assert (1, 1, 0, 0) == (status.calls, status.failures, status.retries, status.fallbacks)
    assert [task_id()] == script.closed_in


async def test_an_error_before_the_first_item_is_retried(sup: Supervisor) -> None:
    """The first attempt fails before any item: retried, and the caller sees only the second."""
    script = Script([ConnectionError("refused")], ["a", "b"])
    sup.register("s", script, retry=Retry(attempts=3, backoff=NO_WAIT))
    with guard():
        async with sup:
            async with sup.stream("s") as items:
                assert ["a", "b"] == [item async for item in items]
            status = sup.status("s")
    assert 2 == script.calls
    assert (2, 1, 1, 0) == (status.calls, status.failures, status.retries, status.in_flight)
    assert [task_id(), task_id()] == script.closed_in


async def test_the_backoff_before_a_retry_holds_no_slot(sup: Supervisor) -> None:
    """When the retry is decided, the failed attempt's slot is already back."""
    in_flight: list[int] = []

    def retry_on(exc: Exception) -> bool:
        in_flight.append(sup.status("s").in_flight)
        return isinstance(exc, ConnectionError)

    script = Script([ConnectionError("1")], ["a"])
    sup.register(
        "s",
        script,
        retry=Retry(attempts=2, backoff=NO_WAIT, retry_on=retry_on),
        bulkhead=Bulkhead(max_concurrent=1, max_queued=0),
    )
    with guard():
        async with sup, sup.stream("s") as items:
            assert ["a"] == [item async for item in items]
    assert [0] == in_flight


async def test_after_the_last_attempt_the_error_propagates_with_a_note(sup: Supervisor) -> None:
    """Every attempt fails before its first item: the last error, noting the attempts."""
    last = ConnectionError("3")
    script = Script([ConnectionError("1")], [ConnectionError("2")], [last])
    sup.register("s", script, retry=Retry(attempts=3, backoff=NO_WAIT))
    with guard():
        async with sup:
            with pytest.raises(ConnectionError) as caught:
                async with sup.stream("s"):
                    pass
            settled = counts(sup)
    assert last is caught.value
    assert ["ringfence: 3 attempts on 's' failed; this is the last one's error"] == last.__notes__
    assert (3, 3, 0) == settled


def fallback_gen(error: Exception) -> Any:
    async def cached() -> AsyncIterator[str]:
        yield f"cached after {type(error).__name__}"

    return cached()


async def fallback_async_gen(error: Exception) -> AsyncIterator[str]:
    yield f"cached after {type(error).__name__}"


async def fallback_coroutine(error: Exception) -> Any:
    return fallback_gen(error)


@pytest.mark.parametrize(
    "fallback",
    [fallback_async_gen, fallback_gen, fallback_coroutine],
    ids=["async_generator_function", "returns_async_iterable", "returns_awaitable_of_one"],
)
async def test_the_fallback_streams_when_no_first_item_came(sup: Supervisor, fallback: Any) -> None:
    """After the last failed attempt the fallback's items stream instead, holding no slot."""
    script = Script([ConnectionError("1")], [ConnectionError("2")])
    sup.register("s", script, retry=Retry(attempts=2, backoff=NO_WAIT), fallback=fallback)
    with guard():
        async with sup:
            async with sup.stream("s") as items:
                in_flight = sup.status("s").in_flight
                assert ["cached after ConnectionError"] == [item async for item in items]
            status = sup.status("s")
    assert 0 == in_flight
    assert (2, 2, 1) == (status.calls, status.failures, status.fallbacks)


async def test_the_fallback_answers_a_rejection(sup: Supervisor) -> None:
    """BreakerOpen at admission goes to the fallback too (guarantee 12)."""
    sup.register("s", Script(), fallback=fallback_async_gen)
    with guard():
        async with sup:
            await sup.isolate("s")
            async with sup.stream("s") as items:
                assert ["cached after BreakerOpen"] == [item async for item in items]


async def test_the_fallback_is_closed_in_the_callers_task(sup: Supervisor) -> None:
    """A fallback stream left early is closed like the dependency's."""
    closed_in: list[int] = []

    async def fallback(error: Exception) -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            closed_in.append(task_id())

    sup.register("s", Script([ConnectionError("x")]), fallback=fallback)
    with guard():
        async with sup, sup.stream("s") as items:
            async for _ in items:
                break
    assert [task_id()] == closed_in


async def test_the_breaker_opens_after_streams_fail(sup: Supervisor) -> None:
    """Failing streams (before or after their first item) open the breaker; the next is refused."""
    script = Script([ConnectionError("1")], ["a", ConnectionError("2")])
    sup.register("s", script, breaker=Breaker(failure_threshold=2, break_duration=60.0))
    with guard():
        async with sup:
            for _ in range(2):
                with pytest.raises(ConnectionError):  # noqa: PT012  # the stream is the subject
                    async with sup.stream("s") as items:
                        async for _ in items:
                            pass
            with pytest.raises(BreakerOpen):
                async with sup.stream("s"):
                    pass
            status = sup.status("s")
    assert ("open", 2, 1) == (status.state, script.calls, status.rejected)


@on_virtual_time()  # a stalled machine cannot make the fast first item look slow
async def test_the_latency_is_the_time_to_the_first_item(sup: Supervisor) -> None:
    """slow_call judges the first item: a slow first item opens the breaker, a long stream not."""
    unit = 1.0
    sup.register(
        "s",
        Script(
            ["a", ("sleep", 3 * unit), "b", ("sleep", 3 * unit), "c"], [("sleep", 3 * unit), "a"]
        ),
        breaker=Breaker(failure_threshold=1, slow_call=2 * unit, break_duration=60.0),
    )
    with guard():
        async with sup:
            async with sup.stream("s") as items:
                assert ["a", "b", "c"] == [item async for item in items]
            assert ("closed", 0) == (sup.status("s").state, sup.status("s").slow_calls)
            async with sup.stream("s") as items:
                assert ["a"] == [item async for item in items]
            status = sup.status("s")
    assert ("open", 1) == (status.state, status.slow_calls)


# -- timeouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["first_item", "attempt"])
async def test_no_first_item_in_time_is_an_attempt_timeout_and_retried(
    sup: Supervisor, setting: str
) -> None:
    """first_item (else attempt) bounds the wait for the first item; retried like an attempt."""
    first = Hold()
    script = Script([first], ["a"])
    sup.register(
        "s",
        script,
        timeout=Timeout(**{setting: 0.05}),
        retry=Retry(attempts=2, backoff=NO_WAIT),
    )
    with guard():
        async with sup:
            async with sup.stream("s") as items:
                assert ["a"] == [item async for item in items]
            status = sup.status("s")
    assert (2, 1, 1, {"AttemptTimeout": 1}, 0) == (
        status.calls,
        status.failures,
        status.retries,
        status.errors,
        status.in_flight,
    )
    assert [task_id(), task_id()] == script.closed_in


async def test_the_first_item_timeout_says_which_limit(sup: Supervisor) -> None:
    """Without retries the AttemptTimeout reaches the caller, noting Timeout.first_item."""
    sup.register("s", Script([Hold()]), timeout=Timeout(first_item=0.05))
    with guard():
        async with sup:
            with pytest.raises(AttemptTimeout) as caught:
                async with sup.stream("s"):
                    pass
            settled = counts(sup)
    assert ["ringfence: the first item did not come within 0.05s (Timeout.first_item)"] == (
        caught.value.__notes__
    )
    assert (1, 1, 0) == settled


async def test_a_late_item_after_the_first_is_an_attempt_timeout_not_retried(
    sup: Supervisor,
) -> None:
    """between_items: AttemptTimeout mid-stream, a failure, not retried, generator closed here."""
    script = Script(["a", Hold(), "never"], ["x"])
    sup.register(
        "s",
        script,
        timeout=Timeout(between_items=0.05),
        retry=Retry(attempts=3, backoff=NO_WAIT),
    )
    seen: list[Any] = []
    with guard():
        async with sup:
            with pytest.raises(AttemptTimeout) as caught:  # noqa: PT012  # the stream is the subject
                async with sup.stream("s") as items:
                    async for item in items:
                        seen.append(item)  # noqa: PERF401  # items before the error count
            status = sup.status("s")
    assert ["a"] == seen
    assert ["ringfence: the next item did not come within 0.05s (Timeout.between_items)"] == (
        caught.value.__notes__
    )
    assert (1, 1, 1, 0, 0) == (
        script.calls,
        status.calls,
        status.failures,
        status.retries,
        status.in_flight,
    )
    assert [task_id()] == script.closed_in


async def test_the_callers_own_time_between_items_is_not_counted(
    sup: Supervisor, is_trio: bool
) -> None:
    """between_items times the dependency's wait only: a slow caller is not a slow stream."""
    unit = 1.0 if is_trio else 0.05
    sup.register("s", Script(["a", "b", "c"]), timeout=Timeout(between_items=unit))
    with guard():
        async with sup:
            async with sup.stream("s") as items:
                seen = []
                async for item in items:
                    seen.append(item)
                    await anyio.sleep(3 * unit)  # the caller's time, with the item
            settled = counts(sup)
    assert ["a", "b", "c"] == seen
    assert (1, 0, 0) == settled


@on_virtual_time()  # a stalled machine cannot spend the deadline before "b"
async def test_the_total_deadline_ends_a_stream_with_no_outcome(sup: Supervisor) -> None:
    """Timeout.total covers the whole stream: DeadlineExceeded, no outcome, generator closed."""
    unit = 1.0
    script = Script(["a", ("sleep", 2 * unit), "b", Hold(), "never"])
    sup.register("s", script, timeout=Timeout(total=5 * unit))
    seen: list[Any] = []
    with guard():
        async with sup:
            with pytest.raises(DeadlineExceeded):  # noqa: PT012  # the stream is the subject
                async with sup.stream("s") as items:
                    async for item in items:
                        seen.append(item)  # noqa: PERF401  # items before the error count
            settled = counts(sup)
    assert ["a", "b"] == seen
    assert (0, 0, 0) == settled
    assert [task_id()] == script.closed_in


async def test_a_deadline_spent_by_the_caller_ends_the_stream_before_the_next_item(
    sup: Supervisor, is_trio: bool
) -> None:
    """The caller held an item past the deadline: the next __anext__ says so, generator closed."""
    unit = 1.0 if is_trio else 0.05
    script = Script(["a", "b"])
    sup.register("s", script, timeout=Timeout(total=2 * unit))
    with guard():
        async with sup:
            with pytest.raises(DeadlineExceeded):  # noqa: PT012  # the stream is the subject
                async with sup.stream("s") as items:
                    async for _ in items:
                        await anyio.sleep(3 * unit)
            settled = counts(sup)
    assert (0, 0, 0) == settled
    assert [task_id()] == script.closed_in


# -- the bulkhead and the rate limits -------------------------------------------------------------


async def test_a_bulkhead_of_one_queues_a_second_stream_until_the_first_closes(
    sup: Supervisor,
) -> None:
    """The slot is the open stream's: a second stream waits in the queue, then gets it."""
    sup.register("s", Script(["a", "b"], ["x"]), bulkhead=Bulkhead(max_concurrent=1, max_queued=1))
    record: list[str] = []

    async def second() -> None:
        async with sup.stream("s") as items:
            record.append("second entered")
            record.extend([item async for item in items])

    with guard():
        async with sup, anyio.create_task_group() as tg, sup.stream("s") as items:
            assert "a" == await items.__anext__()
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            queued = sup.status("s").queued
            with pytest.raises(BulkheadFull):
                async with sup.stream("s"):
                    pass
            record.append("first closing")
    assert 1 == queued
    assert ["first closing", "second entered", "x"] == record


async def test_every_attempt_takes_a_rate_limit_turn(sup: Supervisor) -> None:
    """A retry needs a turn of its own: with none left and no wait allowed, RateLimited."""
    script = Script([ConnectionError("1")], ["a"])
    sup.register(
        "s",
        script,
        retry=Retry(attempts=3, backoff=NO_WAIT),
        rate_limit=RateLimit(1, per=60.0, max_wait=0.0),
    )
    with guard():
        async with sup:
            with pytest.raises(RateLimited):
                async with sup.stream("s"):
                    pass
    assert 1 == script.calls


async def test_a_stream_waits_for_its_rate_limit_turn(sup: Supervisor, is_trio: bool) -> None:
    """Within max_wait a stream waits for its turn, holding no slot, then streams."""
    unit = 1.0 if is_trio else 0.05
    script = Script(["a"], ["b"])
    sup.register(
        "s",
        script,
        rate_limit=RateLimit(1, per=2 * unit, max_wait=10 * unit),
        bulkhead=Bulkhead(max_concurrent=1, max_queued=0),
    )
    with guard():
        async with sup:
            for expected in ("a", "b"):
                async with sup.stream("s") as items:
                    assert [expected] == [item async for item in items]
    assert 2 == script.calls
    if is_trio:  # virtual time is exact
        assert 2.0 == script.times[1] - script.times[0]


# -- cancellation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["waiting_for_an_item", "in_the_body", "waiting_for_the_first"])
async def test_a_cancelled_caller_counts_nothing_and_the_generator_is_closed_in_its_task(
    sup: Supervisor, where: str
) -> None:
    """Cancelled anywhere: the cancellation goes on, nothing is counted, slot and generator freed."""
    hold = Hold()
    script = Script([hold] if where == "waiting_for_the_first" else ["a", hold, "never"])
    sup.register("s", script)
    caller: list[int] = []
    with guard():
        async with sup:
            with anyio.CancelScope() as scope:
                caller.append(task_id())

                async def cancel_when_blocked() -> None:
                    await hold.reached.wait() if where != "in_the_body" else None
                    scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel_when_blocked)
                    async with sup.stream("s") as items:
                        async for _ in items:
                            if where == "in_the_body":
                                await anyio.sleep_forever()
            status = sup.status("s")
    assert scope.cancelled_caught
    assert (0, 0, 0) == (status.calls, status.failures, status.in_flight)
    assert caller == script.closed_in


async def test_a_native_asyncio_cancel_is_not_swallowed(sup: Supervisor, is_trio: bool) -> None:
    """task.cancel() on a caller blocked for an item: the task ends cancelled, nothing counted."""
    if is_trio:
        pytest.skip("asyncio's own cancellation")
    hold = Hold()
    script = Script(["a", hold])
    sup.register("s", script, timeout=Timeout(between_items=60.0))

    async def consume() -> None:
        async with sup.stream("s") as items:
            async for _ in items:
                pass

    with guard():
        async with sup:
            task = asyncio.ensure_future(consume())
            await hold.reached.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            settled = counts(sup)
    assert task.cancelled()
    assert (0, 0, 0) == settled
    assert 1 == len(script.closed_in)


@pytest.mark.parametrize("caller_after", [0.049, 0.05, 0.051])
async def test_the_callers_deadline_and_between_items_fall_due_together(
    sup: Supervisor, is_trio: bool, caller_after: float
) -> None:
    """The caller's move_on_after and between_items in one iteration: one wins, cleanly."""
    hold = Hold()

    async def stream() -> AsyncIterator[str]:
        yield "a"
        if not is_trio:  # block the loop past both deadlines: they fire in one iteration
            end = anyio.current_time() + 0.1
            while anyio.current_time() < end:
                pass
        await hold.go.wait()
        yield "never"

    sup.register("s", stream, timeout=Timeout(between_items=0.05))
    outcome = "lost"
    with guard():
        async with sup:
            try:
                async with sup.stream("s") as items:
                    assert "a" == await items.__anext__()
                    with anyio.move_on_after(caller_after) as scope:
                        await items.__anext__()
                    outcome = "moved_on" if scope.cancelled_caught else "returned"
            except AttemptTimeout:
                outcome = "AttemptTimeout"
            status = sup.status("s")
    assert outcome in {"moved_on", "AttemptTimeout"}
    if is_trio and caller_after != 0.05:
        assert ("moved_on" if caller_after < 0.05 else "AttemptTimeout") == outcome
    # Moved on: the caller's own cancellation counts nothing; a late item is a failure.
    assert ((0, 0, 0) if outcome == "moved_on" else (1, 1, 0)) == (
        status.calls,
        status.failures,
        status.in_flight,
    )
    if not is_trio:
        assert 0 == asyncio.current_task().cancelling()  # type: ignore[union-attr]


# -- leaving the supervisor -------------------------------------------------------------------


async def test_leaving_the_supervisor_cuts_a_waiting_stream_off(sup: Supervisor) -> None:
    """Blocked for an item when the supervisor leaves: SupervisorClosed, slot freed at once."""
    hold = Hold()
    script = Script(["a", hold, "never"])
    sup.register("s", script)
    outcome: list[object] = []
    consumer: list[int] = []

    async def consume() -> None:
        consumer.append(task_id())
        try:
            async with sup.stream("s") as items:
                async for item in items:
                    outcome.append(item)  # noqa: PERF401  # items before the error count
        except SupervisorClosed as exc:
            outcome.append(str(exc))

    with guard():
        async with anyio.create_task_group() as tg:
            async with sup:
                tg.start_soon(consume)
                await hold.reached.wait()
            after_exit = counts(sup)
    assert ["a", CUT] == outcome
    assert (0, 0, 0) == after_exit
    assert consumer == script.closed_in


async def test_a_stream_held_open_across_the_exit_fails_at_its_next_item(
    sup: Supervisor,
) -> None:
    """A caller busy elsewhere: the slot is freed at exit; its next item raises; closed in its task."""
    script = Script(["a", "b"])
    sup.register("s", script)
    busy = anyio.Event()
    resume = anyio.Event()
    outcome: list[object] = []
    consumer: list[int] = []

    async def consume() -> None:
        consumer.append(task_id())
        async with sup.stream("s") as items:
            outcome.append(await items.__anext__())
            busy.set()
            await resume.wait()  # not in __anext__ when the supervisor leaves
            closed_before = list(script.closed_in)
            with pytest.raises(SupervisorClosed, match=f"^{CUT}$"):
                await items.__anext__()
            outcome.append(closed_before)
            with pytest.raises(SupervisorClosed):  # and every later item
                await items.__anext__()

    with guard():
        async with anyio.create_task_group() as tg:
            async with sup:
                tg.start_soon(consume)
                await busy.wait()
            after_exit = counts(sup)
            resume.set()
    assert ["a", []] == outcome
    assert (0, 0, 0) == after_exit
    assert consumer == script.closed_in


async def test_an_abandoned_stream_frees_its_slot_when_the_supervisor_leaves(
    sup: Supervisor,
) -> None:
    """Entered and never closed: the slot is back at exit; a late close still closes it here."""
    script = Script(["a", "b"])
    sup.register("s", script, bulkhead=Bulkhead(max_concurrent=1, max_queued=0))
    with guard():
        async with sup:
            stream = sup.stream("s")
            items = await stream.__aenter__()  # and never __aexit__ (until the end)
            with pytest.raises(BulkheadFull):  # it really holds the one slot
                async with sup.stream("s"):
                    pass
        after_exit = counts(sup)
        assert [] == script.closed_in  # still suspended: only its caller may close it
        assert "<Stream of 's', cut off>" == repr(stream)
        with pytest.raises(SupervisorClosed):
            await items.__anext__()
        await stream.__aexit__(None, None, None)
    assert (0, 0, 0) == after_exit
    assert [task_id()] == script.closed_in


async def test_a_stream_dropped_without_being_closed_warns(sup: Supervisor) -> None:
    """Entered, never left, then dropped after the supervisor left: a ResourceWarning says so."""
    sup.register("s", Script(["a", "b"]))
    with guard():
        async with sup:
            stream = sup.stream("s")
            items = await stream.__aenter__()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del stream, items  # (the generator goes with it: trio warns about that too)
        await anyio.lowlevel.checkpoint()  # asyncio's finalizer closes it in a task of its own
    ours = [str(w.message) for w in caught if "<Stream" in str(w.message)]
    assert [ResourceWarning] == list({w.category for w in caught})
    assert [
        "<Stream of 's', cut off> was entered and never closed: its iterator is left to the"
        " garbage collector; use `async with supervisor.stream(...) as items:`"
    ] == ours


async def test_leaving_the_supervisor_while_a_stream_opens(sup: Supervisor) -> None:
    """Cut off before its first item: SupervisorClosed from `async with`, not retried."""
    hold = Hold()
    script = Script([hold])
    sup.register("s", script, retry=Retry(attempts=3, backoff=NO_WAIT), fallback=fallback_gen)
    outcome: list[str] = []

    async def consume() -> None:
        try:
            async with sup.stream("s"):
                outcome.append("entered")
        except SupervisorClosed as exc:
            outcome.append(str(exc))

    with guard():
        async with anyio.create_task_group() as tg, sup:
            tg.start_soon(consume)
            await hold.reached.wait()
    assert [CUT] == outcome
    assert (1, 0, 0, 0) == (script.calls, *counts(sup))
    assert 1 == len(script.closed_in)


async def test_a_generator_that_swallows_the_cut_still_ends_with_supervisor_closed(
    sup: Supervisor,
) -> None:
    """It catches our cancellation and yields anyway: the caller still gets SupervisorClosed."""
    hold = Hold()
    closed_in: list[int] = []

    async def stubborn() -> AsyncIterator[str]:
        try:
            yield "a"
            try:
                hold.reached.set()
                await hold.go.wait()
            except anyio.get_cancelled_exc_class():
                pass  # swallowed: a bug of the dependency's, not a reason to go on
            yield "after the cut"
            yield "never"
        finally:
            closed_in.append(task_id())

    sup.register("s", stubborn)
    outcome: list[object] = []
    consumer: list[int] = []

    async def consume() -> None:
        consumer.append(task_id())
        try:
            async with sup.stream("s") as items:
                async for item in items:
                    outcome.append(item)  # noqa: PERF401  # items before the error count
        except SupervisorClosed as exc:
            outcome.append(str(exc))

    with guard():
        async with anyio.create_task_group() as tg, sup:
            tg.start_soon(consume)
            await hold.reached.wait()
    assert ["a", CUT] == outcome
    assert consumer == closed_in
    assert (0, 0, 0) == counts(sup)


async def test_an_error_while_closing_early_is_the_streams_failure(sup: Supervisor) -> None:
    """The generator's finally raises when the caller breaks out: that error, a failure, no leak."""
    closing = ConnectionError("while closing")

    async def fails_to_close() -> AsyncIterator[str]:
        try:
            yield "a"
            yield "b"
        finally:
            raise closing

    sup.register("s", fails_to_close)
    with guard():
        async with sup:
            with pytest.raises(ConnectionError) as caught:  # noqa: PT012  # the stream is the subject
                async with sup.stream("s") as items:
                    async for _ in items:
                        break
            settled = counts(sup)
    assert closing is caught.value
    assert (1, 1, 0) == settled


async def test_a_stream_probe_holds_the_half_open_permit_until_it_ends(sup: Supervisor) -> None:
    """In half-open the stream is the probe for its whole life; its end closes the breaker."""
    sup.register("s", Script(["a", "b"]), breaker=Breaker(failure_threshold=1, half_open_probes=1))
    with guard():
        async with sup:
            await sup.force_half_open("s")
            async with sup.stream("s") as items:
                assert "a" == await items.__anext__()
                with pytest.raises(BreakerOpen) as refused:
                    async with sup.stream("s"):
                        pass
                during = sup.status("s").state
                assert ["b"] == [item async for item in items]
            after = sup.status("s").state
    assert ("half_open", 0.0) == (refused.value.state, refused.value.retry_after)
    assert ("half_open", "closed") == (during, after)


async def test_an_outcome_that_crashes_the_actor_is_dependency_crashed(sup: Supervisor) -> None:
    """The failure opens the breaker, whose break_duration raises: DependencyCrashed, slot back."""

    def exploding(history: object) -> float:
        raise ZeroDivisionError("user bug")

    script = Script(["a", ConnectionError("mid-stream")], ["x"])
    sup.register("s", script, breaker=Breaker(failure_threshold=1, break_duration=exploding))
    with guard():
        async with sup:
            with pytest.raises(DependencyCrashed, match="crashed and was restarted"):  # noqa: PT012  # the stream is the subject
                async with sup.stream("s") as items:
                    async for _ in items:
                        pass
            assert 0 == sup.status("s").in_flight
            async with sup.stream("s") as items:  # restarted: streams again
                assert ["x"] == [item async for item in items]
    assert [task_id(), task_id()] == script.closed_in


# -- a real SDK's stream ------------------------------------------------------------------------
#
# openai's `await client.chat.completions.create(..., stream=True)` returns an AsyncStream: an
# async iterable (not a generator) owning its HTTP response, behind a plain-def wrapper. It is
# registered as it is and streamed against a fake API under a real uvicorn. trio runs on its
# real clock here: requests wait on real sockets (see test_sdk_clients.py's docstring).


class SSEApi:
    """/v1/chat/completions answering each request with the next script: a status or tokens."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.script: deque[int | list[str]] = deque()
        self.requests = 0
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.answer, methods=["POST"])])

    async def answer(self, request: Any) -> Any:
        from starlette.responses import JSONResponse, StreamingResponse

        await request.json()
        self.requests += 1
        step = self.script.popleft() if self.script else ["ok"]
        if isinstance(step, int):
            body = {"error": {"message": f"status {step}", "type": "server_error", "code": None}}
            return JSONResponse(body, step)

        async def events() -> AsyncIterator[str]:
            for token in step:
                chunk = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": "gpt-test",
                    "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def sse_api() -> Iterator[tuple[SSEApi, str]]:
    """The fake API under a real uvicorn on a free loopback port, and its base URL."""
    import uvicorn

    api = SSEApi()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # listening first: an early client waits in the backlog, no polling
    config = uvicorn.Config(api.app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not shut down"


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])  # trio on its real clock
# openai's AsyncStream leaves its inner generators (SSE decoding, the response's bytes) to the
# garbage collector even when read to the end and closed, with or without ringfence; trio
# warns about each. Those warnings are the SDK's, not ours: only theirs are ignored here.
@pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx2|httpcore2)\.[\w.]+' was garbage collected"
    ":ResourceWarning"
)
async def test_openais_stream_is_retried_before_its_first_chunk(
    sup: Supervisor, sse_api: tuple[SSEApi, str]
) -> None:
    """A 503 before any chunk is retried; the chunks then stream; an early break closes it."""
    import openai

    api, base = sse_api
    api.script = deque([503, ["Hel", "lo"], ["a", "b", "c"]])
    api.requests = 0
    client = openai.AsyncOpenAI(base_url=base, api_key="test", max_retries=0)
    llm = sup.register(
        "llm",
        client.chat.completions.create,
        retry=Retry(attempts=2, backoff=NO_WAIT),
        timeout=Timeout(first_item=10.0, between_items=10.0),
    )
    request: dict[str, Any] = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    try:
        with guard():
            async with sup:
                async with llm.stream(**request) as chunks:
                    text = [chunk.choices[0].delta.content async for chunk in chunks]
                async with sup.stream("llm", **request) as chunks:
                    async for _ in chunks:
                        break  # AsyncStream.aclose() closes the HTTP response, in this task
                status = sup.status("llm")
    finally:
        await client.close()
    assert ["Hel", "lo"] == text
    assert 3 == api.requests
    assert (3, 1, 1, 0) == (status.calls, status.failures, status.retries, status.in_flight)
