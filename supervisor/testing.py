"""
Helpers for a service's own test suite (stamina's ``set_testing``, in ringfence's terms).

``fast()`` makes every retry instant while it is on: backoff waits are zero, a
``Retry-After`` hint waits no longer than a nanosecond, jitter draws from a seeded
``random.Random``, and, if asked, a dependency is tried at most *attempts* times. It applies
to every supervisor entered (``async with supervisor:``) while it is on, and to a dependency
registered while such a supervisor runs; a supervisor entered before keeps its policies.
Nothing else changes: breakers, bulkheads, timeouts, rate limits and pauses behave as in
production, so a test still sees ``BreakerOpen`` and ``RateLimited``::

    from supervisor import testing

    with testing.fast(attempts=2):
        async with supervisor:  # or TestClient(app): the lifespan enters it
            ...

    testing.set_testing(True)   # the same, until set_testing(False) (a conftest's habit)

The pytest plugin (installed with ringfence, in ``supervisor.pytest_plugin``) adds the
fixtures ``ringfence_fast`` and ``ringfence_supervisor``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ._testmode import TestMode, current, set_current

__all__ = ("fast", "set_testing", "is_testing")


def _mode(attempts: int | None, seed: int) -> TestMode:
    if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int)):
        msg = f"'attempts' must be an int >= 1 or None, got {attempts!r}"
        raise TypeError(msg)
    if attempts is not None and attempts < 1:
        msg = f"'attempts' must be an int >= 1 or None, got {attempts!r}"
        raise ValueError(msg)
    if isinstance(seed, bool) or not isinstance(seed, int):
        msg = f"'seed' must be an int, got {seed!r}"
        raise TypeError(msg)
    return TestMode(attempts=attempts, seed=seed)


@contextlib.contextmanager
def fast(*, attempts: int | None = None, seed: int = 0) -> Iterator[None]:
    """
    Instant retries while the block runs (see the module's docstring); the previous setting
    comes back after it.

    Args:
        attempts: at most this many tries per call (``1``: no retry); ``None`` keeps each
            dependency's own ``Retry.attempts``.
        seed: the seed of the ``random.Random`` jitter draws from.

    Raises:
        TypeError, ValueError: *attempts* or *seed* is not what it should be.
    """
    previous = set_current(_mode(attempts, seed))
    try:
        yield
    finally:
        set_current(previous)


def set_testing(on: bool, *, attempts: int | None = None, seed: int = 0) -> None:
    """Turn :func:`fast`'s behaviour on (with its arguments) or off, until said otherwise."""
    if not isinstance(on, bool):
        msg = f"'on' must be a bool, got {on!r}"
        raise TypeError(msg)
    set_current(_mode(attempts, seed) if on else None)


def is_testing() -> bool:
    """Whether :func:`fast` or :func:`set_testing` is on."""
    return current() is not None
