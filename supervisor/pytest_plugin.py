"""
ringfence's pytest plugin (the ``pytest11`` entry point ``ringfence``; loaded by pytest when
ringfence is installed, or with ``-p supervisor.pytest_plugin``). Two fixtures:

``ringfence_fast``
    :func:`supervisor.testing.fast` for the test: every supervisor entered during it retries
    at once.
``ringfence_supervisor``
    a started :class:`~supervisor.Supervisor` of the test's own, under ``ringfence_fast``,
    left after the test (an async fixture: the test runs under anyio's pytest plugin,
    ``@pytest.mark.anyio``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from . import testing
from ._supervisor import Supervisor

__all__ = ("ringfence_fast", "ringfence_supervisor")


@pytest.fixture
def ringfence_fast() -> Iterator[None]:
    """Instant retries for this test (``supervisor.testing.fast()``)."""
    with testing.fast():
        yield


@pytest.fixture
async def ringfence_supervisor(
    anyio_backend: object, ringfence_fast: None
) -> AsyncIterator[Supervisor]:
    """A started supervisor for this test; register dependencies on it, then call them."""
    async with Supervisor() as supervisor:
        yield supervisor
