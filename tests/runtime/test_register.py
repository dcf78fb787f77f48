"""Registration and construction: bad input fails at the boundary, naming the argument."""

from __future__ import annotations

import pytest

from policies import Retry
from supervisor import Supervisor

from .conftest import Fake, guard

pytestmark = pytest.mark.anyio


async def dep() -> str:
    return "ok"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": 3}, TypeError, r"^'name' must be a str, got 3 of type int$"),
        ({"name": ""}, ValueError, r"^'name' must be a non-empty str$"),
        ({"fn": "dep"}, TypeError, r"^'fn' must be callable, got 'dep' of type str$"),
        (
            {"retry": 3},
            TypeError,
            r"^'retry' must be a policies.Retry or None, got 3 of type int$",
        ),
        (
            {"breaker": Retry()},
            TypeError,
            r"^'breaker' must be a policies.Breaker or None, got Retry\(.*\) of type Retry$",
        ),
        (
            {"timeout": 5},
            TypeError,
            r"^'timeout' must be a policies.Timeout or None, got 5 of type int$",
        ),
        (
            {"bulkhead": 8},
            TypeError,
            r"^'bulkhead' must be a policies.Bulkhead or None, got 8 of type int$",
        ),
        ({"fallback": "cached"}, TypeError, r"^'fallback' must be callable or None, got 'cached'$"),
        ({"critical": 1}, TypeError, r"^'critical' must be a bool, got 1$"),
    ],
)
def test_register_rejects_bad_arguments(
    kwargs: dict[str, object], error: type, message: str
) -> None:
    """Each wrong argument raises TypeError/ValueError naming it; nothing is registered."""
    sup = Supervisor()
    arguments: dict[str, object] = {"name": "dep", "fn": dep, **kwargs}
    with pytest.raises(error, match=message):
        sup.register(arguments.pop("name"), arguments.pop("fn"), **arguments)  # type: ignore[arg-type, call-overload]
    assert sup.dependencies == ()


def test_duplicate_names_are_rejected() -> None:
    """A name can be registered once."""
    sup = Supervisor()
    sup.register("dep", dep)
    with pytest.raises(ValueError, match=r"^a dependency named 'dep' is already registered$"):
        sup.register("dep", dep)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rng": 3}, TypeError, r"^'rng' must be a random.Random or None, got int$"),
        ({"max_restarts": -1}, ValueError, r"^'max_restarts' must be an int >= 0, got -1$"),
        ({"max_restarts": True}, TypeError, r"^'max_restarts' must be an int >= 0, got True$"),
        ({"restart_window": 0}, ValueError, r"^'restart_window' must be a number > 0, got 0$"),
        ({"restart_window": "1"}, TypeError, r"^'restart_window' must be a number > 0, got '1'$"),
    ],
)
def test_supervisor_rejects_bad_arguments(
    kwargs: dict[str, object], error: type, message: str
) -> None:
    """Supervisor(...) validates its own arguments."""
    with pytest.raises(error, match=message):
        Supervisor(**kwargs)  # type: ignore[arg-type]


async def test_a_running_supervisor_is_not_entered_twice(sup: Supervisor) -> None:
    """Entering while it runs is a RuntimeError; once left, it is entered again (issue 21)."""
    with guard():
        async with sup:
            with pytest.raises(RuntimeError, match="running already"):
                async with sup:
                    pass
        async with sup:
            pass


async def test_plain_pass_through_is_still_counted(sup: Supervisor) -> None:
    """No policies: calls pass straight through and are counted in status."""
    # A transient error: only those count as failures by default (a ValueError would be the
    # caller's mistake, counted as a call the dependency answered).
    handle = sup.register("plain", Fake("a", ConnectionError("b")))
    with guard():
        async with sup:
            assert await handle() == "a"
            with pytest.raises(ConnectionError, match="b"):
                await handle()
    status = sup.status("plain")
    assert (status.calls, status.failures, status.state) == (2, 1, "closed")
    assert status.latency.samples == 2
