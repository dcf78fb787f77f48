"""
ringfence policies: pure, sans-I/O resilience policies.

Nothing here awaits, reads a clock or draws from the global ``random``: every decision takes
``now`` (seconds) and an injected ``random.Random``. The runtime lives in :mod:`supervisor`.
"""

from __future__ import annotations

from . import backoff, break_duration
from .backoff import Backoff
from .break_duration import BreakDuration, BreakHistory
from .breaker import (
    REJECTED,
    TRANSITIONS,
    Breaker,
    CircuitBreaker,
    IllegalTransition,
    State,
    Transition,
)
from .bulkhead import Bulkhead
from .retry import ResultPredicate, Retry, RetryPredicate
from .timeout import Timeout
from .window import LatencyWindow, Percentiles, SlidingWindow

__all__ = (
    # configuration
    "Retry",
    "Breaker",
    "Timeout",
    "Bulkhead",
    # schedule modules
    "backoff",
    "break_duration",
    # state machines and their records
    "CircuitBreaker",
    "State",
    "Transition",
    "TRANSITIONS",
    "REJECTED",
    "IllegalTransition",
    "BreakHistory",
    "SlidingWindow",
    "LatencyWindow",
    "Percentiles",
    # protocols for the callables users write
    "Backoff",
    "BreakDuration",
    "RetryPredicate",
    "ResultPredicate",
)
