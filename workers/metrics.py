"""Prometheus metrics of a worker process (served on WORKER_METRICS_PORT when set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Counter(
    "ai_worker_jobs_total", "Jobs by type and outcome (done, failed, retried, reclaimed)", ["type", "outcome"]
)
RUNNING = Gauge("ai_worker_running_jobs", "Jobs running in this worker process")
LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
LLM_FIRST_TOKEN = Histogram(
    "ai_llm_first_token_seconds", "Chat: from the LLM call to its first token", buckets=LLM_BUCKETS
)
LLM_CALL = Histogram(
    "ai_llm_call_seconds",
    "A whole LLM call (questions: the structured answer; chat: the stream)",
    ["kind"],
    buckets=LLM_BUCKETS,
)
LLM_CHUNKS = Counter("ai_llm_chunks_total", "Reply chunks received from the LLM and published")
LLM_TOKENS = Counter("ai_llm_tokens_total", "Tokens the LLM reported (prompt, completion)", ["kind"])
PUBLISH_LATENCY = Histogram(
    "ai_worker_publish_seconds",
    "From a chunk handed to the publisher to Redis confirming it",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1),
)
# The objective on time to first event (README, Observability): from the prompt's job entering the
# queue (its stream id is Redis' clock) to the LLM's first piece of the reply in this worker.
FIRST_EVENT = Histogram(
    "ai_reply_first_event_seconds",
    "Chat: from the prompt's job entering the queue to the reply's first piece",
    buckets=(0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10, 30, 60),
)
LLM_ERRORS = Counter("ai_llm_errors_total", "LLM calls that failed (questions, chat)", ["kind"])
for _kind in ("questions", "chat"):
    LLM_ERRORS.labels(_kind)
    LLM_CALL.labels(_kind)
