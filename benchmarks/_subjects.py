"""
The subjects: ringfence configurations, the peers, and two lock-based reference designs.

Every subject is an async context manager factory yielding ``call(i) -> awaitable``; peers
that cannot run on the current backend raise, and the harness reports them as such.
Configurations match as closely as each library allows: breakers that never trip on the
success path (5 consecutive failures, 30 s recovery), stacks of retry (3 attempts, no wait),
breaker, a 10 s attempt timeout, a bulkhead and a fallback.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import anyio.lowlevel

from policies import Breaker, Bulkhead, RateLimit, Retry, Timeout, backoff
from supervisor import Supervisor

Call = Callable[[int], Awaitable[object]]
Factory = Callable[[], AbstractAsyncContextManager[Call]]

BIG = 1_000_000  # bulkhead limits that never bind on the success path


async def dep(x: int) -> int:
    """The protected call: returns at once (overhead, rejection)."""
    return x


async def dep_yield(x: int) -> int:
    """The protected call for the contention question: one trip through the scheduler."""
    await anyio.lowlevel.checkpoint()
    return x


def fallback(error: BaseException, x: int) -> int:
    return -1


@asynccontextmanager
async def bare(fn: Call = dep) -> AsyncIterator[Call]:
    yield fn


@asynccontextmanager
async def ringfence_breaker_bulkhead(
    fn: Call = dep, max_concurrent: int = BIG, max_queued: int = 0
) -> AsyncIterator[Call]:
    supervisor = Supervisor()
    handle = supervisor.register(
        "dep",
        fn,
        breaker=Breaker(failure_threshold=5, break_duration=30.0),
        bulkhead=Bulkhead(max_concurrent=max_concurrent, max_queued=max_queued),
    )
    async with supervisor:
        yield handle


@asynccontextmanager
async def ringfence_observed(fn: Call = dep) -> AsyncIterator[Call]:
    """Breaker + bulkhead with an events subscriber (never reading) and a Prometheus
    collector registered: what being watched costs a successful call (nothing is published
    per success; metrics are read at scrape time)."""
    from prometheus_client import CollectorRegistry

    from supervisor.integrations.prometheus import collector

    async with ringfence_breaker_bulkhead(fn) as handle:
        supervisor = handle._supervisor  # type: ignore[attr-defined]
        CollectorRegistry().register(collector(supervisor))
        async with supervisor.events():
            yield handle


ITEMS = 100  # items per stream in the streaming rows


async def _items(x: int) -> AsyncIterator[int]:
    for i in range(ITEMS):
        yield i


@asynccontextmanager
async def bare_stream(fn: Call = dep) -> AsyncIterator[Call]:
    """One "call" = iterating a 100-item async generator to its end, unprotected."""

    async def call(x: int) -> int:
        total = 0
        async for item in _items(x):
            total += item
        return total

    yield call


@asynccontextmanager
async def ringfence_stream(fn: Call = dep) -> AsyncIterator[Call]:
    """One "call" = a 100-item stream through supervisor.stream with breaker + bulkhead and
    Timeout(first_item, between_items): a cancel scope per item."""
    supervisor = Supervisor()
    supervisor.register(
        "gen",
        _items,
        breaker=Breaker(failure_threshold=5, break_duration=30.0),
        bulkhead=Bulkhead(max_concurrent=BIG, max_queued=0),
        timeout=Timeout(first_item=10.0, between_items=10.0),
    )

    async def call(x: int) -> int:
        total = 0
        async with supervisor.stream("gen", x) as items:
            async for item in items:
                total += item
        return total

    async with supervisor:
        yield call


@asynccontextmanager
async def ringfence_rate_limited(fn: Call = dep, limits: int = 1) -> AsyncIterator[Call]:
    """Breaker + bulkhead + one limit (requests) or two (requests and tokens, priced by a
    cost function), never waiting: what taking a turn costs on the success path."""
    rate_limits = [RateLimit(1e12, per=1.0)]
    if limits == 2:
        rate_limits.append(RateLimit(1e15, per=1.0, cost=lambda x: 100.0))
    supervisor = Supervisor()
    handle = supervisor.register(
        "dep",
        fn,
        breaker=Breaker(failure_threshold=5, break_duration=30.0),
        bulkhead=Bulkhead(max_concurrent=BIG, max_queued=0),
        rate_limit=rate_limits,
    )
    async with supervisor:
        yield handle


@asynccontextmanager
async def ringfence_two_limits(fn: Call = dep) -> AsyncIterator[Call]:
    async with ringfence_rate_limited(fn, limits=2) as handle:
        yield handle


@asynccontextmanager
async def ringfence_full(fn: Call = dep) -> AsyncIterator[Call]:
    supervisor = Supervisor()
    handle = supervisor.register(
        "dep",
        fn,
        retry=Retry(attempts=3, backoff=backoff.constant(0.0)),
        breaker=Breaker(failure_threshold=5, break_duration=30.0),
        timeout=Timeout(attempt=10.0),
        bulkhead=Bulkhead(max_concurrent=BIG, max_queued=0),
        fallback=fallback,
    )
    async with supervisor:
        yield handle


@asynccontextmanager
async def circuitbreaker_(fn: Call = dep) -> AsyncIterator[Call]:
    from circuitbreaker import CircuitBreaker

    yield CircuitBreaker(failure_threshold=5, recovery_timeout=30)(fn)


@asynccontextmanager
async def aiobreaker_(fn: Call = dep) -> AsyncIterator[Call]:
    from aiobreaker import CircuitBreaker

    breaker = CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))

    async def call(x: int) -> object:
        return await breaker.call_async(fn, x)

    yield call


@asynccontextmanager
async def purgatory_(fn: Call = dep) -> AsyncIterator[Call]:
    from purgatory import AsyncCircuitBreakerFactory

    factory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    yield factory(circuit="dep")(fn)


@asynccontextmanager
async def hyx_breaker(fn: Call = dep) -> AsyncIterator[Call]:
    from hyx.circuitbreaker import consecutive_breaker

    yield consecutive_breaker(failure_threshold=5, recovery_time_secs=30)(fn)


@asynccontextmanager
async def hyx_stack(fn: Call = dep) -> AsyncIterator[Call]:
    from hyx.bulkhead import bulkhead
    from hyx.circuitbreaker import consecutive_breaker
    from hyx.fallback import fallback as hyx_fallback
    from hyx.retry import retry
    from hyx.timeout import timeout

    async def handler(*args: Any, **kwargs: Any) -> int:
        return -1

    wrapped = consecutive_breaker(failure_threshold=5, recovery_time_secs=30)(fn)
    wrapped = bulkhead(max_concurrency=BIG, max_capacity=BIG)(wrapped)
    wrapped = timeout(10.0)(wrapped)
    wrapped = retry(attempts=3, backoff=0.0)(wrapped)
    yield hyx_fallback(handler)(wrapped)


@asynccontextmanager
async def tenacity_(fn: Call = dep) -> AsyncIterator[Call]:
    from tenacity import retry, stop_after_attempt, wait_none

    yield retry(stop=stop_after_attempt(3), wait=wait_none())(fn)


@asynccontextmanager
async def stamina_(fn: Call = dep) -> AsyncIterator[Call]:
    import stamina

    yield stamina.retry(on=Exception, attempts=3, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0)(
        fn
    )


@asynccontextmanager
async def pyresilience_(fn: Call = dep) -> AsyncIterator[Call]:
    from pyresilience import (
        BulkheadConfig,
        CircuitBreakerConfig,
        FallbackConfig,
        RetryConfig,
        TimeoutConfig,
        resilient,
    )

    yield resilient(
        retry=RetryConfig(max_attempts=3, delay=0.0, jitter=False),
        timeout=TimeoutConfig(seconds=10.0),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=5, recovery_timeout=30.0),
        bulkhead=BulkheadConfig(max_concurrent=BIG),
        fallback=FallbackConfig(handler=-1),
    )(fn)


# -- reference designs for the contention question ------------------------------------------


class _LockedBreaker:
    """A consecutive-failure breaker whose state is guarded by a lock around every access."""

    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0


@asynccontextmanager
async def async_lock_breaker(fn: Call = dep) -> AsyncIterator[Call]:
    """A breaker guarded by the backend's Lock (asyncio.Lock on asyncio, trio.Lock on trio)."""
    lock = anyio.Lock(fast_acquire=True) if _fast_lock_supported() else anyio.Lock()
    state = _LockedBreaker()

    async def call(x: int) -> object:
        async with lock:
            if state.failures >= 5 and anyio.current_time() < state.open_until:
                raise RuntimeError("open")
        try:
            result = await fn(x)
        except Exception:
            async with lock:
                state.failures += 1
            raise
        async with lock:
            state.failures = 0
        return result

    yield call


