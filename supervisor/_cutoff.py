"""
What a wait ringfence cut off means: one error for a call's attempt and a stream's item alike.
"""

from __future__ import annotations

from typing import Final

from ._errors import AttemptTimeout, DeadlineExceeded, SupervisorClosed, SupervisorError
from ._timers import CLOSED, DEADLINE

__all__ = ("cut_error",)

_CUT_OFF: Final = "supervisor shut down while the call was running"
_STREAM_CUT_OFF: Final = "supervisor shut down while the stream was open"


def cut_error(name: str, why: int, seconds: float, *, stream: bool = False) -> SupervisorError:
    """
    The error of dependency *name*'s wait cut off for reason *why* (``_timers``): the
    supervisor left (``SupervisorClosed``, saying whether a call or a *stream*), the call's
    total deadline passed (``DeadlineExceeded``), or the attempt or item took longer than its
    limit (``AttemptTimeout``). *seconds*: the limit that cut it, as the call started with it.
    Only the last is the dependency's failure: like a caller's cancellation, running out of
    the caller's own budget says nothing about the dependency (Polly's outer timeout is not
    counted either); it reached the dependency, though, so it counts as a cut-off
    (``Actor.cut_off`` counts it, the one place that does).
    """
    if why == CLOSED:
        return SupervisorClosed(_STREAM_CUT_OFF if stream else _CUT_OFF)
    if why == DEADLINE:
        return DeadlineExceeded(name, seconds)
    return AttemptTimeout(name, seconds)
