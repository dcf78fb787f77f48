"""
Rate and token limits at admission (issue #10): the order pause/breaker -> limits -> bulkhead,
waits that hold no slot and respect the deadline, all-or-none turns across several limits,
refunds when a call never goes, settling with the real usage, and bad costs.

Both backends run on virtual time (trio's MockClock, asyncio on ``VirtualClockLoop``), so a
limit of 10 per 10 s is tested in milliseconds and the times asserted are exact. On the real
clock a stall of the process (a noisy CI machine) let a turn fall due early or late and
reorder what these tests pin down (a 90 ms stall put a later small call before an earlier
large one in CI); real asyncio scheduling is exercised by the rest of tests/runtime.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Any

import anyio
import httpx
import pytest

from policies import Breaker, Bulkhead, RateLimit, Retry, Timeout, backoff
from supervisor import BreakerOpen, BulkheadFull, RateLimited, Supervisor, SupervisorClosed

from ._virtual_loop import anyio_backend as anyio_backend
from ._virtual_loop import wait_idle
from .conftest import Fake, Gate, guard

pytestmark = pytest.mark.anyio


def http_error(status: int, headers: dict[str, str]) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://api.example.invalid/v1/complete")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(f"status {status}", request=request, response=response)


#: The limits' `per`: 10 s of virtual time.
PER = 10.0


async def test_calls_within_the_burst_go_at_once_and_the_next_is_rate_limited(
    sup: Supervisor,
) -> None:
    """A full bucket lets `burst` calls through; with max_wait=0 the next one is refused with
    RateLimited saying how long until a turn, without reaching the dependency; it counts as
    a rejection (reason rate_limited) and is never retried."""
    fake = Fake()
    per = PER
    sup.register(
        "llm",
        fake,
        rate_limit=RateLimit(3, per=per),
        retry=Retry(attempts=3, backoff=backoff.constant(0.0)),
    )
    with guard():
        async with sup:
            for _ in range(3):
                assert "ok" == await sup.call("llm")
            with pytest.raises(RateLimited) as caught:
                await sup.call("llm")
            status = sup.status("llm")
    assert 3 == fake.count
    assert "llm" == caught.value.dependency
    assert 0 < caught.value.retry_after <= per / 3 + 1e-9
    assert {"rate_limited": 1} == status.rejected_by
    assert 0 == status.retries
    assert 1 == len(status.rate_limit)


async def test_a_call_waits_for_its_turn_within_max_wait_holding_no_slot(sup: Supervisor) -> None:
    """With max_wait, a call past the burst waits for its turn; while it waits it holds no
    bulkhead slot (another call runs in the only slot meanwhile) and no queue place."""
    per = PER
    gate = Gate()
    fake = Fake("first", gate)
    sup.register(
        "llm",
        fake,
        rate_limit=RateLimit(1, per=per, max_wait=math.inf),
        bulkhead=Bulkhead(max_concurrent=1, max_queued=0),
    )
    other = Fake()
    sup.register("other", other)
    with guard():
        async with sup, anyio.create_task_group() as tg:
            assert "first" == await sup.call("llm")  # the bucket is now empty
            results: list[object] = []

            async def waiter() -> None:
                results.append(await sup.call("llm"))

            tg.start_soon(waiter)
            await wait_idle()
            waiting = sup.status("llm")
            assert (0, 0) == (waiting.in_flight, waiting.queued)  # no slot, no queue place
            await fake.entered.wait()
            gate.open()
    assert ["ok"] == results
    assert 2 == fake.count
    assert per == pytest.approx(fake.times[1] - fake.times[0], abs=1e-6)


async def test_a_wait_past_the_total_deadline_is_rate_limited_at_once_and_goes_to_the_fallback(
    sup: Supervisor,
) -> None:
    """The wait for a turn respects the total deadline: a turn due after it is refused at
    once (RateLimited, fallback-eligible), and the turn is not taken."""
    per = PER
    fake = Fake()
    sup.register(
        "llm",
        fake,
        rate_limit=RateLimit(1, per=per, max_wait=math.inf),
        timeout=Timeout(total=per / 2),
        fallback=lambda error, *args: type(error).__name__,
    )
    with guard():
        async with sup:
            assert "ok" == await sup.call("llm")
            before = sup.status("llm").rate_limit
            assert "RateLimited" == await sup.call("llm")
            after = sup.status("llm")
    assert 1 == fake.count
    assert 1 == after.fallbacks
    assert after.rate_limit[0] >= before[0]  # nothing was taken by the refused call


async def test_admission_order_breaker_before_limits_takes_no_turn(sup: Supervisor) -> None:
    """An open breaker refuses before the limits are asked: no turn is spent on a call that
    cannot go."""
    fake = Fake(ConnectionError("down"))
    sup.register(
        "llm",
        fake,
        breaker=Breaker(failure_threshold=1, break_duration=60.0),
        rate_limit=RateLimit(5, per=60.0),
    )
    with guard():
        async with sup:
            with pytest.raises(ConnectionError):
                await sup.call("llm")
            left = sup.status("llm").rate_limit[0]
            for _ in range(3):
                with pytest.raises(BreakerOpen):
                    await sup.call("llm")
            assert left == pytest.approx(sup.status("llm").rate_limit[0], abs=1e-3)


@pytest.mark.parametrize("limits", [1, 2], ids=["one-limit", "two-limits"])
async def test_admission_order_limits_before_bulkhead_refunds_a_refused_call(
    sup: Supervisor, limits: int
) -> None:
    """A call that takes its turn and is then refused by the bulkhead never went: its turn
    goes back to the limit (to each limit)."""
    gate = Gate()
    fake = Fake(gate)
    sup.register(
        "llm",
        fake,
        rate_limit=[RateLimit(10, per=3600.0), RateLimit(1000, per=3600.0)][:limits],
        bulkhead=Bulkhead(max_concurrent=1, max_queued=0),
    )
    with guard():
        async with sup, anyio.create_task_group() as tg:
            tg.start_soon(sup.call, "llm")
            await fake.entered.wait()
            left = sup.status("llm").rate_limit
            with pytest.raises(BulkheadFull):
                await sup.call("llm")
            assert left == pytest.approx(sup.status("llm").rate_limit, abs=1e-3)
            gate.open()
    assert 1 == fake.count


async def test_a_call_cancelled_while_waiting_for_its_turn_gives_it_back(sup: Supervisor) -> None:
    """A caller cancelled while it waits for a turn never went: the turn is refunded, so the
    next caller does not wait for it."""
    per = PER
    fake = Fake()
    sup.register("llm", fake, rate_limit=RateLimit(1, per=per, max_wait=math.inf))
    with guard():
        async with sup:
            await sup.call("llm")
            empty = sup.status("llm").rate_limit[0]
            with anyio.move_on_after(per / 4):
                await sup.call("llm")  # waits for a turn due in `per`: cancelled first
            refilled = sup.status("llm").rate_limit[0]
    assert 1 == fake.count
    # a quarter of a period refilled a quarter of a unit; the cancelled turn did not stay
    assert refilled == pytest.approx(empty + 0.25, abs=0.2)
    assert refilled > 0.0


async def test_several_limits_take_a_turn_in_each_or_in_none(sup: Supervisor) -> None:
    """Requests per minute and tokens per minute together: a call the token limit refuses
    takes nothing from the request limit."""
    fake = Fake()
    sup.register(
        "llm",
        fake,
        rate_limit=[
            RateLimit(100, per=60.0),
            RateLimit(1000, per=60.0, cost=lambda prompt: len(prompt)),
        ],
    )
    with guard():
        async with sup:
            await sup.call("llm", "x" * 900)
            requests, tokens = sup.status("llm").rate_limit
            with pytest.raises(RateLimited):
                await sup.call("llm", "x" * 500)  # 500 tokens > the 100 left
            assert (requests, tokens) == pytest.approx(sup.status("llm").rate_limit, abs=0.1)
            await sup.call("llm", "x" * 50)
    assert 2 == fake.count
    assert 99 - 1 == pytest.approx(requests - 1, abs=0.1)


async def test_a_cost_above_the_burst_is_a_value_error_at_once(sup: Supervisor) -> None:
    """A call that could never be admitted is a clear ValueError at once (not a wait
    forever, not a RateLimited the fallback would hide)."""
    fake = Fake()
    sup.register(
        "llm",
        fake,
        rate_limit=RateLimit(1000, per=60.0, max_wait=math.inf, cost=len),
        fallback=lambda error, prompt: "cached",
    )
    with guard():
        async with sup:
            with pytest.raises(ValueError, match=r"costs 5000 units, more than rate_limit\[0\]"):
                await sup.call("llm", "x" * 5000)
    assert 0 == fake.count


@pytest.mark.parametrize(
    ("cost", "error", "message"),
    [
        (lambda prompt: -1, ValueError, r"rate_limit\[0\]\.cost of 'llm'.*>= 0"),
        (lambda prompt: math.nan, ValueError, r"rate_limit\[0\]\.cost of 'llm'"),
        (lambda prompt: "12", TypeError, r"rate_limit\[0\]\.cost of 'llm'.*str"),
        (lambda prompt: True, TypeError, r"rate_limit\[0\]\.cost of 'llm'"),
    ],
    ids=["negative", "nan", "str", "bool"],
)
async def test_a_bad_cost_is_a_clear_error_naming_the_limit(
    sup: Supervisor, cost: Any, error: type[Exception], message: str
) -> None:
    fake = Fake()
    sup.register("llm", fake, rate_limit=RateLimit(10, per=1.0, cost=cost))
    with guard():
        async with sup:
            with pytest.raises(error, match=message):
                await sup.call("llm", "prompt")
            status = sup.status("llm")
    assert 0 == fake.count
    assert (0, 0) == (status.calls, status.rejected)


async def test_a_cost_function_that_raises_raises_its_own_error_and_releases_the_probe(
    sup: Supervisor,
) -> None:
    """The cost function's own exception reaches the caller; in half-open, the probe permit
    it was admitted with goes back (the next call can probe)."""

    def cost(prompt: str) -> float:
        if prompt == "bad":
            raise KeyError(prompt)
        return 1.0

    fake = Fake(ConnectionError("down"))
    sup.register(
        "llm",
        fake,
        breaker=Breaker(failure_threshold=1, break_duration=0.0, half_open_probes=1),
        rate_limit=RateLimit(10, per=1.0, cost=cost),
    )
    with guard():
        async with sup:
            with pytest.raises(ConnectionError):
                await sup.call("llm", "good")
            with pytest.raises(KeyError):
                await sup.call("llm", "bad")  # admitted as the probe, then the cost raised
            assert "ok" == await sup.call("llm", "good")  # the permit came back
    assert 2 == fake.count


async def test_settle_charges_the_real_usage(sup: Supervisor) -> None:
    """`settle(result)` trues the estimate up: a call estimated at 10 tokens that used 400
    leaves 400 taken, not 10."""
    fake = Fake({"usage": 400})
    sup.register(
        "llm",
        fake,
        rate_limit=RateLimit(
            1000, per=3600.0, cost=lambda prompt: 10, settle=lambda result: result["usage"]
        ),
    )
    with guard():
        async with sup:
            assert {"usage": 400} == await sup.call("llm", "hello")
            left = sup.status("llm").rate_limit[0]
    assert 600 == pytest.approx(left, abs=0.5)


async def test_a_settle_that_raises_keeps_the_result_and_the_estimate(
    sup: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    """The call's result is never lost to a bad settle function: the estimate stands and a
    log line says which limit's settle raised (not the result)."""
    fake = Fake("secret answer")
    sup.register(
        "llm",
        fake,
        rate_limit=RateLimit(
            1000, per=3600.0, cost=lambda prompt: 10, settle=lambda result: result["usage"]
        ),
    )
    with guard():
        async with sup:
            assert "secret answer" == await sup.call("llm", "hello")
            left = sup.status("llm").rate_limit[0]
    assert 990 == pytest.approx(left, abs=0.5)
    assert "rate_limit[0].settle of 'llm' raised TypeError" in caplog.text
    assert "secret" not in caplog.text


