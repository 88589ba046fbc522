"""make bench: every benchmark, each next to its baseline, in one run (about 12 minutes).

Prints one table per benchmark and writes them to bench/results/<name>.json.
python -m bench [B1 B2 B3 B4 B5 B6 B7] runs a subset.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any

from bench.end_to_end import b6_end_to_end
from bench.harness import save, table
from bench.latency import b1_user_info, b4_latency
from bench.relay import ceiling_run, hub_run, relay_run
from bench.worker import b5_worker
from bench.worker_http import b7_worker_http


def b2_relay() -> list[dict[str, Any]]:
    rows = []
    for streams, rate, seconds in ((1000, 20, 8), (5000, 20, 8), (10000, 20, 8), (100, 1000, 5)):
        single: dict[str, Any] = {}
        ceiling: dict[str, Any] = {}
        hub: dict[str, Any] = {}
        for kind in ("ceiling", "minimal hub", "relay", "relay on cluster"):
            if streams == 10000 and kind != "relay":
                continue  # the 10k column is about completeness and memory
            if kind == "ceiling":
                result = ceiling_run(streams, rate, seconds)
            elif kind == "minimal hub":
                result = hub_run(streams, rate, seconds)
            else:
                result = relay_run(streams, rate, seconds, cluster=kind == "relay on cluster")
            result.pop("per_second", None)
            if kind == "ceiling":
                ceiling = result
            elif ceiling:  # target at saturation: >= 0.9 of the ceiling
                result["vs_ceiling"] = result["events_per_second"] / ceiling["events_per_second"]
            if kind == "minimal hub":
                hub = result
            elif hub:  # target at low load: latency p99 <= the minimal hub's (same publishers, same Redis)
                result["p99_vs_hub"] = result["latency_p99_ms"] / hub["latency_p99_ms"]
            if kind == "relay":
                single = result
            elif kind == "relay on cluster":  # target: >= 0.8 of the single Redis's figure
                result["vs_single"] = result["events_per_second"] / single["events_per_second"]
            rows.append({"kind": kind, **result})
    return rows


def b3_reconnect() -> list[dict[str, Any]]:
    result = relay_run(1000, 20, 8, kill_subscribers_at=3.0)
    result.pop("per_second", None)
    return [result]


BENCHMARKS = {
    "B1": ("B1 GET /user/info vs GET /health (same server, 64 connections)", b1_user_info),
    "B2": (
        "B2 relay: S streams x R chunks/s, real publish path, next to a bare Sanic ceiling and a minimal hub",
        b2_relay,
    ),
    "B3": ("B3 relay while Redis kills the API's pub/sub connection (CLIENT KILL TYPE pubsub)", b3_reconnect),
    "B4": ("B4 latency with a zero-delay fake LLM", b4_latency),
    "B5": ("B5 one worker process: concurrent replies at 20 tokens/s, publish p99 < 20 ms", b5_worker),
    "B6": (
        "B6 end to end: N prompts over 3 s -> API -> job stream -> 2 workers (LLM over HTTP, then fake; 20 tokens/s)"
        " -> hub -> SSE",
        b6_end_to_end,
    ),
    "B7": (
        "B7 one worker process, its openai client streaming over HTTP (loopback server, 20 tokens/s, 200 tokens)",
        b7_worker_http,
    ),
}

COLUMNS = {
    "B2": [
        "kind",
        "streams",
        "rate",
        "completed",
        "hung",
        "gaps",
        "duplicates",
        "writers_failed",
        "events_per_second",
        "latency_p50_ms",
        "latency_p99_ms",
        "api_cpu_percent",
        "redis_us_per_event",
        "kib_per_stream",
        "vs_ceiling",
        "p99_vs_hub",
        "vs_single",
    ],
    "B3": [
        "streams",
        "rate",
        "subscribers_killed",
        "completed",
        "failed",
        "hung",
        "gaps",
        "duplicates",
        "events",
        "latency_p99_ms",
    ],
    "B7": [
        "kind",
        "replies",
        "target_tokens_per_s",
        "tokens_per_s",
        "publish_p50_ms",
        "publish_p99_ms",
        "worker_cpu_percent",
        "worker_us_per_token",
        "client_us_per_token",
        "writes_us_per_token",
        "own_us_per_token",
        "loop_us_per_token",
        "redis_us_per_token",
        "llm_server_cpu_percent",
        "sustained",
    ],
    "B6": [
        "llm",
        "streams",
        "worker_slots",
        "max_wait_s",
        "admitted",
        "refused_503",
        "refused_other",
        "completed",
        "failed",
        "events_per_second",
        "offered_per_second",
        "first_p50_ms",
        "first_p99_ms",
        "beyond_llm_p50_ms",
        "beyond_llm_p99_ms",
        "refusal_p99_ms",
        "api_cpu_s",
        "workers_cpu_s",
        "redis_cpu_s",
        "wall_s",
        "kib_per_stream",
        "redis_kib_per_reply",
        "target",
        "met",
    ],
}


def main() -> None:
    chosen = sys.argv[1:] or list(BENCHMARKS)
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
    }
    print(f"machine: {json.dumps(machine)}\n")
    for name in chosen:
        title, run = BENCHMARKS[name]
        started = time.monotonic()
        rows = run()
        save(name, {"machine": machine, "rows": rows})
        shown = [{k: row.get(k) for k in COLUMNS[name]} for row in rows] if name in COLUMNS else rows
        print(table(f"{title}  ({time.monotonic() - started:.0f} s)", shown), "\n", flush=True)


if __name__ == "__main__":
    main()
