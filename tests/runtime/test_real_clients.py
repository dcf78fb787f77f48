"""Real clients' errors at runtime: pauses, fallback_on, classifiers, budgets, protect,
configuration and reconfiguration (issues #9 and #10)."""

from __future__ import annotations

import anyio
import httpx
import pytest

from policies import Breaker, Bulkhead, Classifier, ErrorKind, Retry, Timeout, backoff
from supervisor import (
    CallRejected,
    DependencyPaused,
    RateLimited,
    RetryBudgetExhausted,
    Supervisor,
)

from ._virtual_loop import on_virtual_time
from .conftest import Fake, guard

pytestmark = pytest.mark.anyio


def http_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    """A real httpx error, as `response.raise_for_status()` raises it."""
    request = httpx.Request("POST", "https://api.example.invalid/v1/complete")
    response = httpx.Response(status, headers=headers or {}, request=request)
    return httpx.HTTPStatusError(f"status {status}", request=request, response=response)


@on_virtual_time()  # the pause left is exact: no stall of the machine spends it
async def test_a_429_with_retry_after_pauses_the_dependency_for_every_caller(
    sup: Supervisor,
) -> None:
    """One 429 with `Retry-After: 20` pauses admissions; a caller whose deadline allows it
    waits for the pause (20 s of virtual time), and the server sees nothing meanwhile."""
    pause = 20.0
    fake = Fake(http_error(429, {"Retry-After": "20"}))
    sup.register("llm", fake, retry=Retry(attempts=1), timeout=Timeout(total=60.0))
    events = sup.events(kinds=[DependencyPaused, CallRejected])
    with guard(120):
        async with sup:
            with pytest.raises(httpx.HTTPStatusError):
                await sup.call("llm", "first")
            paused = sup.status("llm")
            assert paused.paused_until is not None
            assert pause == pytest.approx(paused.pause_remaining, abs=1e-9)  # none spent yet
            start = anyio.current_time()
            assert "ok" == await sup.call("llm", "second")  # waited for the pause
            waited = anyio.current_time() - start
            after = sup.status("llm")
    assert 2 == fake.count  # nothing reached the server during the pause
    assert after.paused_until is None
    assert pause == pytest.approx(waited, abs=1e-6)
    got = [event async for event in events]
    assert [DependencyPaused] == [type(e) for e in got]
    assert pause == got[0].retry_after  # type: ignore[attr-defined]


async def test_a_pause_past_the_deadline_is_rate_limited_at_once_and_goes_to_the_fallback(
    sup: Supervisor,
) -> None:
    """RateLimited is never retried, counts as a 'paused' rejection and may be answered."""
    fake = Fake(http_error(429, {"retry-after-ms": "30000"}))
    sup.register(
        "llm",
        fake,
        retry=Retry(attempts=3, backoff=backoff.constant(0.0)),
        timeout=Timeout(total=5.0),
        fallback=lambda error, prompt: f"cached ({type(error).__name__})",
    )
    with guard():
        async with sup:
            # The 429's own retry would wait 30 s, past the deadline: DeadlineExceeded answered.
            assert "cached (DeadlineExceeded)" == await sup.call("llm", "a")
            assert "cached (RateLimited)" == await sup.call("llm", "b")
            status = sup.status("llm")
    assert 1 == fake.count
    assert {"paused": 1} == dict(status.rejected_by)
    assert 1 == status.rejected
    assert 0 == status.failures  # a 429 is the limiter's business, not a sick dependency


async def test_rate_limited_without_a_fallback_raises_with_the_wait(sup: Supervisor) -> None:
    """A caller with a short deadline learns how long the pause still lasts."""
    sup.register("llm", Fake(http_error(429, {"Retry-After": "10"})), timeout=Timeout(total=1.0))
    with guard():
        async with sup:
            with pytest.raises(httpx.HTTPStatusError):
                await sup.call("llm")
            with pytest.raises(RateLimited, match=r"^'llm' is rate limited: retry after") as info:
                await sup.call("llm")
    assert info.value.retry_after == pytest.approx(10.0, abs=0.5)


async def test_the_fallback_does_not_mask_a_callers_mistake(sup: Supervisor) -> None:
    """By default a 400 or a 401 surfaces; a 503 is answered by the fallback."""
    fake = Fake(http_error(400), http_error(401), http_error(503))
    sup.register("llm", fake, retry=Retry(attempts=1), fallback=lambda error: "cached")
    with guard():
        async with sup:
            with pytest.raises(httpx.HTTPStatusError, match="400"):
                await sup.call("llm")
            with pytest.raises(httpx.HTTPStatusError, match="401"):
                await sup.call("llm")
            assert "cached" == await sup.call("llm")
            status = sup.status("llm")
    assert (3, 1) == (status.calls, status.failures)  # only the 503 counts against it


