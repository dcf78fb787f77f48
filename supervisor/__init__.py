"""
ringfence supervisor: keeps an async service alive when its dependencies fail, slow down or
flood. One actor per dependency owns its breaker, counters, latencies and bulkhead; callers
send it calls with ``await supervisor.call(name, ...)``. Policies live in :mod:`policies`.
"""

from __future__ import annotations

import logging as _logging

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
    HedgeStarted,
    LimitChanged,
    RetryBudgetExhausted,
    RetryScheduled,
)
from ._status import DependencyStatus, Health, HealthStatus
from ._stream import Stream
from ._supervisor import Dependency, Supervisor

#: The ringfence distribution's version (pyproject.toml reads it from here).
__version__ = "0.1.0"

# A library prints nothing unless the application configures logging: without a handler of
# its own, the "ringfence" logger's warnings would reach stderr through logging.lastResort.
_logging.getLogger("ringfence").addHandler(_logging.NullHandler())

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
    "LimitChanged",
    "ChaosInjected",
    "ActorCrashed",
    "HedgeStarted",
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
