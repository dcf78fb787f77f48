"""
Timeouts: a per-attempt limit and a total deadline. All durations are seconds (or a
``datetime.timedelta``, converted to seconds at construction).

``attempt`` bounds one try of the dependency (queue wait excluded). ``total`` bounds the whole
call: queueing, every attempt and every backoff sleep together; a retry whose backoff would
end past the deadline is not started.
"""

from __future__ import annotations

import warnings
from typing import final

import attrs

from ._validators import optional_number, optional_seconds

__all__ = ("Timeout",)


@final
@attrs.frozen(kw_only=True)
class Timeout:
    """
    Time limits for calls to one dependency.

    Args:
        attempt: seconds (or a ``timedelta``) one attempt may run before it fails with
            ``AttemptTimeout`` (``None``: no limit). Retried when ``Retry.retry_on`` matches
            it, as the default does: ``AttemptTimeout`` is a ``TimeoutError``, a transient
            error.
        total: seconds (or a ``timedelta``) the whole call may take before it fails with
            ``DeadlineExceeded`` (``None``: no deadline). Never retried.

    Raises:
        TypeError, ValueError: a limit is not a number ``> 0``.

    Warns:
        UserWarning: ``attempt >= total``: the attempt limit can never fire first.
    """

    attempt: float | None = attrs.field(
        default=None, converter=optional_seconds, validator=optional_number(gt=0)
    )
    total: float | None = attrs.field(
        default=None, converter=optional_seconds, validator=optional_number(gt=0)
    )

    def __attrs_post_init__(self) -> None:
        if self.attempt is not None and self.total is not None and self.attempt >= self.total:
            warnings.warn(
                f"Timeout(attempt={self.attempt!r}, total={self.total!r}): the attempt limit "
                "is not shorter than the total deadline, so it never fires first",
                UserWarning,
                stacklevel=3,
            )