async def test_a_raising_classifier_rule_leaves_the_calls_error_and_the_actor_working(
    sup: Supervisor,
) -> None:
    """The call's own error propagates with the rule's error chained; the next call works."""

    def broken_rule(exc: BaseException) -> bool:
        raise LookupError("rule bug")

    fake = Fake(ConnectionError("down"), "ok")
    sup.register(
        "dep",
        fake,
        retry=Retry(attempts=1),
        classifier=Classifier(rules=[(broken_rule, ErrorKind.TRANSIENT)]),
    )
    with guard():
        async with sup:
            with pytest.raises(ConnectionError) as info:
                await sup.call("dep")
            assert "ok" == await sup.call("dep")
    assert isinstance(info.value.__context__, LookupError)


async def test_a_retry_over_budget_is_not_made_and_says_so(sup: Supervisor) -> None:
    """With the budget spent, the error goes to the caller at once and an event says why."""
    from policies import Budget

    fake = Fake(*[ConnectionError("x")] * 10)
    sup.register(
        "dep",
        fake,
        retry=Retry(
            attempts=5,
            backoff=backoff.constant(0.0),
            budget=Budget(ratio=0.0, min_per_second=0.1, window=10.0),  # one retry in 10 s
        ),
    )
    events = sup.events(kinds=[RetryBudgetExhausted])
    with guard():
        async with sup:
            with pytest.raises(ConnectionError):
                await sup.call("dep")  # 1 retry allowed, then the budget is spent
            status = sup.status("dep")
    assert 2 == fake.count
    assert 1 == status.retries
    got = [e async for e in events]
    assert [(2, "ConnectionError")] == [(e.attempt, e.error) for e in got]  # type: ignore[attr-defined]


async def test_protect_registers_the_function_under_its_qualname(
    sup: Supervisor, is_trio: bool
) -> None:
    """@supervisor.protect() returns the typed handle; the name defaults to __qualname__."""

    @sup.protect(retry=Retry(attempts=2, backoff=backoff.constant(0.0)))
    async def ask(prompt: str) -> str:
        return prompt.upper()

    @sup.protect("named")
    def lookup(key: str) -> int:
        return len(key)

    assert ask.name.endswith("ask")
    assert ("named", ask.name) == (sup.dependencies[1], sup.dependencies[0])
    with guard():
        async with sup:
            assert "HI" == await ask("hi")
            if not is_trio:  # a worker thread under trio's autojumping clock: see STYLE.md
                assert 3 == await lookup("abc")


async def test_from_config_supplies_policies_and_explicit_arguments_win() -> None:
    """register() takes the configured policies; what it is given wins, None included."""
    sup = Supervisor.from_config(
        {
            "defaults": {"timeout": {"total": 9.0}},
            "dependencies": {
                "llm": {"retry": {"attempts": 4}, "bulkhead": {"max_concurrent": 2}},
            },
        },
        env={"RINGFENCE_LLM__RETRY__ATTEMPTS": "5"},
    )
    llm = sup.register("llm", Fake())
    db = sup.register("db", Fake(), timeout=None)
    with guard():
        async with sup:
            assert "ok" == await llm()
            assert "ok" == await db()
    llm_actor, db_actor = sup._actors["llm"], sup._actors["db"]
    assert llm_actor.retry is not None
    assert (5, 2, 9.0) == (llm_actor.retry.attempts, llm_actor._max_concurrent, llm_actor.total)
    assert db_actor.total is None


async def test_reconfigure_swaps_policies_and_keeps_the_counters(sup: Supervisor) -> None:
    """An acknowledged control message: the next call uses the new policies; counts stay."""
    fake = Fake(ConnectionError("a"), ConnectionError("b"), "ok")
    sup.register(
        "dep", fake, breaker=Breaker(failure_threshold=5), bulkhead=Bulkhead(max_concurrent=1)
    )
    with guard():
        async with sup:
            with pytest.raises(ConnectionError):
                await sup.call("dep")
            await sup.reconfigure(
                "dep", retry=Retry(attempts=3, backoff=backoff.constant(0.0)), bulkhead=None
            )
            assert "ok" == await sup.call("dep")  # retried once, under the new policy
            status = sup.status("dep")
            with pytest.raises(TypeError, match=r"^'retry' must be a policies.Retry or None"):
                await sup.reconfigure("dep", retry=3)  # type: ignore[arg-type]
    assert (3, 2, 1) == (status.calls, status.failures, status.retries)