async def test_each_retry_takes_a_turn(sup: Supervisor) -> None:
    """Every attempt is a request to the provider: each one takes a turn."""
    fake = Fake(ConnectionError("blip"), ConnectionError("blip"))
    sup.register(
        "llm",
        fake,
        rate_limit=RateLimit(10, per=3600.0),
        retry=Retry(attempts=3, backoff=backoff.constant(0.0)),
    )
    with guard():
        async with sup:
            assert "ok" == await sup.call("llm")
            left = sup.status("llm").rate_limit[0]
    assert 3 == fake.count
    assert 7 == pytest.approx(left, abs=0.01)


async def test_waiting_callers_go_in_the_order_they_came(sup: Supervisor) -> None:
    """FIFO: a turn is a commitment taken when the call arrives, so a large call that came
    first goes first, and small ones behind it wait for it (it is never starved)."""
    per = PER
    fake = Fake()
    sup.register(
        "llm", fake, rate_limit=RateLimit(10, per=per, max_wait=math.inf, cost=lambda n: n)
    )
    with guard():
        async with sup, anyio.create_task_group() as tg:
            await sup.call("llm", 10)  # the bucket is empty
            for n in (8, 1, 1, 1):

                async def one(n: int = n) -> None:
                    await sup.call("llm", n)

                tg.start_soon(one)
                await wait_idle()
    assert [10, 8, 1, 1, 1] == [args[0] for args, _ in fake.calls]


