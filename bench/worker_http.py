"""B7: one worker process as a deployment runs it, its `openai` client streaming every reply
over HTTP from an OpenAI-compatible server on loopback (bench/llm_server.py: 20 tokens/s,
200-token replies), N concurrent replies raised until the publish p99 passes 20 ms.

Per level: the worker's CPU per token all in, and split: the LLM client alone and the Redis
writes alone, each measured in a process of its own at the same N (bench/cost.py); the
worker's own code is what is left. The `parsed` row is the client before B7 (the package's
stream, a pydantic object per chunk), measured alone.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson

from bench.harness import ROOT, Stack, cpu_seconds
from bench.worker import counter, start_replies
from devstack.ports import free_port, wait_for_port

TOKENS_PER_SECOND = 20
TOKENS = 200
SETTLE, WINDOW = 3.0, 5.0


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


def step(replies: int, parsed: bool) -> list[dict[str, Any]]:
    stack = Stack()
    server, port = llm_server()
    try:
        metrics_port = free_port()
        worker = stack.worker(
            LLM_PROVIDER="openai",
            OPENAI_API_KEY="bench",
            OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1",
            LLM_MODEL="bench",
            LLM_MAX_TOKENS="1024",
            WORKER_CONCURRENCY=str(replies),
            WORKER_METRICS_PORT=str(metrics_port),
        )
        wait_for_port(metrics_port)
        assert worker.process is not None
        asyncio.run(start_replies(stack, replies))
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        time.sleep(SETTLE)  # every reply running
        [redis_pid] = stack.redis_pids()
        before, worker_cpu, redis_cpu = httpx.get(url).text, cpu_seconds(worker.process.pid), cpu_seconds(redis_pid)
        wall = time.monotonic()
        time.sleep(WINDOW)
        after = httpx.get(url).text
        wall = time.monotonic() - wall
        worker_cpu, redis_cpu = cpu_seconds(worker.process.pid) - worker_cpu, cpu_seconds(redis_pid) - redis_cpu
        tokens = counter(after, "ai_llm_chunks_total") - counter(before, "ai_llm_chunks_total")
        worker.stop(timeout=20)
        # The parts alone, at the same N: the Redis writes (same Redis), the LLM client (same server).
        writes = cost("writes", stack.redis.url, str(replies))
        client = cost("client", str(port), str(replies), "raw")
        per_token = worker_cpu / max(tokens, 1) * 1e6
        row: dict[str, Any] = {
            "kind": "worker, HTTP",
            "replies": replies,
            "target_tokens_per_s": replies * TOKENS_PER_SECOND,
            "tokens_per_s": tokens / wall,
            "publish_p50_ms": window_quantile(before, after, "ai_worker_publish_seconds", 0.5) * 1000,
            "publish_p99_ms": window_quantile(before, after, "ai_worker_publish_seconds", 0.99) * 1000,
            "worker_cpu_percent": worker_cpu / wall * 100,
            "worker_us_per_token": per_token,
            "client_us_per_token": client["us_per_token"],
            "writes_us_per_token": writes["us_per_token"],
            "own_us_per_token": per_token - client["us_per_token"] - writes["us_per_token"],
            "redis_us_per_token": redis_cpu / max(tokens, 1) * 1e6,
        }
        rows = [row]
        if parsed:
            before_b7 = cost("client", str(port), str(replies), "parsed")
            rows.append(
                {
                    "kind": "client alone, parsed stream (before B7)",
                    "replies": replies,
                    "target_tokens_per_s": replies * TOKENS_PER_SECOND,
                    "tokens_per_s": before_b7["tokens_per_s"],
                    "client_us_per_token": before_b7["us_per_token"],
                }
            )
        return rows
    finally:
        server.terminate()
        server.wait(10)
        stack.stop()


def b7_worker_http(levels: tuple[int, ...] = (250, 500, 1000, 1500, 2000)) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for index, replies in enumerate(levels):
        measured = step(replies, parsed=index == 0)
        row = measured[0]
        row["sustained"] = row["tokens_per_s"] >= 0.95 * row["target_tokens_per_s"] and row["publish_p99_ms"] < 20
        rows += measured
        if not row["sustained"]:
            break
    return rows