def _fast_lock_supported() -> bool:
    import inspect

    return "fast_acquire" in inspect.signature(anyio.Lock).parameters


@asynccontextmanager
async def thread_lock_breaker(fn: Call = dep) -> AsyncIterator[Call]:
    """A breaker guarded by threading.Lock, each call made from a worker thread via anyio."""
    lock = threading.Lock()
    state = _LockedBreaker()

    def guarded(x: int) -> int:
        with lock:
            if state.failures >= 5:
                raise RuntimeError("open")
        result = x  # the sync dependency
        with lock:
            state.failures = 0
        return result

    async def call(x: int) -> object:
        return await anyio.to_thread.run_sync(guarded, x)

    yield call


@asynccontextmanager
async def native_cancel_scope(fn: Call = dep) -> AsyncIterator[Call]:
    """
    A bare await made cancellable from outside by the backend's own means, with nothing
    else: ``trio.CancelScope()`` on trio (what ringfence enters once per attempt there),
    ``asyncio.timeout(None)`` on asyncio (ringfence uses neither on asyncio: it cancels
    the task from its timer heap). What any library that can cut a call off pays at least.
    """
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        async def call(x: int) -> object:
            with trio.CancelScope():
                return await fn(x)

    else:
        import asyncio

        async def call(x: int) -> object:
            async with asyncio.timeout(None):
                return await fn(x)

    yield call


OVERHEAD_SUBJECTS: dict[str, Callable[..., AbstractAsyncContextManager[Call]]] = {
    "bare await": bare,
    "reference: bare await in the backend's cancel scope": native_cancel_scope,
    "ringfence breaker+bulkhead": ringfence_breaker_bulkhead,
    "ringfence full stack": ringfence_full,
    "ringfence breaker+bulkhead, watched (events subscriber + Prometheus)": ringfence_observed,
    "ringfence breaker+bulkhead+1 rate limit": ringfence_rate_limited,
    "ringfence breaker+bulkhead+2 rate limits": ringfence_two_limits,
    f"stream of {ITEMS} items: bare async for": bare_stream,
    f"stream of {ITEMS} items: ringfence stream, item timeouts": ringfence_stream,
    "circuitbreaker": circuitbreaker_,
    "aiobreaker": aiobreaker_,
    "purgatory": purgatory_,
    "hyx breaker": hyx_breaker,
    "hyx stack": hyx_stack,
    "tenacity": tenacity_,
    "stamina": stamina_,
    "pyresilience stack": pyresilience_,
}
BREAKERS = ("circuitbreaker", "aiobreaker", "purgatory", "hyx breaker")
STACKS = ("hyx stack", "pyresilience stack", "tenacity", "stamina")
