"""
The coredis client the sync actor uses: one per session (a session ends at the first failure).

What differs from ``coredis.Redis.from_url(url)``:

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
  (a context variable marks them); other coredis clients in the process log as before;
* on asyncio, unix sockets read and written through ``anyio.wait_readable`` /
  ``wait_writable`` (:class:`_UnixStream`), not through anyio's own unix stream. That stream
  (``_RawSocketMixin._wait_until_readable`` in ``anyio/_backends/_asyncio.py``, anyio 4.16
  and its main branch alike) registers ``Future.set_result`` itself as the socket's reader
  and removes the reader only in a done-callback, which asyncio runs one loop iteration
  later. When the read is cancelled (a tick's deadline, the supervisor leaving, coredis
  closing the connection) by a callback that runs in the same iteration as a reader handle
  the selector has already queued (the reply arrived just then), that handle calls
  ``set_result`` on the cancelled future: ``InvalidStateError`` in a loop callback, logged by
  asyncio, raised by anyio's pytest runner. asyncio's own ``sock_recv`` checks ``fut.done()``
  in its reader for this reason (CPython bpo-30064); anyio's ``wait_readable`` catches
  ``InvalidStateError`` and removes the reader as it returns. TCP (a transport) and trio are
  not affected, and keep anyio's streams.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import socket
import ssl
from collections import defaultdict
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit

import anyio
import anyio.abc
import anyio.lowlevel
import coredis
import coredis.retry
from coredis.cluster._discovery import DiscoveryService
from coredis.cluster._layout import ClusterLayout
from coredis.cluster._node import ClusterNodeLocation
from coredis.connection import BaseConnection, TCPLocation

from ._protocol import _reason, redirected

__all__ = ("CLUSTER_SUFFIX", "Client", "explain", "make_client", "plain_url")

#: What the sync actor talks through: one server's client, or a Redis Cluster's.
Client = coredis.Redis[Any] | coredis.RedisCluster[Any]

#: The URL scheme's suffix that asks for a Redis Cluster client (``redis+cluster://``).
CLUSTER_SUFFIX: Final = "+cluster"

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


_C = TypeVar("_C", bound=BaseConnection)

_CLOSING: dict[type[BaseConnection], type[BaseConnection]] = {}

#: True inside the run() of a connection of ours (its task, and the tasks it starts).
_OURS: contextvars.ContextVar[bool] = contextvars.ContextVar("ringfence_redis", default=False)
_ATTEMPT_FAILED: Final = "Connection attempt failed unexpectedly!"


def _keep(record: logging.LogRecord) -> bool:
    """The coredis logger's filter: drop our own connections' failed-attempt errors."""
    return not (record.msg == _ATTEMPT_FAILED and _OURS.get())


logging.getLogger("coredis").addFilter(_keep)


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio
        return False
    return True


class _UnixStream(anyio.abc.ByteStream):
    """
    anyio's asyncio unix stream *inner*, read and written through ``anyio.wait_readable`` and
    ``wait_writable`` (see the module docstring); *inner* still owns and closes the socket.
    One reader and one writer at a time, as coredis's connection has.
    """

    def __init__(self, inner: anyio.abc.SocketStream) -> None:
        self._inner = inner
        self._socket: socket.socket = inner.extra(anyio.abc.SocketAttribute.raw_socket)
        self._closing = False

    def _error(self, exc: OSError) -> anyio.ClosedResourceError | anyio.BrokenResourceError:
        return anyio.ClosedResourceError() if self._closing else anyio.BrokenResourceError(exc)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint()
        while True:
            try:
                data = self._socket.recv(max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._socket)
            except OSError as exc:
                raise self._error(exc) from exc
            else:
                if not data:
                    raise anyio.EndOfStream
                return data

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        view = memoryview(item)
        while view:
            try:
                sent = self._socket.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self._socket)
            except OSError as exc:
                raise self._error(exc) from exc
            else:
                view = view[sent:]

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        if not self._closing:
            self._closing = True
            anyio.notify_closing(self._socket)  # a wait in progress ends: ClosedResourceError
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes


def _closing(cls: type[_C]) -> type[_C]:
    """*cls*, closing its memory object streams whenever its ``run()`` ends."""
    known = _CLOSING.get(cls)
    if known is not None:
        return cast(type[_C], known)

    class Closing(cls):  # type: ignore[valid-type,misc]
        async def _connect(self) -> anyio.abc.ByteStream:
            stream: anyio.abc.ByteStream = await super()._connect()
            if isinstance(stream, anyio.abc.UNIXSocketStream) and _on_asyncio():
                return _UnixStream(stream)
            return stream

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
    return cast(type[_C], Closing)


@dataclasses.dataclass(unsafe_hash=True)
class _Node(ClusterNodeLocation):
    """A cluster node whose discovery client (``CLUSTER SLOTS``) has closing connections."""

    def as_client(self, **client_args: Any) -> coredis.Redis[Any]:
        client: coredis.Redis[Any] = super().as_client(**client_args)
        pool = client.connection_pool
        pool.connection_class = _closing(pool.connection_class)
        return client


class _Discovery(DiscoveryService):
    """
    coredis's discovery of a cluster's layout, asking each node through a client of closing
    connections (:class:`_Node`): it asks a node that does not answer as often as the sync
    actor reconnects, and each failed attempt would leave its streams to the collector.
    """

    async def get_cluster_layout(
        self,
    ) -> tuple[list[ClusterNodeLocation], defaultdict[int, list[ClusterNodeLocation]]]:
        nodes = self._startup_nodes  # the last layout's nodes (follow_cluster), asked in turn
        nodes[:] = [
            _Node(node.host, node.port, node.server_type, node.node_id, node.priority)
            for node in nodes
        ]
        return await super().get_cluster_layout()


class _ClusterPool(coredis.ClusterConnectionPool):
    """
    A cluster's connection pool that closes what it opens: its discovery's connections
    (:class:`_Discovery`) and the memory object stream pair coredis 6.9's ``ClusterLayout``
    creates for its errors and never closes (every cluster client, once collected, would
    warn like a failed connection does: see the module docstring), once left for good.
    """

    def __init__(self, startup_nodes: list[TCPLocation], **options: Any) -> None:
        super().__init__(startup_nodes, **options)
        _close_layout(self.cluster_layout)
        discovery = _Discovery(
            startup_nodes=self.startup_nodes,
            skip_full_coverage_check=options.get("skip_full_coverage_check", False),
            **self.connection_kwargs,
        )
        self.cluster_layout = ClusterLayout(discovery, error_threshold=2)  # coredis's own

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc_val, exc_tb)
        finally:
            if self._counter == 0:
                _close_layout(self.cluster_layout)


def _close_layout(layout: ClusterLayout) -> None:
    for stream in getattr(layout, "_error_stream", ()):
        stream.close()


def plain_url(url: str) -> tuple[str, bool]:
    """*url* with a ``+cluster`` scheme suffix taken off, and whether it had one."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower().endswith(CLUSTER_SUFFIX):
        return scheme[: -len(CLUSTER_SUFFIX)] + sep + rest, True
    return url, False


