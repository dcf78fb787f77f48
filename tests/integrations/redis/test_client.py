"""
The coredis client the sync actor uses (``_client.make_client``), on a real redis-server.

anyio's asyncio unix-socket stream waits for a read by registering ``Future.set_result``
itself as the socket's reader and removes that reader only in a done-callback, one loop
iteration later. A reader handle the selector already queued in the iteration where the read
is cancelled then calls ``set_result`` on a cancelled future: ``InvalidStateError`` in a loop
callback (which anyio's pytest runner raises in whatever test runs then). The race is made
deterministic here: the reply is in the socket before the iteration starts, and the
cancellation is a callback queued ahead of the reader.
"""

from __future__ import annotations

import asyncio
import select
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from supervisor.integrations.redis._client import make_client
from supervisor.integrations.redis._server import RedisServer

from .conftest import HANG, guard

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the race is in asyncio's loop order
async def test_a_read_cancelled_as_its_reply_arrives_is_no_loop_error(
    redis_server: RedisServer,
) -> None:
    """The connection's reader task cancelled in the iteration its data becomes readable: no
    exception in a loop callback, and the connection closes cleanly."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        with guard():
            client = make_client(redis_server.unix_url, timeout=HANG, client_name="test")
            async with client:
                assert await client.ping()
                (connection,) = client.connection_pool._online_connections
                await anyio.wait_all_tasks_blocked()  # its reader task waits for data
                raw = connection.stream.extra(anyio.abc.SocketAttribute.raw_socket)
                raw.send(b"PING\r\n")  # past coredis: a reply nobody waits for
                readable, _, _ = select.select([raw], [], [], HANG)
                assert readable, "redis-server did not answer"
                # Queued now, so it runs in the next iteration before the reader handle that
                # iteration's select queues for the reply.
                loop.call_soon(connection.invalidate, "test")
                for _ in range(3):
                    await anyio.lowlevel.checkpoint()
                assert not connection.usable
    finally:
        loop.set_exception_handler(previous)
    assert [] == [context.get("exception") or context["message"] for context in errors]
