"""Prometheus metrics of a worker process (served on WORKER_METRICS_PORT when set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Counter("ai_worker_jobs_total", "Jobs by type and outcome (done, failed, retried, reclaimed)",
               ["type", "outcome"])
RUNNING = Gauge("ai_worker_running_jobs", "Jobs running in this worker process")
LLM_LATENCY = Histogram("ai_llm_request_seconds", "LLM call duration (questions: whole call; chat: to first token)",
                        ["kind"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
LLM_TOKENS = Counter("ai_llm_chunks_total", "Reply chunks received from the LLM and published")
PUBLISH_LATENCY = Histogram("ai_worker_publish_seconds", "From a chunk handed to the publisher to Redis confirming it",
                            buckets=(0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1))
