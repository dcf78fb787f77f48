"""The mock clock works as the conftest promises (trio only)."""

from __future__ import annotations

import time

import anyio
import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> object:
    """trio only: virtual time."""
    from trio.testing import MockClock

    return ("trio", {"clock": MockClock(autojump_threshold=0)})


async def test_three_hundred_virtual_seconds_take_no_real_time() -> None:
    """Sleeping 300 virtual seconds moves anyio's clock by exactly 300 and real time barely."""
    real = time.monotonic()
    start = anyio.current_time()
    await anyio.sleep(300)
    assert anyio.current_time() - start == 300.0
    assert time.monotonic() - real < 5.0
