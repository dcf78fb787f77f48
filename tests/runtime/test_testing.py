"""
supervisor.testing (issue 21): the switch makes retries instant and limits attempts; the
pytest plugin's fixtures.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import anyio
import pytest

from policies import Retry, backoff
from supervisor import RetryScheduled, Supervisor, testing

from .conftest import Fake, guard

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parents[2]


async def _delays(sup: Supervisor, fake: Fake) -> tuple[list[float], float]:
    """The retry delays a 3-attempt exponential retry asked for, and the loop time it took."""
    handle = sup.register(
        "dep", fake, retry=Retry(attempts=3, backoff=backoff.full(backoff.exponential(base=1.0)))
    )
    async with sup, sup.events([RetryScheduled]) as events:
        start = anyio.current_time()
        assert "ok" == await handle()
        took = anyio.current_time() - start
        delays = [event.delay async for event in _take(events, 2)]  # type: ignore[attr-defined]
    return delays, took


async def _take(events: object, n: int):  # type: ignore[no-untyped-def]
    with anyio.fail_after(5):
        for _ in range(n):
            yield await anext(events)  # type: ignore[call-overload]


async def test_fast_makes_a_three_attempt_exponential_retry_wait_nothing(is_trio: bool) -> None:
    """Under fast() both backoffs ask for 0 s, and (trio's virtual clock) no time passes."""
    with guard():
        with testing.fast():
            assert testing.is_testing()
            delays, took = await _delays(
                Supervisor(), Fake(ConnectionError(), ConnectionError(), "ok")
            )
        assert not testing.is_testing()
        assert [0.0, 0.0] == delays
        if is_trio:  # only trio's clock is virtual: without the switch it waits (>= 1 tick)
            assert 0.0 == took
            slow, slow_took = await _delays(
                Supervisor(), Fake(ConnectionError(), ConnectionError(), "ok")
            )
            assert all(delay > 0 for delay in slow)
            assert slow_took == sum(slow)


async def test_fast_limits_attempts_and_ignores_retry_after_hints() -> None:
    """attempts=1: the first error is the caller's; a Retry-After of an hour waits nothing."""

    class Hinted(ConnectionError):
        retry_after = 3600.0

    with guard(), testing.fast(attempts=1):
        sup = Supervisor()
        fake = Fake(ConnectionError("once"), "ok")
        handle = sup.register("dep", fake, retry=Retry(attempts=5))
        hinted = sup.register("hinted", Fake(Hinted(), "ok"), retry=Retry(attempts=2))
        async with sup:
            with pytest.raises(ConnectionError, match="once"):
                await handle()
            assert 1 == fake.count
    with guard(), testing.fast():
        async with sup:
            assert "ok" == await hinted()  # no hour-long wait: the guard would fire


async def test_a_supervisor_entered_before_keeps_its_policies() -> None:
    """fast() applies when a supervisor is entered, not to one already running."""
    sup = Supervisor()
    fake = Fake(ConnectionError(), "ok")
    handle = sup.register("dep", fake, retry=Retry(attempts=2, backoff=backoff.constant(0.0)))
    with guard():
        async with sup:
            with testing.fast(attempts=1):
                assert "ok" == await handle()  # its 2 attempts: entered before the switch
                late = sup.register("late", Fake(ConnectionError("late")), retry=Retry())
                with pytest.raises(ConnectionError, match="late"):
                    await late()  # registered under it: 1 attempt
    assert 2 == fake.count


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"attempts": 0}, ValueError, r"^'attempts' must be an int >= 1 or None, got 0$"),
        ({"attempts": True}, TypeError, r"^'attempts' must be an int >= 1 or None, got True$"),
        ({"seed": "1"}, TypeError, r"^'seed' must be an int, got '1'$"),
    ],
)
def test_fast_checks_its_arguments(kwargs: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message), testing.fast(**kwargs):  # type: ignore[arg-type]
        pass
    assert not testing.is_testing()


def test_set_testing_turns_it_on_and_off() -> None:
    testing.set_testing(True, attempts=2)
    try:
        assert testing.is_testing()
    finally:
        testing.set_testing(False)
    assert not testing.is_testing()
    with pytest.raises(TypeError, match="'on' must be a bool"):
        testing.set_testing(1)  # type: ignore[arg-type]


def test_the_pytest_plugin_is_an_entry_point() -> None:
    """pip-installed ringfence registers its fixtures with pytest."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {"ringfence": "supervisor.pytest_plugin"} == project["entry-points"]["pytest11"]


def test_the_plugins_fixtures_in_a_users_test_suite(tmp_path: Path) -> None:
    """A user's suite: ringfence_supervisor is started per test, and retries wait nothing."""
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from policies import Retry, backoff

            pytestmark = pytest.mark.anyio
            calls = []

            async def flaky():
                calls.append(1)
                if len(calls) % 3:
                    raise ConnectionError("again")
                return "ok"

            @pytest.mark.parametrize("run", [1, 2])
            async def test_retries_at_once(ringfence_supervisor, run):
                slow = Retry(attempts=3, backoff=backoff.constant(60.0))  # a minute per retry
                handle = ringfence_supervisor.register("flaky", flaky, retry=slow)
                assert "ok" == await handle()
                assert 1 == len(ringfence_supervisor.dependencies)

            def test_fast(ringfence_fast):
                from supervisor import testing
                assert testing.is_testing()
            """
        )
    )
    # Installed (pip install .), pytest loads the plugin by its entry point; from a tree whose
    # install predates the entry point, by name (both at once: "already registered").
    installed = any(
        entry.name == "ringfence" for entry in importlib.metadata.entry_points(group="pytest11")
    )
    plugin = [] if installed else ["-p", "supervisor.pytest_plugin"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *plugin, "-q", "-p", "no:randomly"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "passed" in result.stdout
    assert "failed" not in result.stdout