async def test_admitted_calls_keep_to_the_limit_over_every_window(sup: Supervisor) -> None:
    """Forty callers at once against 5 per `per` (burst 5): every one is admitted in turn, and
    over every window of `per` at most rate + burst = 10 calls start (the GCRA bound). trio's
    virtual clock makes the start times exact; on asyncio only the count is checked."""
    per = PER / 2
    fake = Fake()
    sup.register("llm", fake, rate_limit=RateLimit(5, per=per, max_wait=math.inf))
    with guard(120):
        async with sup, anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(sup.call, "llm")
    times = sorted(fake.times)
    assert 40 == len(times)
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t <= start + per + 1e-9) <= 10
    assert 35 * per / 5 == pytest.approx(times[-1] - times[0], abs=1e-6)  # 5, then 1 per T


async def test_leaving_the_supervisor_ends_a_wait_for_a_turn(sup: Supervisor) -> None:
    """A caller waiting for a turn when the supervisor leaves gets SupervisorClosed at once."""
    fake = Fake()
    sup.register("llm", fake, rate_limit=RateLimit(1, per=3600.0, max_wait=math.inf))
    errors: list[BaseException] = []
    with guard():
        async with anyio.create_task_group() as tg, sup:
            await sup.call("llm")

            async def waiter() -> None:
                try:
                    await sup.call("llm")
                except SupervisorClosed as error:
                    errors.append(error)

            tg.start_soon(waiter)
            await wait_idle()
    assert 1 == len(errors)
    assert "rate-limit turn" in str(errors[0])
    assert 1 == fake.count


