"""Prometheus metrics of the API.

Per-process series (requests, latency, open streams) use prometheus-client's multiprocess
mode when API_WORKERS > 1, so one scrape covers every Sanic worker. Cluster-wide series (queue
depth, pending jobs, job outcomes, LLM chunks) are read from Redis at scrape time, so any pod
reports the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sanic import Blueprint
from sanic.response import BaseHTTPResponse, HTTPResponse, raw

from backend.admission import QueueWatch
from backend.apidoc import Other, operation
from backend.context import ApiRequest, App
from backend.store import Memory, StoreUnavailable

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


class Families:
    """A collector of metric families computed before the scrape (some need Redis, which a
    collector's sync collect() cannot await); prometheus_client writes and escapes them."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def shedding_families(watch: QueueWatch) -> list[Metric]:
    """This pod's view of the queue: what its load shedding acts on."""
    families: list[Metric] = [
        gauge(
            "ai_api_queue_max_wait_seconds",
            "QUEUE_MAX_WAIT_SECONDS: older waiting jobs make this pod shed load",
            watch.max_wait,
        ),
        gauge(
            "ai_api_queue_wait_seconds",
            "Oldest job not yet taken by a worker, as this pod last saw it",
            round(watch.oldest_wait, 3),
        ),
        gauge(
            "ai_api_shedding", "Whether this pod refuses new prompts now (QUEUE_MAX_WAIT_SECONDS)", int(watch.shedding)
        ),
        gauge(
            "ai_api_worker_slots",
            "Worker slots of every live worker, as this pod last saw their reports",
            watch.backlog.capacity.slots,
        ),
        gauge(
            "ai_api_worker_slots_free",
            "Worker slots no job holds or waits for, as this pod last saw them",
            max(0, watch.free_slots),
        ),
    ]
    job_seconds = watch.backlog.capacity.job_seconds
    if job_seconds is not None:  # known once a worker has finished a chat job
        families.append(
            gauge(
                "ai_api_worker_job_seconds",
                "A chat job's average length, as the workers report it",
                round(job_seconds, 3),
            )
        )
    return families


async def cluster_families(app: App) -> list[Metric]:
    """Series of the whole deployment, read from Redis; exported by one pod (the lease holder)."""
    queue = app.ctx.store.queue
    streams = await queue.streams()
    outcomes = await queue.outcomes()
    depth = GaugeMetricFamily(
        "ai_jobs_queue_depth", "Jobs waiting in their stream, not yet taken by a worker", labels=["type"]
    )
    pending = GaugeMetricFamily("ai_jobs_pending", "Jobs taken by a worker and not yet acknowledged", labels=["type"])
    oldest = GaugeMetricFamily(
        "ai_jobs_oldest_wait_seconds", "Age of the oldest job not yet taken by a worker", labels=["type"]
    )
    for stream in streams:
        depth.add_metric([stream.type], stream.waiting)
        pending.add_metric([stream.type], stream.pending)
        oldest.add_metric([stream.type], round(stream.oldest_wait_seconds, 3))
    dead = gauge(
        "ai_jobs_dead",
        "Jobs that failed for good, kept as dead letters (python -m workers.admin dead)",
        await queue.dead_count(),
    )
    jobs = CounterMetricFamily(
        "ai_jobs",
        "Jobs by type and outcome (done, failed, retried, reclaimed), all workers",
        labels=["type", "outcome"],
    )
    for field, count in sorted(outcomes.items()):
        job_type, _, outcome = field.partition(":")
        if job_type != "llm":
            jobs.add_metric([job_type, outcome], count)
    return [depth, pending, oldest, dead, jobs]


def render(families: list[Metric]) -> bytes:
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(Families(families))
    return generate_latest(scrape)


def memory_families(servers: list[Memory]) -> list[Metric]:
    """Redis memory against its limit: writes are refused (503) once used reaches max."""
    labels = ["node"] if any(server.node for server in servers) else []
    used = GaugeMetricFamily(
        "ai_redis_memory_used_bytes", "Memory Redis uses (INFO used_memory), per Cluster master", labels=labels
    )
    limit = GaugeMetricFamily(
        "ai_redis_memory_max_bytes", "Redis maxmemory (0: no limit), per Cluster master", labels=labels
    )
    for server in servers:
        values = [server.node] if labels else []
        used.add_metric(values, server.used)
        limit.add_metric(values, server.limit)
    return [used, limit]


@bp.get("/metrics")
@operation(
    "getMetrics",
    "Prometheus metrics (text exposition format)",
    store=False,
    responses={
        200: Other("Requests, latency, open streams, queue depth, jobs (README, Metrics).", "text/plain; version=0.0.4")
    },
)
async def metrics(request: ApiRequest) -> HTTPResponse:
    return raw(await exposition(request.app), content_type=CONTENT_TYPE_LATEST)


async def exposition(app: App) -> bytes:
    """The whole /metrics body, on the API port or on METRICS_PORT (backend/ops/metrics_server.py)."""
    body = generate_latest(registry())
    watch: QueueWatch = app.ctx.queue_watch
    ready = await app.ctx.store.ping()  # what /ready answers: one PING a scrape
    body += render([gauge("ai_api_ready", "Whether Redis answers this pod (/ready)", int(ready))])
    body += render(shedding_families(watch))
    # Every pod, not only the leader: its lease is a write, which a full Redis refuses.
    try:
        body += render(memory_families(await app.ctx.store.memory()))
    except StoreUnavailable:
        body += b"# Redis memory unavailable: Redis did not answer\n"
    if not watch.leader:
        body += b"# cluster-wide job series are exported by one API pod (the metrics-leader lease)\n"
        return body
    try:
        body += render(await cluster_families(app))
    except StoreUnavailable:
        body += b"# cluster-wide series unavailable: Redis did not answer\n"
    return body


_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

# Label values come from fixed sets, whatever clients send: any other method is "other", a path
# that matched no route is "unmatched" (the route label is the route's pattern, never the path).
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


def observe(request: ApiRequest, response: BaseHTTPResponse, seconds: float) -> None:
    route = request.route.path if request.route else "unmatched"
    method = request.method if request.method in METHODS else "other"
    key = (route, method, response.status)
    series = _series.get(key)
    if series is None:  # labels() is a locked dict lookup: resolve each series once
        series = _series[key] = (REQUESTS.labels(route, method, str(response.status)), LATENCY.labels(route))
    series[0].inc()
    series[1].observe(seconds)
