"""
ringfence policies: pure, sans-I/O resilience policies.

Nothing here awaits, reads a clock or draws from the global ``random``: every decision takes
``now`` (seconds) and an injected ``random.Random``. The runtime lives in :mod:`supervisor`.
"""

from __future__ import annotations

from . import backoff, break_duration
from ._matchers import (
    DEFAULT_FALLBACK_ON,
    DEFAULT_RECORD,
    DEFAULT_RETRY_ON,
    ErrorFilter,
    ErrorPredicate,
    ErrorSpec,
)
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
from .budget import Budget, BudgetStatus, RetryBudget
from .bulkhead import Bulkhead
from .chaos import Chaos
from .classify import Classifier, ErrorClassifier, ErrorKind, Matcher, classify, retry_after
from .concurrency import AdaptiveLimit, GradientLimit
from .hedge import Hedge, HedgeDelay, Quantile
from .priority import Priority
from .rate_limit import CostFunction, RateLimit, RateLimiter, Refusal, SettleFunction, reserve_all
from .retry import ResultPredicate, Retry, RetryPredicate
from .timeout import Timeout
from .window import LatencyWindow, Percentiles, SlidingWindow

__all__ = (
    # configuration
    "Retry",
    "Breaker",
    "Timeout",
    "Bulkhead",
    "AdaptiveLimit",
    "GradientLimit",
    "RateLimit",
    "Budget",
    "Hedge",
    "Quantile",
    "Chaos",
    "Priority",
    # errors of real clients
    "ErrorKind",
    "classify",
    "Classifier",
    "retry_after",
    "ErrorFilter",
    "ErrorSpec",
    "ErrorPredicate",
    "DEFAULT_RETRY_ON",
    "DEFAULT_RECORD",
    "DEFAULT_FALLBACK_ON",
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
    "RateLimiter",
    "Refusal",
    "reserve_all",
    "RetryBudget",
    "BudgetStatus",
    "HedgeDelay",
    # protocols for the callables users write
    "Backoff",
    "BreakDuration",
    "RetryPredicate",
    "ResultPredicate",
    "ErrorClassifier",
    "Matcher",
    "CostFunction",
    "SettleFunction",
)
