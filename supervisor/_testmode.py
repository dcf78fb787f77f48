"""
The testing switch's state (set by :mod:`supervisor.testing`, read by the supervisor when it
is entered): one module-level value, ``None`` unless a test turned it on.

It lives apart from ``testing.py`` so that the supervisor reads it without importing the
public module, which imports the supervisor (imports point down: tests/test_layers.py).
"""

from __future__ import annotations

from typing import Any, Final, final

import attrs

from policies import Retry, backoff

__all__ = ("TestMode", "current", "set_current")

#: ``Retry.max_retry_after`` under the switch: a Retry-After hint waits no longer than this.
NO_WAIT: Final = 1e-9


@final
@attrs.frozen
class TestMode:
    """What the switch changes: every retry's waits, at most *attempts* tries, a seeded rng."""

    attempts: int | None
    seed: int

    def policies(self, spec: dict[str, Any]) -> dict[str, Any]:
        """*spec* (a dependency's registered policies) with its retry made instant."""
        retry: Retry | None = spec["retry"]
        if retry is None:
            return spec
        attempts = retry.attempts if self.attempts is None else min(retry.attempts, self.attempts)
        fast = attrs.evolve(
            retry, attempts=attempts, backoff=backoff.constant(0.0), max_retry_after=NO_WAIT
        )
        return {**spec, "retry": fast}


_current: TestMode | None = None


def current() -> TestMode | None:
    """The switch's setting, or ``None`` when it is off."""
    return _current


def set_current(mode: TestMode | None) -> TestMode | None:
    """Set the switch; returns what it was."""
    global _current  # one switch for the process, as stamina has
    previous, _current = _current, mode
    return previous
