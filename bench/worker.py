"""B5: how many concurrent replies at 20 tokens/s one worker process sustains with its publish
p99 (chunk handed over -> Redis confirmed) under 20 ms."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench.harness import Stack
from devstack.ports import free_port, wait_for_port

TOKENS_PER_SECOND = 20
WINDOW = 6.0


def histogram_quantile(text: str, name: str, quantile: float) -> float:
    """The quantile of a Prometheus histogram, interpolated inside its bucket (seconds)."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            bound = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.split()[-1])))
    total = buckets[-1][1]
    if not total:
        return float("nan")
    target = quantile * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= target:
            if bound == float("inf"):
                return previous_bound
            share = (target - previous_count) / max(count - previous_count, 1)
            return previous_bound + (bound - previous_bound) * share
        previous_bound, previous_count = bound, count
    return previous_bound


def counter(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def start_replies(stack: Stack, count: int) -> None:
    store = stack.store()

    async def one(index: int) -> None:
        user_id, _ = await store.users.login("bench", f"w-{index}", f"w-{index}")
        chat_id = await store.chats.create(user_id)
        gen = await store.chats.start_reply(user_id, chat_id, "go")
        await store.queue.enqueue("chat", "bench", userId=user_id, chatId=chat_id, gen=gen)

    for start in range(0, count, 500):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 500))))
    await store.close()


def step(replies: int) -> dict[str, Any]:
    stack = Stack()
    try:
        port = free_port()
        words = int(TOKENS_PER_SECOND * (WINDOW + 6))
        stack.worker(
            WORKER_CONCURRENCY=str(replies),
            WORKER_METRICS_PORT=str(port),
            FAKE_LLM_TOKEN_DELAY_MS=str(1000 / TOKENS_PER_SECOND),
            FAKE_LLM_REPLY_WORDS=str(words),
        )
        wait_for_port(port)
        asyncio.run(start_replies(stack, replies))
        url = f"http://127.0.0.1:{port}/metrics"
        time.sleep(3)  # every reply running
        before = httpx.get(url).text
        time.sleep(WINDOW)
        after = httpx.get(url).text
        rate = counter(after, "ai_worker_publish_seconds_count") - counter(before, "ai_worker_publish_seconds_count")
        return {
            "replies": replies,
            "target_chunks_per_s": replies * TOKENS_PER_SECOND,
            "chunks_per_s": rate / WINDOW,
            "publish_p50_ms": histogram_quantile(after, "ai_worker_publish_seconds", 0.5) * 1000,
            "publish_p99_ms": histogram_quantile(after, "ai_worker_publish_seconds", 0.99) * 1000,
        }
    finally:
        stack.stop()


def b5_worker(levels: tuple[int, ...] = (250, 500, 1000, 1500)) -> list[dict[str, Any]]:
    rows = []
    for replies in levels:
        row = step(replies)
        row["sustained"] = row["chunks_per_s"] >= 0.95 * row["target_chunks_per_s"] and row["publish_p99_ms"] < 20
        rows.append(row)
        if not row["sustained"]:
            break
    return rows
