"""Interview state: description, generated question set, answers (lua/*interview*, answer)."""

from __future__ import annotations

from typing import Any

import orjson

from backend.redis.clients import AnyRedis
from backend.redis.errors import translate_errors
from backend.redis.scripts import Scripts
from backend.store import keys

NOT_STARTED = "NOT_STARTED"
QUESTION_NOT_READY = "QUESTION_NOT_READY"
IN_PROGRESS = "IN_PROGRESS"
SUCCESS = "SUCCESS"


@translate_errors
class Interview:
    def __init__(self, redis: AnyRedis, scripts: Scripts) -> None:
        self.redis = redis
        self.scripts = scripts

    async def start(self, user_id: int, description: str) -> int:
        """Replace the user's interview with a new one; returns its id (the job's fence)."""
        return int(
            await self.scripts.start_interview(
                keys=[keys.user(user_id), keys.questions(user_id), keys.answers(user_id)],
                args=[description],
            )
        )

    async def store_questions(self, user_id: int, interview_id: int, questions: list[dict[str, Any]]) -> bool:
        """Store a generated set; False when a newer interview superseded this one."""
        first_id = await self.redis.incrby(keys.QUESTION_SEQ, len(questions)) - len(questions) + 1
        args: list[Any] = [interview_id, first_id]
        for q in questions:
            public = {
                "content": q["content"],
                "choices": q["choices"],
                "explanation": q["explanation"],
                "correct": q["correct"],
            }
            args += [orjson.dumps(public), len(q["choices"]), q["correct"]]
        stored = await self.scripts.store_questions(
            keys=[keys.user(user_id), keys.questions(user_id), keys.answers(user_id)],
            args=args,
        )
        return bool(stored)

    async def pending_description(self, user_id: int, interview_id: int) -> str | None:
        """The skill description to generate questions for; None when a newer interview superseded it."""
        current, description = await self.redis.hmget(keys.user(user_id), "interviewId", "skillDescription")
        if current is None or int(current) != interview_id:
            return None
        return None if description is None else str(description)

    async def reopen(self, user_id: int, interview_id: int) -> bool:
        """A failed generation is retried: the interview waits for questions again (if current)."""
        return bool(await self.scripts.reopen_interview(keys=[keys.user(user_id)], args=[interview_id]))

    async def fail(self, user_id: int, interview_id: int) -> bool:
        return bool(await self.scripts.fail_interview(keys=[keys.user(user_id)], args=[interview_id]))

    async def answer(self, user_id: int, question_id: int, answer: int) -> str:
        return str(
            await self.scripts.answer(
                keys=[keys.user(user_id), keys.questions(user_id), keys.answers(user_id)],
                args=[question_id, answer],
            )
        )

    async def snapshot(self, user_id: int) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """User hash, questions hash and answers hash, read at one instant (lua/read_interview.lua)."""
        user, questions, answers = (
            dict(zip(flat[::2], flat[1::2], strict=True))
            for flat in await self.scripts.read_interview(
                keys=[keys.user(user_id), keys.questions(user_id), keys.answers(user_id)]
            )
        )
        return user, questions, answers


def question_views(user: dict[str, str], questions: dict[str, str], answers: dict[str, str]) -> list[dict[str, Any]]:
    """Questions as clients see them; correct answers only once the interview is complete."""
    done = user.get("status") == SUCCESS
    views = []
    for qid in filter(None, user.get("questionIds", "").split(",")):
        stored = orjson.loads(questions[qid])
        view: dict[str, Any] = {"id": int(qid), "content": stored["content"], "choices": stored["choices"]}
        if qid in answers:
            view["userAnswer"] = int(answers[qid])
        if done:
            view["correctAnswer"] = stored["correct"]
            view["explanation"] = stored["explanation"]
        views.append(view)
    return views