async def test_reconfigure_swaps_the_limits(sup: Supervisor) -> None:
    """`reconfigure(name, rate_limit=...)` swaps the limits (a new bucket starts full);
    `rate_limit=None` removes them and calls take the hot path again."""
    fake = Fake()
    sup.register("llm", fake, rate_limit=RateLimit(1, per=3600.0))
    with guard():
        async with sup:
            await sup.call("llm")
            with pytest.raises(RateLimited):
                await sup.call("llm")
            await sup.reconfigure("llm", rate_limit=[RateLimit(2, per=3600.0)])
            await sup.call("llm")
            await sup.call("llm")
            with pytest.raises(RateLimited):
                await sup.call("llm")
            await sup.reconfigure("llm", rate_limit=None)
            for _ in range(5):
                await sup.call("llm")
            assert () == sup.status("llm").rate_limit
    assert 8 == fake.count


@pytest.mark.parametrize(
    "value",
    ["100/min", [RateLimit(1), "x"], 5],
    ids=["str", "sequence-with-a-str", "int"],
)
def test_register_names_a_wrong_rate_limit(value: Any) -> None:
    sup = Supervisor()
    with pytest.raises(TypeError, match=r"'rate_limit(\[1\])?' must be a policies\.RateLimit"):
        sup.register("llm", Fake(), rate_limit=value)
    assert () == sup.dependencies


async def test_configured_rate_limits_are_enforced() -> None:
    """`[dependencies.llm] rate_limit = [...]` in a configuration is picked up by register."""
    sup = Supervisor.from_config(
        {
            "dependencies": {
                "llm": {
                    "rate_limit": [
                        {"rate": 2, "per": 3600},
                        {"rate": 100, "per": 3600},
                    ]
                }
            }
        },
        env={},
    )
    fake = Fake()
    sup.register("llm", fake)
    with guard():
        async with sup:
            await sup.call("llm")
            await sup.call("llm")
            with pytest.raises(RateLimited):
                await sup.call("llm")
            assert 2 == len(sup.status("llm").rate_limit)
    assert 2 == fake.count


