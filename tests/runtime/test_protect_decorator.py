"""
``@supervisor.protect`` behaves like the function decorators users know (issue 21): on a
method it binds ``self``; the handle keeps the function's name, docstring and signature and
is a coroutine function to ``inspect`` and ``asyncio``; a supervisor left cleanly can be
entered again with fresh actors and the same handles.
"""

from __future__ import annotations

import asyncio
import inspect

import anyio
import pytest

from policies import Breaker, Retry, backoff
from supervisor import Supervisor

from .conftest import Fake, guard

pytestmark = pytest.mark.anyio


async def test_protect_on_a_method_binds_self(sup: Supervisor) -> None:
    """`Client(...).get("/a")` calls the method with its own instance, through the policies."""

    class Client:
        def __init__(self, base: str) -> None:
            self.base = base

        @sup.protect(retry=Retry(attempts=2, backoff=backoff.constant(0.0)))
        async def get(self, path: str) -> str:
            """Fetch *path*."""
            return self.base + path

    one, two = Client("https://one"), Client("https://two")
    with guard():
        async with sup:
            assert "https://one/a" == await one.get("/a")
            assert "https://two/b" == await two.get(path="/b")
            # through the class, self is passed by hand, as for a function
            assert "https://one/c" == await Client.get(one, "/c")
    assert [Client.get.__qualname__] == list(sup.dependencies)
    assert 3 == sup.status(Client.get.__qualname__).calls


async def test_a_sync_method_runs_bound_in_a_worker_thread(sup: Supervisor, is_trio: bool) -> None:
    """A sync method under @protect also gets its self (and runs in a worker thread)."""
    if is_trio:
        pytest.skip("a worker thread under trio's autojumping clock (STYLE.md)")

    class Store:
        def __init__(self) -> None:
            self.items = {"k": 1}

        @sup.protect("store")
        def lookup(self, key: str) -> int:
            return self.items[key]

    with guard():
        async with sup:
            assert 1 == await Store().lookup("k")


async def test_the_handle_looks_like_the_function(sup: Supervisor) -> None:
    """__name__, __qualname__, __doc__, __wrapped__, the signature, and a coroutine function."""

    @sup.protect()
    async def ask(prompt: str, *, temperature: float = 0.0) -> str:
        """Ask the model."""
        return prompt

    @sup.protect("sync")
    def lookup(key: int) -> bytes:
        return b""

    assert ("ask", "Ask the model.") == (ask.__name__, ask.__doc__)
    assert ask.__qualname__.endswith("<locals>.ask")
    assert ask.__wrapped__ is inspect.unwrap(ask)
    assert "(prompt: 'str', *, temperature: 'float' = 0.0) -> 'str'" == str(inspect.signature(ask))
    # a sync function's handle is awaited too: it is a coroutine function
    for handle in (ask, lookup):
        assert inspect.iscoroutinefunction(handle)
        assert asyncio.iscoroutinefunction(handle)
    assert not inspect.iscoroutinefunction(lambda: None)  # the check can say no


async def test_a_bound_handle_is_a_coroutine_function_with_the_methods_signature(
    sup: Supervisor,
) -> None:
    """Frameworks inspecting `instance.method` see an async callable without `self`."""

    class Client:
        @sup.protect()
        async def get(self, path: str) -> str:
            return path

    bound = Client().get
    assert inspect.iscoroutinefunction(bound)
    assert "(path: 'str') -> 'str'" == str(inspect.signature(bound))


async def test_a_registered_handle_does_not_bind(sup: Supervisor) -> None:
    """register()'s handle kept on a class is not a method: it is called as it is."""
    fake = Fake("ok")

    class Service:
        llm = sup.register("llm", fake)

    with guard():
        async with sup:
            assert "ok" == await Service().llm("x")
    assert [(("x",), {})] == fake.calls
    assert "llm" == Service.llm.__name__  # a Fake has no name of its own: the dependency's


async def test_a_stream_handle_is_no_coroutine_function(sup: Supervisor) -> None:
    """An async generator function's handle is streamed, not awaited: inspect says so."""

    async def tokens(n: int):  # type: ignore[no-untyped-def]
        yield n

    handle = sup.register("tokens", tokens)
    assert not inspect.iscoroutinefunction(handle)


async def test_typed_as_accepts_only_the_registered_function(sup: Supervisor) -> None:
    """typed_as(fn) returns the handle itself, and refuses another function."""

    async def create(prompt: str) -> str:
        return prompt

    handle = sup.register("create", create)
    assert handle is handle.typed_as(create)
    with pytest.raises(TypeError, match=r"'create' was registered with another function"):
        handle.typed_as(Fake())


async def test_a_supervisor_is_entered_again_with_fresh_actors(sup: Supervisor) -> None:
    """Left cleanly, it is entered again: the same handles call fresh actors, counters at zero."""
    fake = Fake(ConnectionError("down"))
    handle = sup.register(
        "dep", fake, breaker=Breaker(failure_ratio=0.5, min_throughput=1, sampling=30.0)
    )
    with guard():
        async with sup:
            with pytest.raises(ConnectionError):
                await handle()
            assert "open" == sup.status("dep").state
        assert (1, "open") == (sup.status("dep").calls, sup.status("dep").state)
        async with sup:
            assert "closed" == sup.status("dep").state
            assert "ok" == await handle()
            assert "ok" == await sup.call("dep")
            with pytest.raises(RuntimeError, match="running already"):
                async with sup:
                    pass
    assert (2, 0) == (sup.status("dep").calls, sup.status("dep").failures)


async def test_registered_after_leaving_starts_at_the_next_entry(sup: Supervisor) -> None:
    """A dependency registered between two runs is called in the second."""
    with guard():
        async with sup:
            pass
        late = sup.register("late", Fake("late"))
        async with sup:
            assert "late" == await late()


async def test_events_of_the_second_run_reach_a_new_subscriber(sup: Supervisor) -> None:
    """The second run publishes on a fresh event hub (the first one's streams ended)."""
    handle = sup.register(
        "dep", Fake(ConnectionError(), "ok"), retry=Retry(attempts=2, backoff=backoff.constant(0))
    )
    with guard():
        async with sup:
            pass
        async with sup:
            stream = sup.events(["retry_scheduled"])
            assert "ok" == await handle()
            with anyio.fail_after(5):
                event = await anext(aiter(stream))
            await stream.aclose()
    assert ("dep", 1) == (event.dependency, event.attempt)  # type: ignore[attr-defined]
