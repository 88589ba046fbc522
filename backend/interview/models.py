"""What /user/questions and /user/info say about the interview (response models, in the OpenAPI
document as named schemas)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from backend.apidoc import Answer, Count, Id
from backend.store.interview import IN_PROGRESS, NOT_STARTED, QUESTION_NOT_READY, SUCCESS


class InterviewQuestionStatus(StrEnum):
    """Where the user's interview is: `NOT_STARTED` (no skill description yet, or generating the
    questions failed), `QUESTION_NOT_READY` (being generated), `IN_PROGRESS` (ready, not all
    answered), `SUCCESS` (every question answered)."""

    NOT_STARTED = NOT_STARTED
    IN_PROGRESS = IN_PROGRESS
    QUESTION_NOT_READY = QUESTION_NOT_READY
    SUCCESS = SUCCESS


class Question(Answer):
    """One multiple-choice question. `correctAnswer` and `explanation` are sent only once the
    interview is complete (`SUCCESS`)."""

    id: Id
    content: str
    choices: list[str] = Field(min_length=2)
    userAnswer: Count | None = Field(None, description="Index in `choices` of the user's answer, once given.")
    correctAnswer: Count | None = Field(None, description="Index in `choices` of the right answer (after SUCCESS).")
    explanation: str | None = Field(None, description="Why that answer is right (after SUCCESS).")


class UserQuestionsResponse(Answer):
    """`ready: false` (status 202) while the questions are being generated; then `ready: true`
    with the questions."""

    ready: bool
    questions: list[Question] | None = None
