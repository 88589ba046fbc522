"""B6: end to end with the real workers. Prompts POSTed through the API, the job stream, two
`python -m workers` processes, the hub, and the SSE client. The headline row runs the workers'
LLM as deployed, the `openai` client streaming over HTTP from bench/llm_server.py at 20 tokens/s;
the others the in-process fake LLM at the same pace.

N prompts arrive evenly over SPREAD_SECONDS, each from its own user (sessions and chats made
beforehand through the store), each read by bench/prompt_load.py until its final event.

First event: measured by the client from the moment its POST is written. The fake LLM itself
takes U(0, d) + d before its first token (workers/llm/fake.py, d = FAKE_LLM_TOKEN_DELAY_MS), a
delay uniform on [d, 2d]. "Beyond the LLM" is the raw quantile minus the same quantile of that
delay: p50 - 1.5 d and p99 - 1.99 d. It is exact when the rest of the path takes a constant
time, and it always lies between the raw quantile minus 2d and the raw quantile minus d.
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import subprocess
import sys
import time
from typing import Any

import httpx
import redis as sync_redis

from backend.store.datastore import Store
from bench.harness import ROOT, Sampled, Stack, cpu_seconds, result_of, rss_bytes, run_json_process
from bench.worker import histogram_quantile
from config.settings import Settings
from devstack.login import auth
from devstack.ports import free_port, wait_for_port

TOKENS_PER_SECOND = 20
TOKEN_DELAY = 1 / TOKENS_PER_SECOND  # d, seconds
SPREAD_SECONDS = 3.0
# Replies last about 10 s, so every stream is open together from the last prompt (3 s) on for
# several seconds: that window's delivered events/s is set against the offered rate.
REPLY_WORDS = 200
WORKERS = 2
WORKER_CONCURRENCY = 2000
PROMPT = "Explain Redis streams briefly"
OVERLOAD_MAX_WAIT_SECONDS = 1.0
DEFAULT_STREAMS = (1000, 3000)
FIRST_P99_BEYOND_LLM_MS = 100  # target of the first run (every stream complete)
OVERLOAD_FIRST_P99_MS = 2000  # target of the overload runs, admitted streams
REFUSED_AT_ONCE_MS = 500  # what "refused at once" means here: 503 head p99 after the POST


def reply_tokens() -> int:
    """Tokens the fake LLM writes for PROMPT: its intro (4 words and up to 12 of the prompt's), then the reply."""
    return 4 + min(12, len(PROMPT.split())) + REPLY_WORDS


def llm_first_token_ms(quantile: float) -> float:
    """The quantile of the fake LLM's own first-token delay, uniform on [d, 2d]."""
    return (1 + quantile) * TOKEN_DELAY * 1000


async def prepare(stack: Stack, count: int) -> list[dict[str, Any]]:
    """`count` users, each with a real session and an empty chat."""
    # A generous timeout: the pool's connections are shared by a batch, on a busy box.
    store = Store(Settings(REDIS_URL=stack.redis.url, REDIS_TIMEOUT_SECONDS=30))

    async def one(index: int) -> dict[str, Any]:
        user_id, token = await store.users.login("bench", f"b6-{index}", f"b6-{index}")
        return {"chat": await store.chats.create(user_id), "auth": token}

    made: list[dict[str, Any]] = []
    for start in range(0, count, 200):
        made += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 200))))
    await store.close()
    return made


async def warm_up(base_url: str, chats: list[dict[str, Any]]) -> None:
    """A few prompts through the whole path to their end: both workers reading, the API's code
    paths loaded, and the workers know how long a reply takes (what load shedding predicts
    from), as they do in any deployment that has served a reply."""

    async def one(chat: dict[str, Any]) -> None:
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=30) as http,
            http.stream(
                "POST", f"/assistant/chat/{chat['chat']}", headers=auth(chat["auth"]), json={"prompt": PROMPT}
            ) as response,
        ):
            assert response.status_code == 200, response.status_code
            async for line in response.aiter_lines():
                if line.startswith("event: done"):
                    return

    await asyncio.gather(*(one(chat) for chat in chats))


def redis_memory(stack: Stack) -> int:
    """Redis's memory without its clients' buffers (MEMORY STATS `clients.normal`): those belong
    to connections and come and go with the load (a burst's query buffers are shrunk a few
    seconds later), not to the replies stored."""
    with sync_redis.Redis.from_url(stack.redis.url) as client:
        stats = client.memory_stats()
        return int(stats["total.allocated"]) - int(stats["clients.normal"])