async def test_a_call_waiting_for_its_turn_holds_no_probe_permit(sup: Supervisor) -> None:
    """Half-open with one probe: a probe that must wait for its turn gives the permit back
    while it waits, so a second caller is not refused as if a probe were running."""
    per = PER
    fake = Fake(ConnectionError("down"))
    sup.register(
        "llm",
        fake,
        breaker=Breaker(failure_threshold=1, break_duration=0.0, half_open_probes=1),
        rate_limit=RateLimit(1, per=per, max_wait=math.inf),
    )
    with guard():
        async with sup, anyio.create_task_group() as tg:
            with pytest.raises(ConnectionError):
                await sup.call("llm")  # opens; the bucket is empty
            tg.start_soon(sup.call, "llm")  # the probe: waits for its turn
            await wait_idle()
            second = await sup.call("llm")  # not BreakerOpen: waits for the turn after it
    assert "ok" == second
    assert 3 == fake.count


async def test_a_shared_open_verdict_refuses_calls_until_it_ends(sup: Supervisor) -> None:
    """The replicas' shared open verdict (issue #12's hook): calls are refused with
    BreakerOpen (reason shared_open) until it ends, without a transition of the local
    breaker; lifting it lets calls through at once."""
    fake = Fake()
    sup.register("llm", fake)
    with guard():
        async with sup:
            actor = sup._actors["llm"]
            actor.shared_open(PER)
            with pytest.raises(BreakerOpen):
                await sup.call("llm")
            status = sup.status("llm")
            assert status.shared_open_until is not None
            assert {"shared_open": 1} == status.rejected_by
            assert "closed" == status.state
            await anyio.sleep(PER)  # the verdict's own duration (virtual time)
            assert "ok" == await sup.call("llm")
            actor.shared_open(3600.0)
            actor.shared_open(None)
            assert "ok" == await sup.call("llm")
            assert sup.status("llm").shared_open_until is None
    assert 2 == fake.count


async def test_turns_that_fall_due_in_a_pause_are_taken_again_after_it(sup: Supervisor) -> None:
    """Calls whose turn fell due while the dependency was paused do not all go at the pause's
    end (a burst the limit never allowed, which a provider answers with 429s): they give the
    turn back and take a fresh one, so what reaches the dependency keeps to the limit."""
    per = PER / 5
    starts: dict[str, float] = {}

    async def fn(name: str) -> str:
        starts[name] = anyio.current_time()
        if name == "a":
            await anyio.sleep(per / 2)  # the others take their turns meanwhile
            raise http_error(429, {"retry-after-ms": str(int(per * 1000 * 10))})
        return name

    sup.register(
        "llm",
        fn,
        retry=Retry(attempts=1),
        rate_limit=RateLimit(1, per=per, burst=1, max_wait=math.inf),
    )
    with guard(100 * per):
        async with sup, anyio.create_task_group() as tg:
            t0 = anyio.current_time()

            async def call(name: str) -> None:
                with contextlib.suppress(httpx.HTTPStatusError):
                    await sup.call("llm", name)

            for name in "abcde":
                tg.start_soon(call, name)
                await wait_idle()
    after = sorted(t - t0 for name, t in starts.items() if name != "a")
    assert 4 == len(after)
    assert after[0] >= 10 * per  # nothing went during the pause
    # one per `per`, as the limit says (burst 1): never two together
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert all(gap >= per - 1e-9 for gap in gaps), gaps


# -- found by review: queued probes, pauses over the queue, reconfigure, two-limit refunds ------


async def test_a_shared_open_that_fails_a_queued_probe_gives_its_permit_back(
    sup: Supervisor,
) -> None:
    """Half-open, one probe permit, taken by a call waiting in the bulkhead queue: a shared
    open verdict fails the queue without a transition, and the permit must come back (else
    the breaker stays half-open with every permit taken, refusing everyone)."""
    gate = Gate()
    fake = Fake(gate)
    sup.register(
        "llm",
        fake,
        breaker=Breaker(failure_threshold=1, break_duration=0.0, half_open_probes=1),
        bulkhead=Bulkhead(max_concurrent=1, max_queued=1),
    )
    errors: list[BreakerOpen] = []
    with guard():
        async with sup:
            async with anyio.create_task_group() as tg:
                tg.start_soon(sup.call, "llm")  # a late call holding the only slot
                await fake.entered.wait()
                await sup.force_half_open("llm")

                async def probe() -> None:
                    try:
                        await sup.call("llm")
                    except BreakerOpen as error:
                        errors.append(error)

                tg.start_soon(probe)  # takes the permit, queues for the slot
                await wait_idle()
                actor = sup._actors["llm"]
                actor.shared_open(5.0)  # fails the queue
                await wait_idle()
                actor.shared_open(None)
                gate.open()
            assert 1 == len(errors)
            assert {"shared_open": 1} == sup.status("llm").rejected_by
            assert "ok" == await sup.call("llm")  # the permit came back: a probe goes


