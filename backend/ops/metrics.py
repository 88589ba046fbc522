"""Prometheus metrics of the API.

Per-process series (requests, latency, open streams) use prometheus-client's multiprocess
mode when API_WORKERS > 1, so one scrape covers every Sanic worker. Cluster-wide series (queue
depth, pending jobs, job outcomes, LLM chunks) are read from Redis at scrape time, so any pod
reports the same numbers.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw

REQUESTS = Counter("ai_http_requests_total", "HTTP requests by route, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("ai_http_request_seconds", "Time to the response head by route",
                    ["route"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
OPEN_STREAMS = Gauge("ai_sse_open_streams", "SSE streams open on this API", multiprocess_mode="livesum")

bp = Blueprint("ops_metrics")


def registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        return merged
    return REGISTRY


async def cluster_lines(request: Request) -> list[str]:
    queue = request.app.ctx.store.queue
    lag, pending = await queue.depth()
    outcomes = await queue.outcomes()
    lines = [
        "# HELP ai_jobs_queue_depth Jobs waiting in the stream, not yet taken by a worker",
        "# TYPE ai_jobs_queue_depth gauge", f"ai_jobs_queue_depth {lag}",
        "# HELP ai_jobs_pending Jobs taken by a worker and not yet acknowledged",
        "# TYPE ai_jobs_pending gauge", f"ai_jobs_pending {pending}",
        "# HELP ai_jobs_total Jobs by type and outcome (done, failed, retried, reclaimed), all workers",
        "# TYPE ai_jobs_total counter",
    ]
    for field, count in sorted(outcomes.items()):
        job_type, _, outcome = field.partition(":")
        if job_type == "llm":
            continue
        lines.append(f'ai_jobs_total{{type="{job_type}",outcome="{outcome}"}} {count}')
    lines += ["# HELP ai_llm_chunks_total Reply chunks streamed from the LLM, all workers",
              "# TYPE ai_llm_chunks_total counter", f"ai_llm_chunks_total {outcomes.get('llm:chunks', 0)}"]
    return lines


@bp.get("/metrics")
async def metrics(request: Request) -> HTTPResponse:
    body = generate_latest(registry())
    try:
        body += ("\n".join(await cluster_lines(request)) + "\n").encode()
    except Exception:
        body += b"# cluster-wide series unavailable: Redis did not answer\n"
    return raw(body, content_type=CONTENT_TYPE_LATEST)


_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe(request: Request, response: HTTPResponse, seconds: float) -> None:
    route = request.route.path if request.route else "unmatched"
    key = (route, request.method, response.status)
    series = _series.get(key)
    if series is None:  # labels() is a locked dict lookup: resolve each series once
        series = _series[key] = (REQUESTS.labels(route, request.method, str(response.status)), LATENCY.labels(route))
    series[0].inc()
    series[1].observe(seconds)
