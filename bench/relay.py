"""B2 (relay throughput, latency, CPU, memory per stream) and B3 (the same while Redis drops the
API's subscriber connection), next to the ceiling of a bare Sanic SSE endpoint and the minimal
hub (bench/hub.py: the same publishers and Redis, a textbook pub/sub-to-SSE relay)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import httpx
import redis as sync_redis

from backend.store import keys
from bench.harness import Stack, cpu_seconds, result_of, rss_bytes, run_json_process, wait_for_metric
from devstack.ports import free_port, wait_for_port
from devstack.services import ROOT

SECONDS = 8
PUBLISHERS = 2


async def prepare(stack: Stack, count: int) -> list[dict[str, Any]]:
    """`count` users, each with a chat whose reply is open and claimed by a benchmark writer."""
    store = stack.store()
    assert await store.ping()

    async def one(index: int) -> dict[str, Any]:
        user_id, token = await store.users.login("bench", f"user-{index}", f"user-{index}")
        chat_id = await store.chats.create(user_id)
        gen = await store.chats.start_reply(user_id, chat_id, "benchmark")
        writer = f"bench-writer-{index}"
        assert await store.replies.claim(user_id, chat_id, gen, writer) == 1
        return {"user": user_id, "chat": chat_id, "gen": gen, "token": writer, "auth": token}

    replies: list[dict[str, Any]] = []
    for start in range(0, count, 500):
        replies += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 500))))
    await store.close()
    return replies


def relay_run(
    streams: int,
    rate: float,
    seconds: float = SECONDS,
    kill_subscribers_at: float | None = None,
    *,
    cluster: bool = False,
) -> dict[str, Any]:
    stack = Stack(cluster=cluster)
    try:
        api = stack.api()
        replies = asyncio.run(prepare(stack, streams))
        rss_before = rss_bytes(api.process.pid)
        # Enough time for every chunk even when the publishers fall behind the offered rate.
        deadline = seconds + 60 + streams * rate * seconds / 20_000
        client = run_json_process(
            "bench.sse_load",
            {
                "host": "127.0.0.1",
                "port": api.port,
                "deadline": deadline,
                "requests": [
                    {
                        "method": "GET",
                        "path": f"/assistant/chat/{r['chat']}/stream",
                        "headers": {"Authentication": f"Basic {r['auth']}"},
                    }
                    for r in replies
                ],
            },
        )
        asyncio.run(wait_for_metric(api, "ai_sse_open_streams", streams))
        time.sleep(0.5)
        rss_open = rss_bytes(api.process.pid)
        cpu_before = cpu_seconds(api.process.pid)
        redis_before = sum(cpu_seconds(pid) for pid in stack.redis_pids())
        started = time.monotonic()
        # Like several workers: the replies are split over PUBLISHERS processes.
        publishers = start_publishers(stack.redis.url, cluster, rate, seconds, replies)
        killed = 0
        if kill_subscribers_at is not None:
            time.sleep(kill_subscribers_at)
            admin = sync_redis.Redis.from_url(stack.redis.url)
            killed = admin.client_kill_filter(_type="pubsub")
            admin.close()
        published = [result_of(p, timeout=deadline + 60) for p in publishers]
        received = result_of(client, timeout=deadline + 60)
        busy = cpu_seconds(api.process.pid) - cpu_before
        redis_busy = sum(cpu_seconds(pid) for pid in stack.redis_pids()) - redis_before
        wall = time.monotonic() - started
        return {
            "streams": streams,
            "rate": rate,
            **received,
            **publisher_figures(published),
            "api_cpu_percent": 100 * busy / wall,
            # Redis's CPU per delivered event (every node of a cluster): what a chunk costs Redis.
            "redis_us_per_event": redis_busy * 1e6 / max(1, received["events"]),
            "kib_per_stream": (rss_open - rss_before) / 1024 / streams,
            "subscribers_killed": killed,
        }
    finally:
        stack.stop()


def ceiling_run(streams: int, rate: float, seconds: float = SECONDS) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.ceiling", str(port)], cwd=ROOT)
    try:
        wait_for_port(port)
        chunks = int(rate * seconds)
        start_at = time.time() + 2 + streams / 1000  # time to open every stream first
        rss_before = rss_bytes(server.pid)
        cpu_before = cpu_seconds(server.pid)
        started = time.monotonic()
        client = run_json_process(
            "bench.sse_load",
            {
                "host": "127.0.0.1",
                "port": port,
                "deadline": seconds + 60,
                "requests": [{"method": "GET", "path": f"/stream?n={chunks}&rate={rate}&start={start_at}"}] * streams,
            },
        )
        received = result_of(client)
        busy = cpu_seconds(server.pid) - cpu_before
        return {
            "streams": streams,
            "rate": rate,
            **received,
            "api_cpu_percent": 100 * busy / (time.monotonic() - started),
            "kib_per_stream": (rss_bytes(server.pid) - rss_before) / 1024 / streams,
        }
    finally:
        server.terminate()
        server.wait(10)


def hub_run(streams: int, rate: float, seconds: float = SECONDS) -> dict[str, Any]:
    """The relay's run with the API replaced by the minimal hub (bench/hub.py)."""
    stack = Stack()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.hub", str(port), stack.redis.url], cwd=ROOT)
    try:
        wait_for_port(port, process=server)
        replies = asyncio.run(prepare(stack, streams))
        rss_before = rss_bytes(server.pid)
        deadline = seconds + 60 + streams * rate * seconds / 20_000
        channels = [keys.reply_channel(r["user"], r["chat"], r["gen"]) for r in replies]
        client = run_json_process(
            "bench.sse_load",
            {
                "host": "127.0.0.1",
                "port": port,
                "deadline": deadline,
                "requests": [{"method": "GET", "path": f"/stream?channel={channel}"} for channel in channels],
            },
        )
        give_up = time.monotonic() + 120
        while int(httpx.get(f"http://127.0.0.1:{port}/subscribed", timeout=30).text) < streams:
            if time.monotonic() > give_up:
                raise TimeoutError("the hub's streams did not open")
            time.sleep(0.2)
        time.sleep(0.5)
        rss_open = rss_bytes(server.pid)
        cpu_before = cpu_seconds(server.pid)
        started = time.monotonic()
        publishers = start_publishers(stack.redis.url, False, rate, seconds, replies)
        published = [result_of(p, timeout=deadline + 60) for p in publishers]
        received = result_of(client, timeout=deadline + 60)
        busy = cpu_seconds(server.pid) - cpu_before
        return {
            "streams": streams,
            "rate": rate,
            **received,
            **publisher_figures(published),
            "api_cpu_percent": 100 * busy / (time.monotonic() - started),
            "kib_per_stream": (rss_open - rss_before) / 1024 / streams,
        }
    finally:
        server.terminate()
        server.wait(10)
        stack.stop()


def start_publishers(
    redis_url: str, cluster: bool, rate: float, seconds: float, replies: list[dict[str, Any]]
) -> list[subprocess.Popen[bytes]]:
    """The replies' writers, split over PUBLISHERS processes (like several workers)."""
    return [
        run_json_process(
            "bench.publisher",
            {
                "redis_url": redis_url,
                "cluster": cluster,
                "rate": rate,
                "chunks": int(rate * seconds),
                "replies": [{k: r[k] for k in ("user", "chat", "gen", "token")} for r in replies[part::PUBLISHERS]],
            },
        )
        for part in range(PUBLISHERS)
    ]


def publisher_figures(published: list[dict[str, Any]]) -> dict[str, Any]:
    """What the publishers measured, added up over the processes."""
    return {
        "published_per_second": sum(p["chunks_per_second"] for p in published),
        "publish_p99_ms": max(p["publish_p99_ms"] for p in published),
        "writers_failed": sum(p["writers_failed"] for p in published),
        "writer_error": next((p["writer_error"] for p in published if p["writer_error"]), None),
    }