async def test_a_probe_the_shared_verdict_refuses_at_admission_gives_its_permit_back(
    sup: Supervisor, each_path: str
) -> None:
    """Half-open, one probe permit: a call admitted by the breaker (it takes the permit) and
    then refused by the replicas' shared open verdict never runs, so the permit comes back
    (else the breaker stays half-open with its only permit taken, refusing everyone)."""
    fake = Fake(ConnectionError("x"))
    sup.register(
        "llm",
        fake,
        breaker=Breaker(failure_threshold=1, break_duration=3600.0, half_open_probes=1),
    )
    with guard():
        async with sup:
            with pytest.raises(ConnectionError):
                await sup.call("llm")  # opens the breaker
            await sup.force_half_open("llm")
            actor = sup._actors["llm"]
            actor.shared_open(3600.0)
            for _ in range(2):
                with pytest.raises(BreakerOpen):
                    await sup.call("llm")
            status = sup.status("llm")
            assert ("half_open", {"shared_open": 2}) == (status.state, status.rejected_by)
            actor.shared_open(None)
            assert "ok" == await sup.call("llm")  # the permit came back: the probe goes
            assert "closed" == sup.status("llm").state
    assert 2 == fake.count


async def test_a_probe_the_shared_verdict_refuses_after_its_turn_gives_its_permit_back(
    sup: Supervisor, each_path: str
) -> None:
    """The same, for a call that waited for its rate-limit turn (holding no permit) while the
    verdict came: admitted again when the turn is due, it takes the permit, is refused by
    the verdict, and gives the permit back."""
    per = PER
    fake = Fake(ConnectionError("x"))
    sup.register(
        "llm",
        fake,
        breaker=Breaker(failure_threshold=1, break_duration=3600.0, half_open_probes=1),
        rate_limit=RateLimit(1, per=per, burst=1, max_wait=math.inf),
    )
    errors: list[BreakerOpen] = []

    async def waits_for_its_turn() -> None:
        try:
            await sup.call("llm")
        except BreakerOpen as error:
            errors.append(error)

    with guard(100 * per):
        async with sup:
            with pytest.raises(ConnectionError):
                await sup.call("llm")  # opens the breaker, takes the one turn
            await sup.force_half_open("llm")
            actor = sup._actors["llm"]
            async with anyio.create_task_group() as tg:
                tg.start_soon(waits_for_its_turn)
                await wait_idle()
                actor.shared_open(3600.0)  # comes while the call waits for its turn
            status = sup.status("llm")
            assert (1, "half_open", {"shared_open": 1}) == (
                len(errors),
                status.state,
                status.rejected_by,
            )
            actor.shared_open(None)
            assert "ok" == await sup.call("llm")  # the permit came back: the probe goes
            assert "closed" == sup.status("llm").state
    assert 2 == fake.count


@pytest.mark.parametrize("limited", [False, True], ids=["no-limit", "rate-limited"])
async def test_a_call_queued_for_a_slot_does_not_go_during_a_pause(
    sup: Supervisor, limited: bool
) -> None:
    """A 429 pauses the dependency while a call waits in the bulkhead queue: when the slot
    frees, the queued call waits the pause out instead of calling a paused dependency."""
    pause = 10.0
    starts: dict[str, float] = {}
    gate = anyio.Event()

    async def fn(name: str) -> str:
        starts[name] = anyio.current_time()
        if name == "a":
            await gate.wait()
            raise http_error(429, {"retry-after-ms": str(int(pause * 1000))})
        return name

    sup.register(
        "llm",
        fn,
        retry=Retry(attempts=1),
        bulkhead=Bulkhead(max_concurrent=1, max_queued=1),
        # A slow refill (100 an hour), so asyncio's real time between the two readings of
        # the bucket cannot add a visible fraction of a token on a loaded machine.
        rate_limit=RateLimit(100, per=3600.0) if limited else None,
    )
    with guard():
        async with sup, anyio.create_task_group() as tg:
            t0 = anyio.current_time()

            async def call(name: str) -> None:
                with contextlib.suppress(httpx.HTTPStatusError):
                    await sup.call("llm", name)

            tg.start_soon(call, "a")
            await wait_idle()
            tg.start_soon(call, "b")
            await wait_idle()
            assert 1 == sup.status("llm").queued
            left = sup.status("llm").rate_limit
            gate.set()
            await wait_idle()
            waiting = sup.status("llm")
            assert "b" not in starts  # the pause holds it
            assert (0, 0) == (waiting.in_flight, waiting.queued)  # and it holds no slot
            if limited:  # nor its turn: it takes a fresh one after the pause
                assert waiting.rate_limit[0] == pytest.approx(left[0] + 1, abs=0.5)
    assert pause == pytest.approx(starts["b"] - t0, abs=1e-6)
    assert {"a", "b"} == set(starts)


