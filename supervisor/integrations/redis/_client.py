"""
The coredis client the sync actor uses: one per session (a session ends at the first failure).

Two things differ from ``coredis.Redis.from_url(url)``:

* no retries inside coredis (``NoRetryPolicy``): the sync actor has its own deadline and
  backoff, and a retry hidden under the deadline would only make the deadline lie;
* connections that close what they opened. coredis 6.9 creates a connection's six memory
  object streams in ``__init__`` and closes them only once the connection was established: a
  connection attempt that fails (Redis down, the usual case here) leaves them to the garbage
  collector, which warns (``ResourceWarning: Unclosed <MemoryObjectSendStream>``) and, under
  ``-W error``, raises in whatever code runs then. The subclasses below close them however
  ``run()`` ends;
* quiet connection attempts: coredis logs every connection attempt that fails during the
  handshake at ERROR, with a traceback (``Connection attempt failed unexpectedly!``), and a
  server that hangs (SIGSTOP, overload) makes one at every reconnect. The sync actor already
  says so once (``ringfence.shared_degraded``, with the reason) and ``health()`` says it while
  it lasts, so a filter on the ``coredis`` logger drops that line for these connections only
  (a context variable marks them); other coredis clients in the process log as before.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any, Final

import anyio
import anyio.abc
import coredis
import coredis.retry
from coredis.connection import BaseConnection

__all__ = ("make_client",)

_STREAMS = (
    "_write_buffer_in",
    "_write_buffer_out",
    "_push_message_buffer_in",
    "_push_message_buffer_out",
    "_streamed_message_buffer_in",
    "_streamed_message_buffer_out",
)


def _close_streams(connection: BaseConnection) -> None:
    for name in _STREAMS:
        stream = getattr(connection, name, None)
        if stream is not None:
            stream.close()


_CLOSING: dict[type[BaseConnection], type[BaseConnection]] = {}

#: True inside the run() of a connection of ours (its task, and the tasks it starts).
_OURS: contextvars.ContextVar[bool] = contextvars.ContextVar("ringfence_redis", default=False)
_ATTEMPT_FAILED: Final = "Connection attempt failed unexpectedly!"


def _keep(record: logging.LogRecord) -> bool:
    """The coredis logger's filter: drop our own connections' failed-attempt errors."""
    return not (record.msg == _ATTEMPT_FAILED and _OURS.get())


logging.getLogger("coredis").addFilter(_keep)


def _closing(cls: type[BaseConnection]) -> type[BaseConnection]:
    """*cls*, closing its memory object streams whenever its ``run()`` ends."""
    known = _CLOSING.get(cls)
    if known is not None:
        return known

    class Closing(cls):  # type: ignore[valid-type,misc]
        async def run(
            self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
        ) -> None:
            token = _OURS.set(True)
            try:
                await super().run(task_status=task_status)
            finally:
                _OURS.reset(token)
                _close_streams(self)

    Closing.__name__ = Closing.__qualname__ = f"Closing{cls.__name__}"
    _CLOSING[cls] = Closing
    return Closing


def make_client(url: str, *, timeout: float, client_name: str) -> coredis.Redis[Any]:
    """A client for *url*: every read and connect bounded by *timeout*, no retries."""
    pool: coredis.ConnectionPool[Any] = coredis.ConnectionPool.from_url(
        url,
        stream_timeout=timeout,
        connect_timeout=timeout,
        client_name=client_name,
        max_connections=4,
    )
    pool.connection_class = _closing(pool.connection_class)
    return coredis.Redis(connection_pool=pool, retry_policy=coredis.retry.NoRetryPolicy())