def steady_rate(per_second: list[list[int]]) -> float:
    """Median events/s over the whole seconds when every admitted stream should be streaming:
    after the last prompt's first token, before the first reply's end."""
    first = math.ceil(SPREAD_SECONDS + 2 * TOKEN_DELAY)
    last = math.floor(reply_tokens() * TOKEN_DELAY)  # exclusive
    counts = sorted(count for second, count in per_second if first <= second < last)
    return counts[len(counts) // 2] if counts else float("nan")


def worker_metrics(ports: list[int]) -> dict[str, float]:
    """The worst of the workers' own figures: LLM first token and publish p99 (ms)."""
    texts = [httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text for port in ports]
    return {
        "worker_llm_first_token_p99_ms": max(histogram_quantile(t, "ai_llm_first_token_seconds", 0.99) for t in texts)
        * 1000,
        "worker_publish_p99_ms": max(histogram_quantile(t, "ai_worker_publish_seconds", 0.99) for t in texts) * 1000,
    }


def llm_env(http: bool) -> tuple[dict[str, str], subprocess.Popen[bytes] | None]:
    """The workers' LLM: the in-process fake, or (`http`) the real openai client streaming from
    bench/llm_server.py over loopback, as a deployment runs it (same pace, same reply length)."""
    if not http:
        return {"FAKE_LLM_TOKEN_DELAY_MS": str(TOKEN_DELAY * 1000), "FAKE_LLM_REPLY_WORDS": str(REPLY_WORDS)}, None
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.llm_server", str(port), str(TOKENS_PER_SECOND), str(reply_tokens())], cwd=ROOT
    )
    wait_for_port(port, process=server)
    env = {
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "LLM_MODEL": "bench",
    }
    return env, server


