"""What every benchmark needs: its own Redis, API and workers on loopback, resource readings,
subprocess load clients, and result tables."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from backend.store.datastore import Store
from config.settings import Settings
from devstack.redis_server import RedisCluster, RedisServer
from devstack.services import ROOT, Api, Worker

RESULTS = ROOT / "bench" / "results"
QUIET = {
    "LOG_LEVEL": "WARNING",
    "RATE_LIMIT_CHAT_PER_MINUTE": "0",
    "RATE_LIMIT_INTERVIEW_PER_MINUTE": "0",
    "RATE_LIMIT_AUTH_PER_MINUTE": "0",
}


class Stack:
    """A Redis and the processes of one benchmark; stopped as a whole."""

    def __init__(self, *, cluster: bool = False) -> None:
        """One Redis, or with `cluster` a local Redis Cluster of three masters."""
        self.cluster = cluster
        self.redis = RedisCluster().start() if cluster else RedisServer(None, "--maxclients", "20000").start()
        self.env = {**QUIET, "REDIS_CLUSTER": "true"} if cluster else QUIET
        self.services: list[Api | Worker] = []

    def api(self, **env: str) -> Api:
        api = Api(self.redis.url, **self.env, **env)
        self.services.append(api)
        return api.start()

    def worker(self, **env: str) -> Worker:
        worker = Worker(self.redis.url, **self.env, **env)
        self.services.append(worker)
        return worker.start()

    def redis_pids(self) -> list[int]:
        """The redis-server processes (every node of a cluster)."""
        servers = self.redis.live if isinstance(self.redis, RedisCluster) else [self.redis]
        return [server.process.pid for server in servers if server.process is not None]

    def store(self, **settings: Any) -> Store:
        return Store(Settings(REDIS_URL=self.redis.url, REDIS_CLUSTER=self.cluster, **settings))

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop(timeout=20)
        self.redis.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Sampled:
    """With BENCH_PYSPY set to a py-spy binary (a profiler, not a dependency: `pip install py-spy`
    anywhere), each process of `pids` is sampled for `seconds` while a run goes on; the collapsed
    stacks land in bench/results/<name>-<role>-<pid>.txt (`python -m bench.stacks FILE` sums them)."""

    def __init__(self, name: str, pids: dict[str, list[int]], seconds: float) -> None:
        self.recorders: list[subprocess.Popen[bytes]] = []
        spy = os.environ.get("BENCH_PYSPY")
        if not spy:
            return
        RESULTS.mkdir(parents=True, exist_ok=True)
        for role, group in pids.items():
            for pid in group:
                out = RESULTS / f"{name}-{role}-{pid}.txt"
                command = [spy, "record", "--format", "raw", "--nonblocking", "-r", "200"]
                command += ["-d", str(int(seconds)), "-p", str(pid), "-o", str(out)]
                self.recorders.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def wait(self) -> None:
        for recorder in self.recorders:
            recorder.wait(120)


def run_json_process(module: str, spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start `python -m module SPEC RESULT`; read the result with `result_of`."""
    spec_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(spec, spec_file)
    spec_file.close()
    result_file = spec_file.name.replace(".json", ".result.json")
    process = subprocess.Popen(
        [sys.executable, "-m", module, spec_file.name, result_file],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    process.result_file = result_file  # type: ignore[attr-defined]
    return process


def result_of(process: subprocess.Popen[bytes], timeout: float = 300) -> dict[str, Any]:
    process.wait(timeout)
    return json.loads(Path(process.result_file).read_text())  # type: ignore[attr-defined]


async def metric(api: Api, name: str) -> float:
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
        for line in (await http.get("/metrics")).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def wait_for_metric(api: Api, name: str, value: float, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while await metric(api, name) < value:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not reach {value}")
        await asyncio.sleep(0.2)


def table(title: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return title
    columns = list(rows[0])
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = [
        title,
        "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def save(name: str, data: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path
