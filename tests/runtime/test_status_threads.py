"""
``status()`` read from another thread while the loop works (issue 16, item 3, defect 5).

prometheus-client's ``start_http_server`` scrapes from a thread of its own, so ``status()`` runs
there while the actor writes from the loop's thread. A read must write nothing: a retry
budget that expired its slices while being read lost updates to its totals, and its counts
drifted for good.

Time is the test's own: asyncio runs on a loop whose clock the test moves forward
(:class:`_SkippingLoop`), trio on a ``MockClock`` it jumps, so the loop's work spans many
budget windows in a few milliseconds and the final window holds exactly what the test put in.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator

import pytest

from policies import Budget, Retry, backoff
from supervisor import Supervisor

from .conftest import HANG, Fake, guard

pytestmark = pytest.mark.anyio

WINDOW = 1.0


class _SkippingLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock the test can move forward, as trio's MockClock.jump does."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0.0

    def time(self) -> float:
        return super().time() + self.skipped


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """asyncio on a loop with a movable clock; trio with an autojumping mock clock."""
    if request.param == "trio":
        from trio.testing import MockClock

        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": _SkippingLoop})


def skip(seconds: float) -> None:
    """Move the running loop's clock *seconds* forward."""
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            clock = trio.lowlevel.current_clock()
        except RuntimeError:  # not in trio: asyncio
            pass
        else:
            clock.jump(seconds)
            return
    loop = asyncio.get_running_loop()
    assert isinstance(loop, _SkippingLoop)
    loop.skipped += seconds


@pytest.fixture
def often() -> Iterator[None]:
    """Switch threads every microsecond (CPython's default is 5 ms): races show up."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


class Scraper:
    """A thread calling ``supervisor.status()`` in a loop until stopped; keeps its errors."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.reads = 0
        self.errors: list[BaseException] = []
        self.reading = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="scraper", daemon=True)

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                self.supervisor.status()
                self.reads += 1
                self.reading.set()
        except BaseException as error:  # reported by the test, not by threading's hook
            self.errors.append(error)
            self.reading.set()

    def __enter__(self) -> Scraper:
        self.thread.start()
        assert self.reading.wait(10), "the scraper thread never read"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        self.thread.join(10)


@pytest.mark.usefixtures("often")
async def test_status_read_from_another_thread_leaves_the_budget_exact(sup: Supervisor) -> None:
    """A thread reads status() without pause while 300 retried calls span 75 windows; then,
    a quiet window later, 5 more: the budget counts those 5 calls and 5 retries, exactly."""
    fake = Fake()
    # Every call fails once and succeeds on its retry; the budget allows every retry.
    retry = Retry(
        attempts=2,
        backoff=backoff.constant(0),
        budget=Budget(ratio=1.0, min_per_second=1000.0, window=WINDOW),
    )
    handle = sup.register("dep", fake, retry=retry)
    with guard(HANG + 100 * WINDOW):  # the test moves the clock 77 windows
        async with sup:
            with Scraper(sup) as scraper:
                for _ in range(300):
                    fake.add(ConnectionError("flaky"), "ok")
                    assert "ok" == await handle()
                    skip(WINDOW / 4)  # a new slice each call, and old ones leave the window
            assert [] == scraper.errors
            assert scraper.reads > 0
            skip(2 * WINDOW)  # nothing of the above is left in the window
            for _ in range(5):
                fake.add(ConnectionError("flaky"), "ok")
                assert "ok" == await handle()
            budget = sup.status("dep").budget
    assert budget is not None
    assert (5, 5, 0) == (budget.calls, budget.retries, budget.refused)
    assert 610 == fake.count
    assert 305 == sup.status("dep").retries


async def test_status_and_health_from_another_thread_while_dependencies_register(
    sup: Supervisor,
) -> None:
    """Registering after entering adds to the mapping a scrape is walking: status() and
    health() in another thread still read every dependency they find, and never fail."""

    class Both(Scraper):
        def run(self) -> None:
            try:
                while not self.stopped.is_set():
                    statuses = self.supervisor.status()
                    health = self.supervisor.health()
                    assert set(health.states) <= set(self.supervisor.dependencies)
                    assert all(s.name == name for name, s in statuses.items())
                    self.reads += 1
                    self.reading.set()
            except BaseException as error:
                self.errors.append(error)
                self.reading.set()

    with guard():
        async with sup:
            with Both(sup) as scraper:
                for i in range(300):
                    sup.register(f"dep{i}", Fake())
            assert [] == scraper.errors
    assert 300 == len(sup.status())