def make_client(url: str, *, timeout: float, client_name: str, cluster: bool = False) -> Client:
    """
    A client for *url*: every read and connect bounded by *timeout*, no retries. *cluster*
    (or a ``redis+cluster://`` URL): a ``coredis.RedisCluster`` that learns the cluster's
    layout from the node in the URL and follows its redirections (MOVED, ASK), up to four
    connections per node.
    """
    url, suffixed = plain_url(url)
    no_retries = coredis.retry.NoRetryPolicy()
    if cluster or suffixed:
        parts = urlsplit(url)
        nodes = _ClusterPool.from_url(
            url,
            # given, or coredis builds it from the URL in a form it deprecates itself
            startup_nodes=[TCPLocation(parts.hostname or "localhost", parts.port or 6379)],
            stream_timeout=timeout,
            connect_timeout=timeout,
            client_name=client_name,
            max_connections=4,
            max_connections_per_node=True,
            # Every key of a namespace is in one slot: a slot no node serves is said by the
            # tick that needs it (CLUSTERDOWN). And no CONFIG GET, which managed clusters and
            # ACL users often may not run (coredis then warns at every connection).
            skip_full_coverage_check=True,
        )
        nodes.connection_class = _closing(nodes.connection_class)
        return coredis.RedisCluster(connection_pool=nodes, retry_policy=no_retries)
    pool: coredis.ConnectionPool[Any] = coredis.ConnectionPool.from_url(
        url,
        stream_timeout=timeout,
        connect_timeout=timeout,
        client_name=client_name,
        max_connections=4,
    )
    pool.connection_class = _closing(pool.connection_class)
    return coredis.Redis(connection_pool=pool, retry_policy=no_retries)


