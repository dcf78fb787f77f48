"""
Shared state for the replicas of a service, on Redis (``pip install 'ringfence[redis]'``).

    from supervisor import Supervisor
    from supervisor.integrations.redis import RedisShared

    supervisor = Supervisor(shared=RedisShared("redis://redis:6379/0", "my-service"))

Replicas with the same namespace share each rate limit (one GCRA in Redis; each replica
leases a few turns at a time, so no call ever waits for Redis), the pause a 429's Retry-After
asks for, the decision to open a breaker (from the failure ratio of all live replicas
together), and operator ``isolate``/``reset`` with ``scope="cluster"``. While Redis cannot be
reached every replica keeps its local protection, with its rate limits split by the last known
number of replicas (at least ``expected_replicas``), and ``health()`` says ``degraded`` and why.

Built on coredis (anyio: asyncio and trio). See :class:`RedisShared` (``_shared.py``) for the
settings, ``_sync.py`` for how a tick works, ``_protocol.py`` for what the scripts are given
and what their answers mean; ``lua/`` holds the scripts Redis runs.
"""

from __future__ import annotations

try:
    import coredis  # noqa: F401
except ModuleNotFoundError as error:  # pragma: no cover - exercised only without the extra
    if error.name != "coredis":
        raise
    msg = "supervisor.integrations.redis needs coredis: pip install 'ringfence[redis]'"
    raise ImportError(msg) from error

from ._shared import RedisShared, SharedStateError

__all__ = ("RedisShared", "SharedStateError")

for _exported in (RedisShared, SharedStateError):
    _exported.__module__ = __name__
del _exported
