"""What the worker measures and traces around its jobs and its LLM, in one place: the jobs and
the LLM providers stay unaware.

`ObservedLLM` wraps whichever LLM make_llm() built. It counts failed calls
(`ai_llm_errors_total{kind}`) and, for a chat reply, observes the time from the prompt's job
entering the queue to the LLM's first piece (`ai_reply_first_event_seconds`, the objective on time
to first event). The job being run reaches it through `current_job`, set by the runner for each
job's task (workers/runner.py), as the request id is for the logs.

Traces (backend/telemetry/tracing.py, only with OTEL_EXPORTER_OTLP_ENDPOINT set): `job_span` continues the
trace whose context the API put in the job's fields (`traceparent`), around all of the job's
attempts; each LLM call is a span of it (model, token counts, time to first token), and the end
of a reply one more (`reply end`, with how it ended). Off, each hook is one check of a flag.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from typing import Any

from backend.store.queue import Job
from backend.telemetry import tracing
from backend.telemetry.replies import count_reply
from workers import metrics
from workers.llm import LLM, GeneratedQuestion, LLMError, ReplyEnd

SERVICE = "ai-backend-worker"
_UNTRACED = contextlib.nullcontext()

current_job: ContextVar[Job | None] = ContextVar("current_job", default=None)


def enqueued_at(job: Job) -> float | None:
    """Unix time the job entered its stream: the milliseconds of its entry id (`<ms>-<seq>`)."""
    ms, _, _ = job.id.partition("-")
    return int(ms) / 1000 if ms.isdigit() else None


def start_tracing() -> bool:
    return tracing.setup(SERVICE)


def job_span(job: Job) -> contextlib.AbstractContextManager[Any]:
    """The job's span, current for its task, continuing the API's trace from the job's fields."""
    if not tracing.enabled:
        return _UNTRACED
    return tracing.span(
        f"job {job.type}",
        kind="CONSUMER",
        parent=job.fields,
        **{"job.id": job.id, "job.type": job.type, "request.id": job.request_id},
    )


def reply_ended(outcome: str) -> None:
    """A reply this worker ended (backend/store/replies.py's on_finish)."""
    count_reply(outcome)
    tracing.event("reply end", **{"reply.outcome": outcome})


def _llm_span(kind: str, model: str) -> Any:
    """A span of the current job's trace that is not made current (it lives across an async
    generator's yields), ended by its caller."""
    from opentelemetry.trace import SpanKind

    return tracing.tracer().start_span(
        f"llm {kind}",
        kind=SpanKind.CLIENT,
        attributes={"gen_ai.operation.name": kind, "gen_ai.request.model": model},
    )


def _failed(span: Any, error: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))


@contextlib.contextmanager
def _observed(kind: str, span: Any) -> Iterator[None]:
    """One LLM call: an LLMError is counted (and marks the span); the span ends with the call."""
    try:
        yield
    except LLMError as error:
        metrics.LLM_ERRORS.labels(kind).inc()
        if span is not None:
            _failed(span, error)
        raise
    finally:
        if span is not None:
            span.end()


class ObservedLLM:
    def __init__(self, llm: LLM, model: str) -> None:
        self.llm = llm
        self.model = model

    async def generate_questions(self, description: str, count: int) -> list[GeneratedQuestion]:
        span = _llm_span("questions", self.model) if tracing.enabled else None
        with _observed("questions", span):
            return await self.llm.generate_questions(description, count)

    async def stream_reply(self, messages: list[dict[str, str]]) -> AsyncIterator[str | ReplyEnd]:
        job = current_job.get()
        span = _llm_span("chat", self.model) if tracing.enabled else None
        started = time.perf_counter()
        first = True
        with _observed("chat", span):
            async for piece in self.llm.stream_reply(messages):
                if isinstance(piece, ReplyEnd):
                    if span is not None:
                        _usage(span, piece)
                elif first:
                    first = False
                    queued = enqueued_at(job) if job is not None else None
                    if queued is not None:
                        metrics.FIRST_EVENT.observe(max(0.0, time.time() - queued))
                    if span is not None:
                        span.set_attribute("llm.time_to_first_token_seconds", time.perf_counter() - started)
                        span.add_event("first token")
                yield piece

    async def aclose(self) -> None:
        await self.llm.aclose()


def _usage(span: Any, end: ReplyEnd) -> None:
    span.set_attribute("gen_ai.response.finish_reasons", [end.finish_reason])
    if end.prompt_tokens is not None:
        span.set_attribute("gen_ai.usage.input_tokens", end.prompt_tokens)
    if end.completion_tokens is not None:
        span.set_attribute("gen_ai.usage.output_tokens", end.completion_tokens)
