"""The default error filters inside the runtime: what nobody classified fails safe (issue 16)."""

from __future__ import annotations

import errno

import pytest

from policies import Breaker, ErrorKind, Retry, backoff, classify
from supervisor import BreakerOpen, Supervisor

from .conftest import Fake, guard

pytestmark = pytest.mark.anyio


class DriverError(Exception):
    """A client library's own exception type, as a DB driver's OperationalError is."""


@pytest.mark.parametrize(
    "error",
    [DriverError("server closed the connection"), RuntimeError("boom"), OSError(errno.EIO, "EIO")],
    ids=["custom", "RuntimeError", "OSError(EIO)"],
)
async def test_an_unclassified_error_is_retried_and_opens_the_breaker(
    sup: Supervisor, error: Exception
) -> None:
    """
    Default ``Retry().retry_on`` and ``Breaker().record``: an error ``classify`` calls
    ``unknown`` is tried again and counts against the dependency, so 3 attempts of one call
    open a breaker with ``failure_threshold=3`` and the next call is refused.
    """
    assert classify(error) is ErrorKind.UNKNOWN
    fake = Fake(error, error, error)
    # Only the backoff differs from Retry()'s defaults (no wait: no real sleep on asyncio).
    retry = Retry(backoff=backoff.constant(0.0))
    sup.register("db", fake, retry=retry, breaker=Breaker(failure_threshold=3, break_duration=60.0))
    with guard():
        async with sup:
            with pytest.raises(type(error)) as raised:
                await sup.call("db")
            assert raised.value is error
            assert (fake.count, sup.status("db").state) == (3, "open")
            with pytest.raises(BreakerOpen):
                await sup.call("db")
    status = sup.status("db")
    assert (status.calls, status.failures, status.rejected, fake.count) == (3, 3, 1, 3)
