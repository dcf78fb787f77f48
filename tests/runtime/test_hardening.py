"""Regression tests for the defects of issue #8 found by adversarial use (both backends)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio import wait_all_tasks_blocked

from policies import Breaker, BreakHistory, Bulkhead, Retry, backoff
from supervisor import BreakerOpen, BulkheadFull, DependencyCrashed, Supervisor, SupervisorClosed

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
        retry=Retry(
            attempts=3,
            backoff=backoff.constant(0.0),
            retry_on=lambda _: retrying[0],
            budget=None,  # 1,000 calls retrying at once: the budget would stop some
        ),
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


# -- defect 3: every async callable is recognised -------------------------------------------------


async def _answer(x: int, factor: int = 1) -> int:
    """The real async dependency behind every form below."""
    await anyio.lowlevel.checkpoint()
    if x < 0:
        raise ConnectionError("down")
    return x * factor


def _plain_wraps(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator whose wrapper is a plain def returning the coroutine (the SDKs' shape)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


class _Client:
    async def answer(self, x: int) -> int:
        return await _answer(x, 2)

    def stream(self, x: int) -> Iterator[int]:
        yield x


class _AsyncCallable:
    async def __call__(self, x: int) -> int:
        return await _answer(x, 2)


class _AsyncGenCallable:
    async def __call__(self, x: int) -> AsyncIterator[int]:
        yield x


_ASYNC_FORMS = {
    "wraps": _plain_wraps(functools.partial(_answer, factor=2)),
    "wraps-twice": _plain_wraps(_plain_wraps(functools.partial(_answer, factor=2))),
    "nested-partial": functools.partial(functools.partial(_answer), factor=2),
    "bound-method": _Client().answer,
    "partial-of-bound-method": functools.partial(_Client().answer),
    "wraps-of-bound-method": _plain_wraps(_Client().answer),
    "async-__call__": _AsyncCallable(),
    "partial-of-async-__call__": functools.partial(_AsyncCallable()),
}


@pytest.mark.parametrize("fn", _ASYNC_FORMS.values(), ids=_ASYNC_FORMS.keys())
async def test_every_async_form_is_awaited_and_counted(sup: Supervisor, fn: Any) -> None:
    """Behind wraps, partials, bound methods or __call__, an async callable is awaited on the
    loop: its real value comes back and its failures reach the breaker."""
    handle = sup.register("dep", fn, breaker=Breaker(failure_threshold=2))
    with guard():
        async with sup:
            assert 42 == await handle(21)
            for _ in range(2):
                with pytest.raises(ConnectionError, match=r"^down$"):
                    await handle(-1)
    status = sup.status("dep")
    assert ("open", 3, 2, {"ConnectionError": 2}) == (
        status.state,
        status.calls,
        status.failures,
        status.errors,
    )


async def test_a_plain_wraps_facade_returning_a_value_still_works(sup: Supervisor) -> None:
    """A wraps-decorated plain def that returns a value (a sync facade) is not awaited."""

    def facade(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(x: int) -> int:
            return x + 1

        return wrapper

    handle = sup.register("dep", facade(_answer))
    with guard():
        async with sup:
            assert 2 == await handle(1)


@pytest.mark.parametrize(
    "fallback",
    [
        lambda error, x: _answer(x, 3),
        _plain_wraps(lambda error, x: _answer(x, 3)),
        functools.partial(lambda error, x, factor: _answer(x, factor), factor=3),
    ],
    ids=["lambda", "wraps", "partial"],
)
async def test_an_awaitable_from_the_fallback_is_awaited(sup: Supervisor, fallback: Any) -> None:
    """A fallback returning a coroutine, whatever its form, answers with the awaited value."""
    handle = sup.register("dep", Fake(ConnectionError("down")), fallback=fallback)
    with guard():
        async with sup:
            assert 30 == await handle(10)


def _gen(x: int) -> Iterator[int]:
    yield x


async def _agen(x: int) -> AsyncIterator[int]:
    yield x


_GENERATOR_FORMS = {
    "generator": _gen,
    "partial-of-generator": functools.partial(_gen, 1),
    "bound-generator-method": _Client().stream,
}
_ASYNC_GENERATOR_FORMS = {
    "async-generator": _agen,
    "wraps-of-async-generator": _plain_wraps(_agen),
    "async-generator-__call__": _AsyncGenCallable(),
}


@pytest.mark.parametrize("argument", ["fn", "fallback"])
@pytest.mark.parametrize("fn", _GENERATOR_FORMS.values(), ids=_GENERATOR_FORMS.keys())
def test_generator_functions_are_rejected_at_register(argument: str, fn: Any) -> None:
    """A (sync) generator function, in any form, is a clear TypeError at register, as fn or
    as fallback: its items would be produced outside every policy; nothing is registered."""
    sup = Supervisor()
    arguments: dict[str, Any] = {"fn": _answer, argument: fn}
    with pytest.raises(
        TypeError,
        match=rf"^'{argument}' \(.+\) is or wraps a generator function: its items would be"
        r" produced outside every policy; register an async generator function",
    ):
        sup.register("dep", **arguments)
    assert () == sup.dependencies


async def test_an_async_generator_fallback_answers_a_function_returning_an_async_iterable(
    sup: Supervisor,
) -> None:
    """A function returning an async iterable (openai's `create(stream=True)` is an `async
    def`) cannot be told from a call at register: an async generator fallback is accepted and
    streams in its place when the function fails before its first item."""

    async def create(prompt: str) -> AsyncIterator[str]:
        raise ConnectionError("down")

    async def cached(error: Exception, prompt: str) -> AsyncIterator[str]:
        yield "cached"

    sup.register("llm", create, fallback=cached)
    with guard():
        async with sup, sup.stream("llm", "hi") as items:
            assert ["cached"] == [item async for item in items]
    assert 1 == sup.status("llm").fallbacks


@pytest.mark.parametrize("fn", _ASYNC_GENERATOR_FORMS.values(), ids=_ASYNC_GENERATOR_FORMS.keys())
async def test_awaiting_a_call_of_an_async_generator_function_says_to_stream_it(
    sup: Supervisor, fn: Any
) -> None:
    """An async generator function, in any form, registers (its calls are streams); awaiting
    a call of it is a clear TypeError naming supervisor.stream, and nothing runs."""
    handle = sup.register("dep", fn)
    with guard():
        async with sup:
            with pytest.raises(TypeError, match=r"^'dep' is an async generator function: .*stream"):
                await handle(1)
            with pytest.raises(TypeError, match=r"supervisor\.stream\('dep', \.\.\.\)"):
                await sup.call("dep", 1)
            assert 0 == sup.status("dep").calls


# -- nested calls: an inner dependency's rejection is not the outer one's failure -----------------


async def test_an_inner_rejection_counts_for_the_outer_dependency_as_neither(
    sup: Supervisor,
) -> None:
    """`outer` calling `inner` through the supervisor: inner's BreakerOpen and BulkheadFull
    reach outer's caller unchanged and unretried, and never count as outer's failures."""
    gate = Gate()
    inner_fake = Fake(gate)
    sup.register("inner", inner_fake, bulkhead=Bulkhead(max_concurrent=1, max_queued=0))
    outer_runs: list[int] = []

    async def outer() -> object:
        outer_runs.append(1)
        return await sup.call("inner")

    sup.register(
        "outer",
        outer,
        breaker=Breaker(failure_threshold=1),
        retry=Retry(attempts=3, backoff=backoff.constant(0.0)),
    )
    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(sup.call, "inner")  # holds inner's only slot
            await inner_fake.entered.wait()
            with pytest.raises(BulkheadFull) as full:
                await sup.call("outer")
            gate.open()
            await sup.isolate("inner")
            with pytest.raises(BreakerOpen) as open_:
                await sup.call("outer")
    assert ("inner", "inner") == (full.value.dependency, open_.value.dependency)
    assert [1, 1] == outer_runs  # not retried
    outer_status = sup.status("outer")
    assert ("closed", 2, 0, {"BulkheadFull": 1, "BreakerOpen": 1}) == (
        outer_status.state,
        outer_status.calls,
        outer_status.failures,
        outer_status.errors,
    )
    assert 2 == sup.status("inner").rejected


# -- fallback arity: checked at register where both signatures can be read ------------------------


async def _ask(prompt, *, temperature=0.0):  # unannotated: a plain signature in messages
    return prompt


@pytest.mark.parametrize(
    "fallback",
    [
        lambda error, prompt, *, temperature=0.0: "cached",
        lambda error, *args, **kwargs: "cached",
        lambda error, prompt, **kwargs: "cached",
        functools.partial(lambda tag, error, prompt, temperature=0.0: tag, "cached"),
    ],
    ids=["exact", "variadic", "named-then-kwargs", "partial"],
)
def test_a_fallback_that_takes_every_call_is_accepted(fallback: Any) -> None:
    """A fallback taking (error, *args, **kwargs) for each call fn accepts is registered."""
    sup = Supervisor()
    sup.register("dep", _ask, fallback=fallback)
    assert ("dep",) == sup.dependencies


@pytest.mark.parametrize(
    ("fallback", "why"),
    [
        (lambda: "cached", "too many positional arguments"),
        (lambda error: "cached", "too many positional arguments"),
        (lambda error, prompt: "cached", "got an unexpected keyword argument 'temperature'"),
        (
            lambda error, prompt, extra, *, temperature=0.0: "cached",
            "missing a required argument: 'extra'",
        ),
    ],
    ids=["no-error", "error-only", "no-keyword", "extra-required"],
)
def test_a_fallback_that_cannot_take_a_call_is_rejected(fallback: Any, why: str) -> None:
    """A fallback that cannot take (error, *args, **kwargs) for fn's parameters is a TypeError
    at register naming both signatures; nothing is registered."""
    sup = Supervisor()
    with pytest.raises(
        TypeError,
        match=r"^'fallback' <lambda>\(.*\) cannot be called as fallback\(error, \*args,"
        r" \*\*kwargs\) for 'fn' _ask\(prompt, \*, temperature=0.0\): " + why + "$",
    ):
        sup.register("dep", _ask, fallback=fallback)
    assert () == sup.dependencies


def test_a_fallback_is_not_checked_when_fn_says_nothing_of_its_calls() -> None:
    """fn(*args, **kwargs) (a wrapper's signature) or an unreadable signature: no check."""
    sup = Supervisor()
    sup.register("variadic", Fake(), fallback=lambda error, prompt: "cached")
    sup.register("builtin", _ask, fallback=max)
    assert ("variadic", "builtin") == sup.dependencies
