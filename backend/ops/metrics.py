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
from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, raw

from backend.apidoc import Other, operation
from backend.ops.queue_watch import QueueWatch
from backend.store.errors import StoreUnavailable

REQUESTS = Counter("ai_http_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"])
LATENCY = Histogram(
    "ai_http_request_seconds",
    "Time to the response head by route",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
OPEN_STREAMS = Gauge("ai_sse_open_streams", "SSE streams open on this API", multiprocess_mode="livesum")

bp = Blueprint("ops_metrics")


def registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        return merged
    return REGISTRY


def shedding_lines(watch: QueueWatch) -> list[str]:
    """This pod's view of the queue: what its load shedding acts on."""
    lines = [
        "# HELP ai_api_queue_max_wait_seconds QUEUE_MAX_WAIT_SECONDS: older waiting jobs make this pod shed load",
        "# TYPE ai_api_queue_max_wait_seconds gauge",
        f"ai_api_queue_max_wait_seconds {watch.max_wait:g}",
        "# HELP ai_api_queue_wait_seconds Oldest job not yet taken by a worker, as this pod last saw it",
        "# TYPE ai_api_queue_wait_seconds gauge",
        f"ai_api_queue_wait_seconds {watch.oldest_wait:.3f}",
        "# HELP ai_api_shedding Whether this pod refuses new prompts now (QUEUE_MAX_WAIT_SECONDS)",
        "# TYPE ai_api_shedding gauge",
        f"ai_api_shedding {int(watch.shedding)}",
        "# HELP ai_api_worker_slots Worker slots of every live worker, as this pod last saw their reports",
        "# TYPE ai_api_worker_slots gauge",
        f"ai_api_worker_slots {watch.backlog.capacity.slots}",
        "# HELP ai_api_worker_slots_free Worker slots no job holds or waits for, as this pod last saw them",
        "# TYPE ai_api_worker_slots_free gauge",
        f"ai_api_worker_slots_free {max(0, watch.free_slots)}",
    ]
    job_seconds = watch.backlog.capacity.job_seconds
    if job_seconds is not None:  # known once a worker has finished a chat job
        lines += [
            "# HELP ai_api_worker_job_seconds A chat job's average length, as the workers report it",
            "# TYPE ai_api_worker_job_seconds gauge",
            f"ai_api_worker_job_seconds {job_seconds:.3f}",
        ]
    return lines


async def cluster_lines(app: Sanic) -> list[str]:
    """Series of the whole deployment, read from Redis; exported by one pod (the lease holder)."""
    queue = app.ctx.store.queue
    streams = await queue.streams()
    outcomes = await queue.outcomes()
    lines = [
        "# HELP ai_jobs_queue_depth Jobs waiting in their stream, not yet taken by a worker",
        "# TYPE ai_jobs_queue_depth gauge",
    ]
    lines += [f'ai_jobs_queue_depth{{type="{s.type}"}} {s.waiting}' for s in streams]
    lines += ["# HELP ai_jobs_pending Jobs taken by a worker and not yet acknowledged", "# TYPE ai_jobs_pending gauge"]
    lines += [f'ai_jobs_pending{{type="{s.type}"}} {s.pending}' for s in streams]
    lines += [
        "# HELP ai_jobs_oldest_wait_seconds Age of the oldest job not yet taken by a worker",
        "# TYPE ai_jobs_oldest_wait_seconds gauge",
    ]
    lines += [f'ai_jobs_oldest_wait_seconds{{type="{s.type}"}} {s.oldest_wait_seconds:.3f}' for s in streams]
    lines += [
        "# HELP ai_jobs_dead Jobs that failed for good, kept as dead letters (python -m workers.admin dead)",
        "# TYPE ai_jobs_dead gauge",
        f"ai_jobs_dead {await queue.dead_count()}",
        "# HELP ai_jobs_total Jobs by type and outcome (done, failed, retried, reclaimed), all workers",
        "# TYPE ai_jobs_total counter",
    ]
    for field, count in sorted(outcomes.items()):
        job_type, _, outcome = field.partition(":")
        if job_type != "llm":
            lines.append(f'ai_jobs_total{{type="{job_type}",outcome="{outcome}"}} {count}')
    return lines


@bp.get("/metrics")
@operation(
    "getMetrics",
    "Prometheus metrics (text exposition format)",
    store=False,
    responses={
        200: Other("Requests, latency, open streams, queue depth, jobs (README, Metrics).", "text/plain; version=0.0.4")
    },
)
async def metrics(request: Request) -> HTTPResponse:
    return raw(await exposition(request.app), content_type=CONTENT_TYPE_LATEST)


async def exposition(app: Sanic) -> bytes:
    """The whole /metrics body, on the API port or on METRICS_PORT (backend/ops/metrics_server.py)."""
    body = generate_latest(registry())
    watch: QueueWatch = app.ctx.queue_watch
    ready = await app.ctx.store.ping()  # what /ready answers: one PING a scrape
    lines = ["# HELP ai_api_ready Whether Redis answers this pod (/ready)", "# TYPE ai_api_ready gauge"]
    lines += [f"ai_api_ready {int(ready)}", *shedding_lines(watch)]
    body += ("\n".join(lines) + "\n").encode()
    if not watch.leader:
        body += b"# cluster-wide job series are exported by one API pod (the metrics-leader lease)\n"
        return body
    try:
        body += ("\n".join(await cluster_lines(app)) + "\n").encode()
    except StoreUnavailable:
        body += b"# cluster-wide series unavailable: Redis did not answer\n"
    return body


_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

# Label values come from fixed sets, whatever clients send: any other method is "other", a path
# that matched no route is "unmatched" (the route label is the route's pattern, never the path).
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


def observe(request: Request, response: HTTPResponse, seconds: float) -> None:
    route = request.route.path if request.route else "unmatched"
    method = request.method if request.method in METHODS else "other"
    key = (route, method, response.status)
    series = _series.get(key)
    if series is None:  # labels() is a locked dict lookup: resolve each series once
        series = _series[key] = (REQUESTS.labels(route, method, str(response.status)), LATENCY.labels(route))
    series[0].inc()
    series[1].observe(seconds)