async def test_a_refund_after_reconfigure_goes_to_the_limiter_that_charged_it(
    sup: Supervisor,
) -> None:
    """A caller waiting for a turn of the old limits, cancelled after a reconfigure: its turn
    goes back to the old limiter, not into the new bucket (which would exceed its burst)."""
    per = PER * 100
    fake = Fake()
    sup.register("llm", fake, rate_limit=RateLimit(1, per=per, max_wait=math.inf))
    with guard():
        async with sup:
            await sup.call("llm")
            async with anyio.create_task_group() as tg:
                tg.start_soon(sup.call, "llm")  # waits for its old turn
                await wait_idle()
                await sup.reconfigure("llm", rate_limit=RateLimit(1, per=per, burst=1))
                await sup.call("llm")  # the new bucket's one unit
                tg.cancel_scope.cancel()
            with pytest.raises(RateLimited):
                await sup.call("llm")
    assert 2 == fake.count


async def test_a_turn_falling_due_in_a_pause_after_a_reconfigure_is_priced_afresh(
    sup: Supervisor,
) -> None:
    """The limits change while a call waits for its turn, and the turn falls due in a pause:
    the call gives the old turn back and takes one under the new limits (priced by them)."""
    per = PER
    fake = Fake()
    sup.register("llm", fake, rate_limit=RateLimit(1, per=per, max_wait=math.inf))
    results: list[object] = []
    with guard():
        async with sup:
            await sup.call("llm")
            async with anyio.create_task_group() as tg:

                async def waiter() -> None:
                    try:
                        results.append(await sup.call("llm"))
                    except Exception as error:  # the test shows it
                        results.append(error)

                tg.start_soon(waiter)
                await wait_idle()
                await sup.reconfigure(
                    "llm",
                    rate_limit=[
                        RateLimit(10, per=per, max_wait=math.inf),
                        RateLimit(1000, per=per, max_wait=math.inf),
                    ],
                )
                sup._actors["llm"].shared_pause(per * 2)
            assert (1.0 * 10 - 1, 1000 - 1) == pytest.approx(sup.status("llm").rate_limit, abs=1)
    assert ["ok"] == results


async def test_two_limits_a_cancelled_waiter_gives_back_everything_it_was_charged(
    sup: Supervisor,
) -> None:
    """With two limits a call is charged as of its common start in both (rule 2): the limit
    that had room is charged the wait too. A call cancelled while it waits gives all of it
    back, so the request limit is where it was."""
    per = 3600.0
    sup.register(
        "llm",
        Fake(),
        rate_limit=[
            RateLimit(10, per=per),
            RateLimit(100, per=per, max_wait=math.inf, cost=lambda n: n),
        ],
    )
    with guard():
        async with sup:
            await sup.call("llm", 100)
            before = sup.status("llm").rate_limit
            with anyio.move_on_after(0):
                await sup.call("llm", 50)  # waits for tokens; cancelled at once
            after = sup.status("llm").rate_limit
    assert before == pytest.approx(after, abs=0.01)


async def test_a_retry_refused_at_admission_says_what_it_retried(sup: Supervisor) -> None:
    """The retry of a failed call is refused by the rate limit: RateLimited is final (never
    retried) and carries the dependency's error it would have retried as its cause."""
    fake = Fake(ConnectionError("blip"))
    sup.register(
        "llm",
        fake,
        retry=Retry(attempts=3, backoff=backoff.constant(0.0)),
        rate_limit=RateLimit(1, per=3600.0),
    )
    with guard():
        async with sup:
            with pytest.raises(RateLimited) as caught:
                await sup.call("llm")
            assert 1 == sup.status("llm").retries
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert 1 == fake.count
