"""
A private ``redis-server`` for the tests, the benchmarks and ``ringfence demo --replicas``.

It runs in a temporary directory of its own, listens on a unix socket there (and, if asked, on
``127.0.0.1`` and a free port; never on another interface), keeps nothing on disk, and is
started in the foreground as a child process. Readiness comes through systemd's notify
protocol (``--supervised systemd``: the server sends ``READY=1`` to ``NOTIFY_SOCKET`` once it
accepts connections), so starting waits for an answer instead of polling. The faults the
benchmarks inject are plain signals: ``kill()`` (SIGKILL), ``pause()``/``resume()``
(SIGSTOP/SIGCONT), and ``start()`` again brings a killed server back at the same address,
empty, like a restart without persistence.

:class:`RedisCluster` starts three such servers with ``--cluster-enabled yes`` and joins them
into a Redis Cluster with ``redis-cli --cluster create`` (no replicas), on ``127.0.0.1``.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Final, final

__all__ = ("INSTALL_HINT", "RedisCluster", "RedisServer", "find_redis_server")

#: What to tell someone whose machine has no redis-server.
INSTALL_HINT: Final = (
    "redis-server was not found: install it (Debian/Ubuntu: `sudo apt-get install redis-server`;"
    " macOS: `brew install redis`) or put it on PATH"
)

_CANDIDATES: Final = (
    "/usr/bin/redis-server",
    "/usr/sbin/redis-server",
    "/usr/local/bin/redis-server",
)


def find_redis_server() -> str | None:
    """The ``redis-server`` executable's path, or None."""
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in _CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def find_redis_cli() -> str | None:
    """The ``redis-cli`` executable's path (Debian: package redis-tools), or None."""
    found = shutil.which("redis-cli")
    if found:
        return found
    for candidate in _CANDIDATES:
        cli = candidate.replace("redis-server", "redis-cli")
        if os.access(cli, os.X_OK):
            return cli
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@final
class RedisServer:
    """
    A redis-server of our own. Use it as a context manager, or ``start()`` / ``stop()``.

    Args:
        tcp: also listen on ``127.0.0.1`` and a free port (``url`` is then the TCP one).
        args: more ``redis-server`` arguments (``["--rename-command", "TIME", ""]``, say).
        executable: the ``redis-server`` to run; default: found on PATH.

    Raises:
        FileNotFoundError: no redis-server (the message says how to install one).
    """

    def __init__(
        self, *, tcp: bool = False, args: tuple[str, ...] = (), executable: str | None = None
    ) -> None:
        found = executable or find_redis_server()
        if found is None:
            raise FileNotFoundError(INSTALL_HINT)
        self.executable = found
        self.directory = Path(tempfile.mkdtemp(prefix="ringfence-redis-"))
        self.socket_path = self.directory / "redis.sock"
        self.port = _free_port() if tcp else None
        self.args = tuple(args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` with ``tcp=True``, else ``unix://<dir>/redis.sock``."""
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and return once it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            msg = "the server is already running"
            raise RuntimeError(msg)
        notify_path = self.directory / "notify.sock"
        with contextlib.suppress(FileNotFoundError):
            notify_path.unlink()
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            notify.bind(str(notify_path))
            command = [
                self.executable,
                "--port",
                str(self.port or 0),
                "--bind",
                "127.0.0.1",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--supervised",
                "systemd",
                "--logfile",
                str(self.directory / "redis.log"),
                *self.args,
            ]
            env = dict(os.environ, NOTIFY_SOCKET=str(notify_path))
            self.process = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
            )
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if self.process.poll() is not None or left <= 0:
                    self.kill()
                    msg = f"redis-server did not start: {self.log()[-2000:]}"
                    raise RuntimeError(msg)
                ready, _, _ = select.select([notify], [], [], min(left, 0.25))
                if ready and b"READY=1" in notify.recv(4096):
                    return
        finally:
            notify.close()
            with contextlib.suppress(FileNotFoundError):
                notify_path.unlink()

    def log(self) -> str:
        """The server's log so far."""
        try:
            return (self.directory / "redis.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _signal(self, number: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(number)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections and answers nothing."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, and wait for the process to end (its data is gone)."""
        if self.process is not None:
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self._signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@final
class RedisCluster:
    """
    A Redis Cluster of our own: *nodes* primaries (redis-server ``--cluster-enabled yes``, each
    a :class:`RedisServer` on ``127.0.0.1``, its cluster bus on another free port) joined by
    ``redis-cli --cluster create``. ``url`` is the first node's, ``urls`` every node's.

    Raises:
        FileNotFoundError: no redis-server or no redis-cli (the message says how to install).
    """

    def __init__(self, nodes: int = 3) -> None:
        cli = find_redis_cli()
        if cli is None:
            raise FileNotFoundError(INSTALL_HINT.replace("redis-server was", "redis-cli was"))
        self.cli = cli
        self.nodes = [
            RedisServer(
                tcp=True,
                args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    str(_free_port()),
                ),
            )
            for _ in range(nodes)
        ]

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{node.port}" for node in self.nodes]

    @property
    def url(self) -> str:
        return self.urls[0]

    def _cli(self, *args: str, timeout: float) -> str:
        done = subprocess.run(
            [self.cli, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            msg = f"redis-cli {' '.join(args)} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"
            raise RuntimeError(msg)
        return done.stdout

    def start(self, timeout: float = 60.0) -> None:
        """Start the nodes and join them; return once every node says the cluster is ok."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        self._cli(
            "--cluster",
            "create",
            *addresses,
            "--cluster-replicas",
            "0",
            "--cluster-yes",
            timeout=timeout,
        )
        # create returns once the slots are assigned and the nodes agree on them; each node
        # says cluster_state:ok once it has heard from the others (gossip: milliseconds).
        for node in self.nodes:
            while "cluster_state:ok" not in self._cli(
                "-p", str(node.port), "cluster", "info", timeout=timeout
            ):
                if time.monotonic() > deadline:
                    msg = f"the cluster on {', '.join(addresses)} did not come up"
                    raise RuntimeError(msg)
                time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
