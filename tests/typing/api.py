"""
Type-checked, never run: mypy proves the public API's types (stamina's and structlog's habit).

``register`` returns a handle whose call keeps the wrapped callable's parameters and return
type; misuse is rejected (each ``# type: ignore[...]`` line must stay an error, or mypy's
``warn_unused_ignores`` fails the check).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Generic, Literal, TypeVar, assert_type, overload

from policies import Breaker, Bulkhead, Retry, Timeout, backoff, break_duration
from supervisor import BreakerOpen, DependencyStatus, Supervisor


async def ask_llm(prompt: str, *, temperature: float = 0.0) -> str:
    return prompt


def lookup(key: int) -> bytes:
    return b""


async def cached_answer(error: Exception, prompt: str, *, temperature: float = 0.0) -> str:
    return prompt


def default_bytes(error: BaseException, key: int) -> bytes:
    return b""


def takes_anything(error: Exception, *args: object, **kwargs: object) -> bytes:
    return b""


def forgot_the_error(key: int) -> bytes:
    return b""


def wrong_result(error: Exception, key: int) -> str:
    return ""


def wrong_parameter(error: Exception, key: str) -> bytes:
    return b""


async def stream_llm(prompt: str, *, temperature: float = 0.0) -> AsyncIterator[str]:
    yield prompt


async def stream_ids(n: int) -> AsyncGenerator[int, None]:
    yield n


_T = TypeVar("_T")


class SDKStream(Generic[_T]):
    """An SDK's stream object (openai's AsyncStream): async iterable, not a generator."""

    def __aiter__(self) -> AsyncIterator[_T]:
        raise NotImplementedError


async def create_stream(prompt: str) -> SDKStream[bytes]:
    return SDKStream()


async def check_streams() -> None:
    supervisor = Supervisor()
    llm = supervisor.register(
        "llm", stream_llm, timeout=Timeout(first_item=5.0, between_items=10.0)
    )
    ids = supervisor.register("ids", stream_ids)
    sdk = supervisor.register("sdk", create_stream)
    plain = supervisor.register("plain", ask_llm)
    async with supervisor:
        # the items keep the stream's item type, whatever kind of async iterable it is
        async with llm.stream("hi", temperature=0.5) as tokens:
            assert_type(tokens, AsyncIterator[str])
            async for token in tokens:
                assert_type(token, str)
        async with ids.stream(3) as numbers:
            async for number in numbers:
                assert_type(number, int)
        async with sdk.stream("hi") as chunks:
            async for chunk in chunks:
                assert_type(chunk, bytes)
        async with supervisor.stream("llm", "hi") as anything:
            assert_type(anything, AsyncIterator[Any])
        llm.stream(42)  # type: ignore[arg-type]
        llm.stream("hi", temp=1.0)  # type: ignore[call-arg]
        # a dependency whose result is no async iterable cannot be streamed
        async with plain.stream("hi"):  # type: ignore[misc]
            pass
        # a stream is entered, not iterated directly
        async for _ in llm.stream("hi"):  # type: ignore[attr-defined]
            pass


async def check() -> None:
    supervisor = Supervisor()
    llm = supervisor.register(
        "llm",
        ask_llm,
        retry=Retry(attempts=4, backoff=backoff.exponential(base=0.2, factor=2.0, cap=10.0)),
        breaker=Breaker(
            failure_ratio=0.5,
            min_throughput=10,
            sampling=30.0,
            break_duration=break_duration.exponential(30.0, factor=1.5, cap=300.0),
        ),
        timeout=Timeout(attempt=10.0, total=30.0),
        bulkhead=Bulkhead(max_concurrent=8, max_queued=32),
        critical=True,
    )
    db = supervisor.register("db", lookup)
    async with supervisor:
        assert_type(await llm("hi"), str)
        assert_type(await llm("hi", temperature=0.5), str)
        assert_type(await db(1), bytes)
        await llm(42)  # type: ignore[arg-type]
        await llm("hi", temp=1.0)  # type: ignore[call-arg]
        await db("one")  # type: ignore[arg-type]
        assert_type(llm.status(), DependencyStatus)
        assert_type(supervisor.status("llm"), DependencyStatus)
        supervisor.register("x", 42)  # type: ignore[call-overload]
        supervisor.register("y", ask_llm, retry=3)  # type: ignore[call-overload]
        # fallback(error, *args, **kwargs): the error first, then fn's own parameters
        with_cache = supervisor.register("f1", ask_llm, fallback=cached_answer)
        assert_type(await with_cache("hi", temperature=0.5), str)
        assert_type(await supervisor.register("f2", lookup, fallback=default_bytes)(1), bytes)
        assert_type(await supervisor.register("f3", lookup, fallback=takes_anything)(1), bytes)
        supervisor.register("f4", lookup, fallback=forgot_the_error)  # type: ignore[arg-type]
        supervisor.register("f5", lookup, fallback=wrong_parameter)  # type: ignore[arg-type]
        supervisor.register("f6", ask_llm, fallback=lambda error: "cached")  # type: ignore[arg-type, misc]
        supervisor.register("f7", lookup, fallback=wrong_result)  # type: ignore[arg-type]
        # @supervisor.protect keeps parameters and return types, async and sync alike
        protected_async = supervisor.protect("p1")(ask_llm)
        assert_type(await protected_async("hi", temperature=0.5), str)
        protected_sync = supervisor.protect("p2")(lookup)
        assert_type(await protected_sync(1), bytes)
        await protected_sync("one")  # type: ignore[arg-type]
    error = BreakerOpen("llm", 1.0)
    assert_type(error.retry_after, float)


class Client:
    supervisor = Supervisor()

    @supervisor.protect()
    async def get(self, path: str) -> bytes:
        return b""


@overload
async def create(prompt: str, *, stream: Literal[False] = ...) -> str: ...
@overload
async def create(prompt: str, *, stream: Literal[True]) -> SDKStream[str]: ...
async def create(prompt: str, *, stream: bool = False) -> str | SDKStream[str]:
    return SDKStream() if stream else prompt


async def check_methods_and_overloads() -> None:
    # @supervisor.protect on a method binds self: the bound handle takes the rest
    assert_type(await Client().get("/a"), bytes)
    await Client().get(1)  # type: ignore[arg-type]
    assert_type(await Client.get(Client(), "/a"), bytes)
    # an overloaded SDK method: typed_as keeps every overload (openai's stream=True)
    supervisor = Supervisor()
    handle = supervisor.register("create", create)
    typed = handle.typed_as(create)
    assert_type(await typed("hi"), str)
    assert_type(await typed("hi", stream=True), SDKStream[str])
