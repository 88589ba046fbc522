"""What the worker measures around its LLM, in one place: the jobs and providers stay unaware.

`ObservedLLM` wraps whichever LLM make_llm() built. It counts failed calls
(`ai_llm_errors_total{kind}`) and, for a chat reply, observes the time from the prompt's job
entering the queue to the LLM's first piece (`ai_reply_first_event_seconds`, the objective on time
to first event). The job being run reaches it through `current_job`, set by the runner for each
job's task (workers/runner.py), as the request id is for the logs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextvars import ContextVar

from backend.store.queue import Job
from workers import metrics
from workers.llm import LLM, GeneratedQuestion, LLMError, ReplyEnd

current_job: ContextVar[Job | None] = ContextVar("current_job", default=None)


def enqueued_at(job: Job) -> float | None:
    """Unix time the job entered its stream: the milliseconds of its entry id (`<ms>-<seq>`)."""
    ms, _, _ = job.id.partition("-")
    return int(ms) / 1000 if ms.isdigit() else None


class ObservedLLM:
    def __init__(self, llm: LLM) -> None:
        self.llm = llm

    async def generate_questions(self, description: str, count: int) -> list[GeneratedQuestion]:
        try:
            return await self.llm.generate_questions(description, count)
        except LLMError:
            metrics.LLM_ERRORS.labels("questions").inc()
            raise

    async def stream_reply(self, messages: list[dict[str, str]]) -> AsyncIterator[str | ReplyEnd]:
        job = current_job.get()
        first = True
        try:
            async for piece in self.llm.stream_reply(messages):
                if first and not isinstance(piece, ReplyEnd):
                    first = False
                    queued = enqueued_at(job) if job is not None else None
                    if queued is not None:
                        metrics.FIRST_EVENT.observe(max(0.0, time.time() - queued))
                yield piece
        except LLMError:
            metrics.LLM_ERRORS.labels("chat").inc()
            raise

    async def aclose(self) -> None:
        await self.llm.aclose()
