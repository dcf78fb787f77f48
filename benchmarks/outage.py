"""
How much do replicas without Redis over-admit (issue 22, item 2)?

Four saturated replica processes share ``RateLimit(100, per=1)`` for 10 s (sync_interval
0.25 s), with and without ``expected_replicas=4``, in two cases:

1. **started during an outage**: Redis is unreachable for the whole run (a port nobody
   listens on); every replica runs on its local fallback from its first call;
2. **partition**: each replica reaches a real redis-server through a TCP proxy of its own;
   2 s into the run the proxies of *k* replicas (1, then 3) start dropping everything both
   ways (a blackhole: the cut-off replicas' ticks time out), for the rest of the run.

The figure is what the fleet admitted against what one limit allows over the same span:
``rate x seconds + burst`` for the whole run (case 1), and ``rate x seconds`` over the
partition (case 2, from the cut to the end; the shared bucket was saturated before it).

    python -m benchmarks.outage [--quick]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio

from ._harness import Table, header, out_dir

__all__ = ("run",)

ROOT = Path(__file__).resolve().parents[1]
REPLICAS = 4
RATE = 100.0
INTERVAL = 0.25


# ==============================================================================================
# The worker: one replica, in a process of its own


async def _ok() -> str:
    return "ok"


async def _worker(config: dict[str, Any]) -> dict[str, Any]:
    from policies import RateLimit
    from supervisor import RateLimited, Supervisor
    from supervisor.integrations.redis import RedisShared

    shared = RedisShared(
        config["url"],
        config["namespace"],
        INTERVAL,
        expected_replicas=config["expected"],
    )
    sup = Supervisor(shared=shared)
    sup.register("llm", _ok, rate_limit=RateLimit(RATE, per=1))
    admitted: list[float] = []
    start, end = config["start"], config["start"] + config["duration"]

    async def caller() -> None:
        while time.time() < end:
            try:
                await sup.call("llm")
                admitted.append(time.time() - start)
            except RateLimited:
                await anyio.sleep(0.002)

    async with sup:
        with anyio.fail_after(config["duration"] + 60):
            if config["meet"]:
                while (shared.cluster_status()["live_replicas"] or 0) < REPLICAS:
                    await shared.wait_tick()
            await anyio.sleep(max(0.0, start - time.time()))
            async with anyio.create_task_group() as tasks:
                for _ in range(4):
                    tasks.start_soon(caller)
    return {"admitted": admitted}


def _fleet(
    urls: list[str], expected: int | None, duration: float, *, meet: bool, start: float
) -> list[list[float]]:
    processes = []
    for url in urls:
        config = {
            "url": url,
            "namespace": f"outage-{start}",
            "expected": expected,
            "start": start,
            "duration": duration,
            "meet": meet,
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.outage", "--worker", json.dumps(config)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        if process.returncode != 0:
            msg = f"a worker failed ({process.returncode}): {err[-3000:]}"
            raise RuntimeError(msg)
        results.append(json.loads(out.strip().splitlines()[-1])["admitted"])
    return results


# ==============================================================================================
# A TCP proxy that can be cut (a blackhole: nothing is forwarded either way, nothing closed)


class _Proxy:
    def __init__(self, target: str) -> None:
        self.target = target  # the redis-server's unix socket
        self.cut = False
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.cut:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()


# ==============================================================================================


def _started_during_outage(duration: float, expected: int | None) -> dict[str, Any]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    urls = [f"redis://127.0.0.1:{port}/0"] * REPLICAS
    admitted = _fleet(urls, expected, duration, meet=False, start=time.time() + 5.0)
    total = sum(1 for r in admitted for t in r if 0 <= t < duration)
    first = [sum(1 for t in r if t < 0.1) for r in admitted]
    return {
        "admitted": total,
        "bound": RATE * duration + RATE,
        "first_100ms": first,
    }


def _partition(duration: float, expected: int | None, cut: int) -> dict[str, Any]:
    from supervisor.integrations.redis._server import RedisServer

    at = 2.0
    with RedisServer() as server:
        proxies = [_Proxy(str(server.socket_path)) for _ in range(REPLICAS)]
        start = time.time() + 5.0

        def cutter() -> None:
            time.sleep(max(0.0, start + at - time.time()))
            for proxy in proxies[:cut]:
                proxy.cut = True

        thread = threading.Thread(target=cutter, daemon=True)
        thread.start()
        admitted = _fleet([p.url for p in proxies], expected, duration, meet=True, start=start)
        for proxy in proxies:
            proxy.close()
    span = duration - at
    during = [sum(1 for t in r if at <= t < duration) for r in admitted]
    return {"admitted": sum(during), "bound": RATE * span, "per_replica": during, "cut": cut}


def run(*, quick: bool) -> tuple[str, dict[str, Any]]:
    duration = 6.0 if quick else 10.0
    data: dict[str, Any] = {"outage": {}, "partition": {}}
    for expected in (None, REPLICAS):
        data["outage"][str(expected)] = _started_during_outage(duration, expected)
        for cut in (1, 3):
            data["partition"][f"{expected}/{cut}"] = _partition(duration, expected, cut)
    table = Table(["case", "expected_replicas", "admitted", "of what one limit allows"])
    for expected in (None, REPLICAS):
        figures = data["outage"][str(expected)]
        table.add(
            f"{REPLICAS} replicas started during an outage ({duration:g} s)",
            expected,
            f"{figures['admitted']:,} (first 100 ms: {figures['first_100ms']})",
            f"{figures['admitted'] / figures['bound']:.0%}",
        )
        for cut in (1, 3):
            figures = data["partition"][f"{expected}/{cut}"]
            table.add(
                f"{cut} of {REPLICAS} cut off (blackhole) for {duration - 2:g} s",
                expected,
                f"{figures['admitted']:,} ({' / '.join(map(str, figures['per_replica']))})",
                f"{figures['admitted'] / figures['bound']:.0%}",
            )
    text = (
        header("replicas without Redis: over-admission (ringfence[redis])", "asyncio")
        + f"- {REPLICAS} saturated worker processes, RateLimit(100, per=1),"
        f" sync_interval {INTERVAL:g} s{' (quick run)' if quick else ''}; outage: the whole run"
        " against a closed port, 'of' rate x duration + burst; partition: cut 2 s in, 'of'"
        " rate x the partition's span\n\n" + table.markdown()
    )
    return text, data


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outage")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(anyio.run(_worker, json.loads(args.worker))))
        return
    text, data = run(quick=args.quick)
    print(text)
    directory = out_dir(args.quick)
    (directory / "outage.md").write_text(text)
    (directory / "outage.json").write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
