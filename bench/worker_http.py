"""B7: one worker process as a deployment runs it, its `openai` client streaming every reply
over HTTP from an OpenAI-compatible server on loopback (bench/llm_server.py: 20 tokens/s,
200-token replies), N concurrent replies raised until the publish p99 passes 20 ms.

Per level: the worker's CPU per token all in, split into the LLM client, the Redis writes, the
worker's own code and the event loop by a sampling profiler in the worker
(bench/profiled_worker.py). At the first level the LLM client is also measured alone, in a
process of its own (bench/cost.py), on the worker's raw path and on the package's parsed
stream (a pydantic object per chunk: the worker's path before B7).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness import ROOT, Stack, cpu_seconds
from bench.worker import counter, start_replies
from devstack.ports import free_port, wait_for_port
from devstack.services import Worker

TOKENS_PER_SECOND = 20
TOKENS = 200
SETTLE, WINDOW = 3.0, 5.0
PARTS = ("client", "writes", "own", "loop")


def buckets(text: str, name: str) -> list[tuple[float, float]]:
    found = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            bound = line.split('le="')[1].split('"')[0]
            found.append((float("inf") if bound == "+Inf" else float(bound), float(line.split()[-1])))
    return found


def window_quantile(before: str, after: str, name: str, quantile: float) -> float:
    """The quantile (seconds) of a Prometheus histogram's observations between two scrapes."""
    counts = [(bound, a - b) for (bound, a), (_, b) in zip(buckets(after, name), buckets(before, name), strict=True)]
    total = counts[-1][1]
    if not total:
        return float("nan")
    target, previous_bound, previous_count = quantile * total, 0.0, 0.0
    for bound, count in counts:
        if count >= target:
            if bound == float("inf"):
                return previous_bound
            return previous_bound + (bound - previous_bound) * (target - previous_count) / max(
                count - previous_count, 1
            )
        previous_bound, previous_count = bound, count
    return previous_bound


def llm_server() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.llm_server", str(port), str(TOKENS_PER_SECOND), str(TOKENS)], cwd=ROOT
    )
    wait_for_port(port, process=process)
    return process, port


def cost(*args: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.cost", *args], cwd=ROOT, capture_output=True, timeout=120, check=True
    )
    return orjson.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


class ProfiledWorker(Worker):
    module = "bench.profiled_worker"


def profile(worker: Worker, path: Path) -> dict[str, int]:
    """The worker's profile counts so far (it writes them on SIGUSR2)."""
    assert worker.process is not None
    path.unlink(missing_ok=True)
    os.kill(worker.process.pid, signal.SIGUSR2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.02)
    raise RuntimeError("the profiled worker wrote no profile")


def step(replies: int, alone: bool) -> list[dict[str, Any]]:
    stack = Stack()
    server, port = llm_server()
    try:
        metrics_port = free_port()
        profile_file = Path(tempfile.mkdtemp()) / "profile.json"
        worker = ProfiledWorker(
            stack.redis.url,
            **stack.env,
            BENCH_PROFILE_FILE=str(profile_file),
            LLM_PROVIDER="openai",
            OPENAI_API_KEY="bench",
            OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1",
            LLM_MODEL="bench",
            LLM_MAX_TOKENS="1024",
            WORKER_CONCURRENCY=str(replies),
            WORKER_METRICS_PORT=str(metrics_port),
        )
        stack.services.append(worker)
        worker.start()
        wait_for_port(metrics_port)
        assert worker.process is not None
        asyncio.run(start_replies(stack, replies))
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        time.sleep(SETTLE)  # every reply running
        [redis_pid] = stack.redis_pids()
        before, worker_cpu, redis_cpu = httpx.get(url).text, cpu_seconds(worker.process.pid), cpu_seconds(redis_pid)
        samples = profile(worker, profile_file)
        server_cpu = cpu_seconds(server.pid)
        wall = time.monotonic()
        time.sleep(WINDOW)
        after = httpx.get(url).text
        wall = time.monotonic() - wall
        server_cpu = cpu_seconds(server.pid) - server_cpu
        samples = {part: count - samples.get(part, 0) for part, count in profile(worker, profile_file).items()}
        worker_cpu, redis_cpu = cpu_seconds(worker.process.pid) - worker_cpu, cpu_seconds(redis_pid) - redis_cpu
        tokens = counter(after, "ai_llm_chunks_total") - counter(before, "ai_llm_chunks_total")
        worker.stop(timeout=20)
        per_token = worker_cpu / max(tokens, 1) * 1e6
        total = max(sum(samples.get(part, 0) for part in PARTS), 1)
        row: dict[str, Any] = {
            "kind": "worker, HTTP",
            "replies": replies,
            "target_tokens_per_s": replies * TOKENS_PER_SECOND,
            "tokens_per_s": tokens / wall,
            "publish_p50_ms": window_quantile(before, after, "ai_worker_publish_seconds", 0.5) * 1000,
            "publish_p99_ms": window_quantile(before, after, "ai_worker_publish_seconds", 0.99) * 1000,
            "worker_cpu_percent": worker_cpu / wall * 100,
            "worker_us_per_token": per_token,
            **{f"{part}_us_per_token": per_token * samples.get(part, 0) / total for part in PARTS},
            "samples": total,
            "client_by_package": {
                part.removeprefix("client "): round(count / max(samples.get("client", 0), 1), 3)
                for part, count in sorted(samples.items())
                if part.startswith("client ")
            },
            "llm_server_cpu_percent": server_cpu / wall * 100,
            "redis_us_per_token": redis_cpu / max(tokens, 1) * 1e6,
        }
        rows = [row]
        for path in ("raw", "parsed") if alone else ():
            measured = cost("client", str(port), str(replies), path)
            rows.append(
                {
                    "kind": f"client alone, {path}" + (" (the worker's path before B7)" if path == "parsed" else ""),
                    "replies": replies,
                    "target_tokens_per_s": replies * TOKENS_PER_SECOND,
                    "tokens_per_s": measured["tokens_per_s"],
                    "client_us_per_token": measured["us_per_token"],
                }
            )
        return rows
    finally:
        server.terminate()
        server.wait(10)
        stack.stop()


def b7_worker_http(levels: tuple[int, ...] = (100, 250, 500, 1000, 1500, 2000)) -> list[dict[str, Any]]:
    """Every level until the worker falls behind its replies (the CPU per token is worth seeing
    past the first level whose publish p99 passes 20 ms, on a busy machine the first one)."""
    rows: list[dict[str, Any]] = []
    for index, replies in enumerate(levels):
        measured = step(replies, alone=index == 0)
        row = measured[0]
        row["sustained"] = row["tokens_per_s"] >= 0.95 * row["target_tokens_per_s"] and row["publish_p99_ms"] < 20
        rows += measured
        if row["tokens_per_s"] < 0.9 * row["target_tokens_per_s"]:
            break
    return rows
