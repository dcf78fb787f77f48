"""
ringfence supervisor: keeps an async service alive when its dependencies fail, slow down or
flood. One actor per dependency owns its breaker, counters, latencies and bulkhead; callers
send it calls with ``await supervisor.call(name, ...)``. Policies live in :mod:`policies`.
"""

from __future__ import annotations

from ._config import Config, ConfigError, load_config
from ._errors import (
    AttemptTimeout,
    BreakerOpen,
    BulkheadFull,
    DeadlineExceeded,
    DependencyCrashed,
    RateLimited,
    SupervisorClosed,
    SupervisorError,
    UnknownDependency,
)
from ._events import (
    ActorCrashed,
    BreakerTransition,
    CallRejected,
    ChaosInjected,
    DependencyPaused,
    Event,
    EventStream,
    RetryBudgetExhausted,
    RetryScheduled,
)
from ._status import DependencyStatus, Health, HealthStatus
from ._stream import Stream
from ._supervisor import Dependency, Supervisor

__all__ = (
    "Supervisor",
    "Dependency",
    "Stream",
    "DependencyStatus",
    "Health",
    "HealthStatus",
    "SupervisorError",
    "BreakerOpen",
    "BulkheadFull",
    "AttemptTimeout",
    "DeadlineExceeded",
    "UnknownDependency",
    "SupervisorClosed",
    "DependencyCrashed",
    "RateLimited",
    # events
    "Event",
    "BreakerTransition",
    "RetryScheduled",
    "CallRejected",
    "RetryBudgetExhausted",
    "DependencyPaused",
    "ChaosInjected",
    "ActorCrashed",
    "EventStream",
    # configuration
    "Config",
    "ConfigError",
    "load_config",
)

# Show `supervisor.BreakerOpen` in reprs and tracebacks, not `supervisor._errors.BreakerOpen`
# (httpx and trio's fixup_module_metadata do the same).
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("supervisor."):
        _obj.__module__ = "supervisor"
del _name, _obj
