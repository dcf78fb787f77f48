"""
Timeouts: a per-attempt limit, a total deadline, and the two waits of a streamed call. All
durations are seconds (or a ``datetime.timedelta``, converted to seconds at construction).

``attempt`` bounds one try of the dependency (queue wait excluded). ``total`` bounds the whole
call: queueing, every attempt and every backoff sleep together; a retry whose backoff would
end past the deadline is not started.

A streamed call (``supervisor.stream``) has two waits of its own. ``first_item`` bounds one
attempt from the request to its first item (the time to first token); ``attempt`` stands in
for it when it is not given. ``between_items`` bounds each later wait: from the moment the
caller asks for the next item until it arrives (or the stream ends), so the time the caller
spends with an item is never charged to the dependency. ``total`` bounds the stream from the
first request to its end, retries and the caller's own time included.
"""

from __future__ import annotations

import math
import warnings
from typing import final

import attrs

from ._validators import optional_number, optional_seconds

__all__ = ("Timeout", "limit_of")


@final
@attrs.frozen(kw_only=True)
class Timeout:
    """
    Time limits for calls to one dependency.

    Args:
        attempt: seconds (or a ``timedelta``) one attempt may run before it fails with
            ``AttemptTimeout`` (``None``: no limit). Retried when ``Retry.retry_on`` matches
            it, as the default does: ``AttemptTimeout`` is a ``TimeoutError``, a transient
            error. For a stream without *first_item*, it bounds the time to the first item.
        total: seconds (or a ``timedelta``) the whole call may take before it fails with
            ``DeadlineExceeded`` (``None``: no deadline). Never retried. For a stream: from
            the first request until the stream ends.
        first_item: streams only: seconds (or a ``timedelta``) from an attempt's request to
            its first item before it fails with ``AttemptTimeout`` (``None``: *attempt*'s
            limit, if any). Before the first item an ``AttemptTimeout`` is retried like an
            attempt's.
        between_items: streams only: seconds (or a ``timedelta``) the caller may wait for
            each later item (or for the end of the stream) before the stream fails with
            ``AttemptTimeout`` (``None``: no limit). The caller's own time between items is
            not counted. Never retried: an item has already reached the caller.

    Raises:
        TypeError, ValueError: a limit is not a number ``> 0``.

    Warns:
        UserWarning: ``attempt``, ``first_item`` or ``between_items`` is ``>= total``: that
            limit can never fire first.
    """

    attempt: float | None = attrs.field(
        default=None, converter=optional_seconds, validator=optional_number(gt=0)
    )
    total: float | None = attrs.field(
        default=None, converter=optional_seconds, validator=optional_number(gt=0)
    )
    first_item: float | None = attrs.field(
        default=None, converter=optional_seconds, validator=optional_number(gt=0)
    )
    between_items: float | None = attrs.field(
        default=None, converter=optional_seconds, validator=optional_number(gt=0)
    )

    def __attrs_post_init__(self) -> None:
        total = self.total
        if total is None:
            return
        if self.attempt is not None and self.attempt >= total:
            warnings.warn(
                f"Timeout(attempt={self.attempt!r}, total={total!r}): the attempt limit "
                "is not shorter than the total deadline, so it never fires first",
                UserWarning,
                stacklevel=3,
            )
        for name, limit in (("first_item", self.first_item), ("between_items", self.between_items)):
            if limit is not None and limit >= total:
                warnings.warn(
                    f"Timeout({name}={limit!r}, total={total!r}): the {name} limit is not"
                    " shorter than the total deadline, so it never fires first",
                    UserWarning,
                    stacklevel=3,
                )


def limit_of(now: float, limit: float | None, deadline: float | None) -> tuple[float, bool]:
    """
    When a wait that starts at *now* must end: after *limit* seconds (an attempt's timeout,
    a stream's ``first_item`` or ``between_items``), or at the call's *deadline* when that
    comes first or there is no *limit* (``inf`` with neither). Also whether it is the deadline
    that ends it: that is the caller's budget, not the dependency's fault, and counts nothing.
    """
    if limit is None:
        return (deadline if deadline is not None else math.inf), True
    at = now + limit
    if deadline is not None and deadline <= at:
        return deadline, True
    return at, False
