"""
Four processes, four replicas, one rate limit: together they admit its burst once. Without
shared limits the same four admit it four times. (The rate over time, the propagation delay of
a shared open and the faults are measured in ``benchmarks/shared.py``: timing is no test's.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from supervisor.integrations.redis._server import RedisServer

ROOT = Path(__file__).resolve().parents[3]
REPLICAS = 4


def run_replicas(url: str, namespace: str, mode: str) -> list[int]:
    command = [sys.executable, "-m", "tests.integrations.redis._worker", url, namespace]
    processes = [
        subprocess.Popen(
            [*command, str(REPLICAS), mode],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    admitted = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert 0 == process.returncode, err
        admitted.append(json.loads(out)["admitted"])
    return admitted


def test_four_processes_admit_one_burst_together(redis_server: RedisServer) -> None:
    """RateLimit(40, per=3600) shared by four processes: 40 calls in all, no more."""
    admitted = run_replicas(redis_server.url, "mp-shared", "shared")
    assert 40 == sum(admitted)
    assert all(n > 0 for n in admitted)


def test_four_local_limits_admit_four_bursts(redis_server: RedisServer) -> None:
    """The same four processes with local limits: 4 x 40."""
    assert [40] * REPLICAS == run_replicas(redis_server.url, "mp-local", "local")