def run_b6(streams: int, max_wait: float | None, slots: int = WORKER_CONCURRENCY, http: bool = False) -> dict[str, Any]:
    """One run of N prompts; with `max_wait`, the API sheds at QUEUE_MAX_WAIT_SECONDS=max_wait;
    `slots` is each worker's WORKER_CONCURRENCY; `http`: the workers' LLM over HTTP."""
    stack = Stack()
    llm, server = llm_env(http)
    try:
        api = stack.api(**({"QUEUE_MAX_WAIT_SECONDS": str(max_wait)} if max_wait is not None else {}))
        ports = [free_port() for _ in range(WORKERS)]
        workers = [stack.worker(WORKER_CONCURRENCY=str(slots), WORKER_METRICS_PORT=str(port), **llm) for port in ports]
        chats = asyncio.run(prepare(stack, streams + 2 * WORKERS))
        warm, chats = chats[: 2 * WORKERS], chats[2 * WORKERS :]
        for worker, port in zip(workers, ports, strict=True):
            wait_for_port(port, process=worker.process)
        asyncio.run(warm_up(api.url, warm))
        time.sleep(0.5)

        pids = {
            "api": [api.process.pid],
            "workers": [w.process.pid for w in workers],
            "redis": [stack.redis.process.pid],
        }
        rss_before = rss_peak = rss_bytes(api.process.pid)
        redis_before = redis_memory(stack)
        cpu_before = {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        offered_seconds = SPREAD_SECONDS + reply_tokens() * TOKEN_DELAY
        # Room for every event even when the box delivers only 15k events/s.
        deadline = offered_seconds + 30 + streams * reply_tokens() / 15_000
        started = time.monotonic()
        sampled = Sampled(f"B6-{streams}", {k: v for k, v in pids.items() if k != "redis"}, SPREAD_SECONDS + 4)
        client = run_json_process(
            "bench.prompt_load",
            {
                "host": "127.0.0.1",
                "port": api.port,
                "spread": SPREAD_SECONDS,
                "token_interval": TOKEN_DELAY,
                "deadline": deadline,
                "requests": [
                    {
                        "path": f"/assistant/chat/{c['chat']}",
                        "headers": auth(c["auth"]),
                        "body": f'{{"prompt": "{PROMPT}"}}',
                    }
                    for c in chats
                ],
            },
        )
        while client.poll() is None:
            rss_peak = max(rss_peak, rss_bytes(api.process.pid))
            time.sleep(0.2)
        wall = time.monotonic() - started
        sampled.wait()
        redis_after = redis_memory(stack)  # every admitted reply over, its log kept for REPLY_LOG_TTL_SECONDS
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = {name: sum(cpu_seconds(p) for p in group) - cpu_before[name] for name, group in pids.items()}
        got = result_of(client, timeout=deadline + 60)
        first_p50, first_p99 = got["first_event_ms"]
        admitted = got["admitted"]
        row = {
            "streams": streams,
            "worker_slots": slots * WORKERS,
            "max_wait_s": max_wait or Settings.model_fields["QUEUE_MAX_WAIT_SECONDS"].default,
            "admitted": admitted,
            "refused_503": got["refused_retry_after"],
            "refused_other": got["refused_bare"] + sum(got["other_status"].values()) + got["connect_failed"],
            "completed": got["completed"],
            "failed": got["broken"] + got["hung"] + sum(got["ended_otherwise"].values()),
            "gaps": got["gaps"],
            "duplicates": got["duplicates"],
            "events": got["events"],
            "events_per_second": steady_rate(got["per_second"]),
            "offered_per_second": admitted * TOKENS_PER_SECOND,
            "first_p50_ms": first_p50,
            "first_p99_ms": first_p99,
            "beyond_llm_p50_ms": first_p50 - llm_first_token_ms(0.5),
            "beyond_llm_p99_ms": first_p99 - llm_first_token_ms(0.99),
            "first_max_ms": got["first_event_max_ms"],
            "refusal_p99_ms": got["refusal_ms"][1],
            "connect_p99_ms": got["connect_ms"][1],
            "event_lag_p50_ms": got["lag_ms"][0],
            "event_lag_p99_ms": got["lag_ms"][1],
            "api_cpu_s": cpu["api"],
            "workers_cpu_s": cpu["workers"],
            "redis_cpu_s": cpu["redis"],
            "client_cpu_s": (
                children_after.ru_utime + children_after.ru_stime - children_before.ru_utime - children_before.ru_stime
            ),
            "wall_s": wall,
            "last_event_s": got["last_event_s"],
            "kib_per_stream": (rss_peak - rss_before) / 1024 / max(1, admitted),
            "redis_kib_per_reply": (redis_after - redis_before) / 1024 / max(1, admitted),
            "other_status": got["other_status"],
            "ended_otherwise": got["ended_otherwise"],
            "endings": got["endings"],  # each non-done final event's message, and whether chunks came first
            "ended_at_s": got["ended_at_s"],  # when they came (min, p50, max seconds after the POST)
            "per_second": got["per_second"],
            **worker_metrics(ports),
        }
        return {"llm": "openai over HTTP" if http else "fake", **row, **judge(row, overload=max_wait is not None)}
    finally:
        stack.stop()
        if server is not None:
            server.terminate()
            server.wait(10)


def judge(row: dict[str, Any], *, overload: bool) -> dict[str, Any]:
    clean = row["failed"] == 0 and row["gaps"] == 0 and row["duplicates"] == 0
    if not overload:
        return {
            "target": f"all complete, first p99 <= {FIRST_P99_BEYOND_LLM_MS} ms beyond LLM",
            "met": clean and row["completed"] == row["streams"] and row["beyond_llm_p99_ms"] <= FIRST_P99_BEYOND_LLM_MS,
        }
    refused = row["refused_503"]
    return {
        "target": f"admitted first p99 <= {OVERLOAD_FIRST_P99_MS / 1000:g} s, rest 503+Retry-After "
        f"(p99 <= {REFUSED_AT_ONCE_MS} ms)",
        "met": clean
        and row["refused_other"] == 0
        and row["completed"] == row["admitted"]
        and row["admitted"] + refused == row["streams"]
        and (row["admitted"] == 0 or row["first_p99_ms"] <= OVERLOAD_FIRST_P99_MS)
        and (refused == 0 or row["refusal_p99_ms"] <= REFUSED_AT_ONCE_MS),
    }


def stream_counts() -> tuple[int, ...]:
    """BENCH_B6_STREAMS=200,500 for a quick run; by default 1,000 and 3,000."""
    given = os.environ.get("BENCH_B6_STREAMS", "").strip()
    return tuple(int(n) for n in given.split(",") if n.strip()) if given else DEFAULT_STREAMS


def b6_end_to_end() -> list[dict[str, Any]]:
    """The first N with the default settings (every stream must complete); every later N with
    QUEUE_MAX_WAIT_SECONDS=1 (the API sheds what the workers cannot take). The last N runs once
    more with a third fewer worker slots than prompts, so jobs must wait and shedding must act."""
    counts = stream_counts()
    rows = [run_b6(counts[0], None, http=True)]  # the headline: the workers as deployed, over HTTP
    for index, streams in enumerate(counts):
        rows.append(run_b6(streams, None if index == 0 else OVERLOAD_MAX_WAIT_SECONDS))
    if len(counts) > 1:
        slots = counts[-1] * 2 // 3 // WORKERS
        rows.append(run_b6(counts[-1], OVERLOAD_MAX_WAIT_SECONDS, slots))
    return rows
