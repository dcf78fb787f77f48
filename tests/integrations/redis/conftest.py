"""
Tests of the shared state on a real redis-server (Debian's), each test with a server of its
own: a child process in a temporary directory, on a unix socket there (or 127.0.0.1 and a free
port), never a system service. Without redis-server these tests skip and say how to install
it; under CI=true they fail instead, since CI must run them (.ci/run installs it).

The tests run on asyncio and on trio. trio runs on its real clock here: virtual time would
jump while a reply from Redis is on its way, and every deadline would fire at once. So nothing
is timed: tests wait for the sync actor's next tick (``RedisShared.wait_tick()``) or for an
event, under a hang guard, never for a sleep.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from supervisor.integrations.redis._server import (
    INSTALL_HINT,
    RedisCluster,
    RedisServer,
    _free_port,
    find_redis_cli,
    find_redis_server,
)

#: Hang guard, real seconds (both backends run on real time here).
HANG = float(os.environ.get("RINGFENCE_TEST_HANG", "30"))
#: Sync interval of the tests' replicas: short, so a test waits for few real milliseconds.
INTERVAL = 0.02


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Both backends, on real time (see the module docstring)."""
    return str(request.param)


def _missing(hint: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {hint}", pytrace=False)
    pytest.skip(hint)


def need_redis_server(*, cli: bool = False, openssl: bool = False) -> None:
    """
    Skip (fail under CI=true) without a redis-server to run, and with *cli* a redis-cli (to
    join a cluster), with *openssl* the openssl command (the TLS tests' certificates).
    """
    apt = "install it (Debian/Ubuntu: `sudo apt-get install"
    if find_redis_server() is None:
        _missing(INSTALL_HINT)
    if cli and find_redis_cli() is None:
        _missing(f"redis-cli was not found: {apt} redis-tools`)")
    if openssl and shutil.which("openssl") is None:
        _missing(f"openssl was not found: {apt} openssl`)")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a unix socket, started for this test."""
    need_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_tcp() -> Iterator[RedisServer]:
    """A private redis-server on 127.0.0.1 and a free port (and a unix socket)."""
    need_redis_server()
    with RedisServer(tcp=True) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster_session() -> Iterator[RedisCluster]:
    """One 3-node Redis Cluster for the session (joining one takes seconds)."""
    need_redis_server(cli=True)
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(redis_cluster_session: RedisCluster) -> RedisCluster:
    """A 3-node Redis Cluster (the session's: tests keep to namespaces of their own)."""
    return redis_cluster_session


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    A CA, a server certificate it signed (localhost, 127.0.0.1) and a client certificate it
    signed, as ca.crt, server.crt/.key and client.crt/.key in one directory.
    """
    need_redis_server(openssl=True)
    folder = tmp_path_factory.mktemp("tls")
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_name = ["-subj", "/CN=ringfence-test-ca"]
    names = ["-extfile", "san.ext"]
    sign = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2"]
    for command in (
        ["req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", *ca_name],
        ["req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", "server.csr", *sign, "-out", "server.crt", *names],
        ["req", *key, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=replica"],
        ["x509", "-req", "-in", "client.csr", *sign, "-out", "client.crt"],
    ):
        subprocess.run(["openssl", *command], cwd=folder, check=True, capture_output=True)
    return folder


@pytest.fixture(params=["no", "yes"], ids=["tls", "mutual-tls"])
def redis_tls(request: pytest.FixtureRequest, tls_files: Path) -> Iterator[tuple[str, str]]:
    """
    A private redis-server with TLS only (on 127.0.0.1 and a free port), asking for client
    certificates or not: (its rediss:// URL, "no"/"yes" for tls-auth-clients).
    """
    port = _free_port()
    args = ("--tls-port", str(port), "--tls-ca-cert-file", str(tls_files / "ca.crt"))
    args += ("--tls-cert-file", str(tls_files / "server.crt"))
    args += ("--tls-key-file", str(tls_files / "server.key"))
    args += ("--tls-auth-clients", request.param)
    with RedisServer(args=args):
        yield f"rediss://localhost:{port}/0", request.param


@contextmanager
def guard(seconds: float = HANG) -> Iterator[None]:
    """Fail, instead of hanging, when the body has not finished in *seconds*."""
    with anyio.fail_after(seconds):
        yield
