"""/user/skill-description, /user/questions, /user/questions/:id/answer."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StrictInt, StringConstraints
from sanic import Blueprint
from sanic.response import HTTPResponse, json

from backend.admission import admitted, limit_rate
from backend.apidoc import INT64, Json, MessageResponse, Param, operation, trimmed
from backend.auth.guard import authenticated
from backend.context import ApiRequest
from backend.errors import BadRequest, Conflict, NotFound
from backend.interview.models import UserQuestionsResponse
from backend.parsing import parse_body
from backend.store.interview import NOT_STARTED, QUESTION_NOT_READY, question_views

bp = Blueprint("interview", url_prefix="/user")


class SkillDescriptionRequest(BaseModel):
    description: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=4000, strict=True),
        Field(**trimmed(1, 4000)),
    ]


MAX_CHOICES = 6  # a question's choices at most (workers/llm/base.py checks what the LLM writes)


class UserAnswerRequest(BaseModel):
    answer: StrictInt = Field(
        ge=0,
        le=MAX_CHOICES - 1,
        description="Index in the question's `choices` (0 for the first).",
        json_schema_extra=INT64,
    )


@bp.post("/skill-description")
@operation(
    "setSkillDescription",
    "Set the skill description and start a new interview",
    description="Stores the description and queues the generation of the questions: the status becomes "
    "QUESTION_NOT_READY and earlier questions and answers are replaced.",
    body=SkillDescriptionRequest,
    responses={
        200: MessageResponse,
        429: "Too many descriptions this minute (`RATE_LIMIT_INTERVIEW_PER_MINUTE`).",
        503: "Redis is unavailable, or the question writers are far behind: try again after `Retry-After`.",
    },
)
@admitted("questions")  # the question writers far behind: 503 with Retry-After, before the session check
@authenticated
async def skill_description(request: ApiRequest) -> HTTPResponse:
    body = parse_body(request, SkillDescriptionRequest)
    ctx = request.app.ctx
    user_id = request.ctx.user_id
    await limit_rate(ctx.store.limiter, "interview", str(user_id), ctx.settings.RATE_LIMIT_INTERVIEW_PER_MINUTE)
    interview_id = await ctx.store.interview.start(user_id, body.description)

    async def fail() -> None:  # no worker will see it: not "not ready" forever
        await ctx.store.interview.fail(user_id, interview_id)

    await request.ctx.admission.enqueue(
        ctx.store.queue, request.ctx.request_id, fail, userId=user_id, interviewId=interview_id
    )
    return json({"message": "Skill description saved. Your interview questions are being prepared."})


@bp.get("/questions")
@operation(
    "getQuestions",
    "The interview questions (202 while they are being written)",
    responses={
        200: Json(
            UserQuestionsResponse, "The questions.", links={"answerQuestion": {"id": "$response.body#/questions/0/id"}}
        ),
        202: Json(UserQuestionsResponse, 'Not ready yet: `{"ready": false}`; ask again shortly.'),
        409: "No interview: no skill description yet, or writing the questions failed (send it again).",
    },
)
@authenticated
async def questions(request: ApiRequest) -> HTTPResponse:
    user, stored, answers = await request.app.ctx.store.interview.snapshot(request.ctx.user_id)
    status = user.get("status", NOT_STARTED)
    if status == NOT_STARTED:
        if user.get("generationFailed") == "1":
            raise Conflict("Generating your interview questions failed. Please submit your skill description again.")
        raise Conflict("No interview yet: submit your skill description first.")
    if status == QUESTION_NOT_READY:
        return json({"ready": False}, status=202)
    return json({"ready": True, "questions": question_views(user, stored, answers)})


OUTCOMES = {
    "recorded": (200, "Answer saved."),
    "completed": (200, "Answer saved. The interview is complete."),
    "not_in_progress": (409, "The interview is not in progress: there are no open questions to answer."),
    "unknown_question": (404, "No such question in your current interview."),
    "out_of_range": (400, "Invalid field 'answer': it must be the index of one of the question's choices."),
}


@bp.post("/questions/<question_id:int>/answer")
@operation(
    "answerQuestion",
    "Answer a question (again, to change the answer, until the interview is complete)",
    path={"question_id": Param("id", "The question's id (`id` in /user/questions).")},
    body=UserAnswerRequest,
    responses={
        200: MessageResponse,
        400: 'The body is not `{"answer": <integer>}`, or `answer` is not the index of one of the choices.',
        404: "No such question in the user's current interview.",
        409: "The interview is not in progress: no open questions.",
    },
)
@authenticated
async def answer(request: ApiRequest, question_id: int) -> HTTPResponse:
    body = parse_body(request, UserAnswerRequest)
    outcome = await request.app.ctx.store.interview.answer(request.ctx.user_id, question_id, body.answer)
    status, message = OUTCOMES[outcome]
    if status == 200:
        return json({"message": message})
    raise {400: BadRequest, 404: NotFound, 409: Conflict}[status](message)