def _chain(exc: BaseException) -> list[BaseException]:
    """*exc* and what caused it, or happened while handling what caused it (no cycles)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def explain(exc: BaseException, where: str, *, connecting: bool) -> str | None:
    """
    What a failure to use Redis at *where* (redacted) means when the kind of server is the
    problem, or None: a Redis Cluster reached without cluster mode (``MOVED``/``ASK``), cluster
    mode on a server that is not one, or a TLS connection that did not come up (a plain server
    behind ``rediss://``, a certificate refused). *exc*: the leaf of what was raised;
    *connecting*: no command of this client has been answered yet (a deadline that passed
    then, during a TLS handshake, is the handshake's).
    """
    if isinstance(exc, coredis.exceptions.AskError):  # MovedError is one too
        return redirected(where, _reason(exc))
    chain = _chain(exc)
    if isinstance(exc, coredis.exceptions.RedisClusterError) and any(
        "cluster support disabled" in str(cause) for cause in chain
    ):
        return (
            f"Redis at {where} is not a Redis Cluster (cluster support disabled): use a"
            " redis:// (or rediss://) URL without cluster=True"
        )
    # coredis says "Unable to establish a connection" (ConnectionError) when its own connect
    # deadline passes (the TLS error that was waiting in its chain), or the cluster's
    # discovery reached no node. The caller's deadline may pass first: its TimeoutError
    # carries nothing of the connection's task, so a TLS URL without an answer yet is all
    # there is to go by. (Past the connection, every TLS read that waits handles an
    # SSLWantReadError: no sign of anything.)
    over_tls = where.startswith("rediss")
    tls = [cause for cause in chain if isinstance(cause, ssl.SSLError)]
    failed = isinstance(
        exc, coredis.exceptions.ConnectionError | coredis.exceptions.RedisClusterError
    )
    certificates = (
        "; a server that asks for client certificates (tls-auth-clients) needs"
        " ?ssl_certfile=...&ssl_keyfile=..., signed by a CA it trusts"
    )
    if failed and tls:
        error = tls[-1]
    elif connecting and over_tls and isinstance(exc, TimeoutError):
        error = ssl.SSLWantReadError()
    elif (
        connecting
        and over_tls
        and failed
        and any(isinstance(cause, ConnectionResetError | BrokenPipeError) for cause in chain)
    ):
        # TLS 1.3: the server's refusal of this replica's certificate (or its lack of one)
        # may come after the client's side of the handshake ended, as a reset
        return (
            f"Redis at {where} closed the TLS connection before it answered"
            f" ({_reason(chain[-1])}){certificates}"
        )
    else:
        return None
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"Redis at {where} presented a TLS certificate this replica refuses"
            f" ({error.verify_message}): give the CA that signed it"
            " (?ssl_ca_certs=/path/ca.pem), or check the host name"
        )
    if isinstance(error, ssl.SSLWantReadError | ssl.SSLWantWriteError):
        what = (
            "did not complete: no TLS answer came (a server without TLS on that port, or one"
            " that stopped answering)"
        )
    else:
        what = f"failed ({_reason(error)})"
    return (
        f"the TLS handshake with Redis at {where} {what}; a rediss:// URL needs a server with"
        f" TLS on that port (tls-port), redis:// a plain one{certificates}"
    )
