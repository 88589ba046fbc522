"""The `questions` job: generate the interview set for one interview id, store it atomically."""

from __future__ import annotations

import logging
import time

from backend.store.datastore import Store
from backend.store.queue import Job
from workers import metrics
from workers.llm import LLM
from workers.llm.base import check_questions

log = logging.getLogger("workers.questions")


class QuestionsJob:
    def __init__(self, store: Store, llm: LLM, count: int) -> None:
        self.store = store
        self.llm = llm
        self.count = count

    async def run(self, job: Job) -> None:
        user_id, interview_id = int(job.fields["userId"]), int(job.fields["interviewId"])
        description = await self.store.interview.pending_description(user_id, interview_id)
        if description is None:
            log.info("questions job superseded", extra={"job": job.id, "request_id": job.request_id})
            return
        started = time.perf_counter()
        questions = check_questions(await self.llm.generate_questions(description, self.count), self.count)
        metrics.LLM_CALL.labels("questions").observe(time.perf_counter() - started)
        stored = await self.store.interview.store_questions(
            user_id,
            interview_id,
            [
                {"content": q.content, "choices": q.choices, "correct": q.correct_index, "explanation": q.explanation}
                for q in questions
            ],
        )
        log.info("questions generated", extra={"job": job.id, "stored": stored, "request_id": job.request_id})

    async def give_up(self, job: Job, error: BaseException | None) -> None:
        await self.store.interview.fail(int(job.fields["userId"]), int(job.fields["interviewId"]))
