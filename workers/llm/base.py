"""What every LLM provider offers, and the checks its question sets must pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Protocol

from pydantic import BaseModel, Field, StringConstraints

from config.settings import prompt_path
from workers.errors import AttemptFailed

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class GeneratedQuestion(BaseModel):
    content: Text
    choices: Annotated[list[Text], Field(min_length=2, max_length=6)]
    correct_index: int
    explanation: Text


class QuestionSet(BaseModel):
    questions: list[GeneratedQuestion]


class LLMError(AttemptFailed):
    """The LLM failed or answered something unusable.

    `retryable` is False when another attempt cannot succeed (a bad request, a bad key, an
    unknown model); `retry_after` is the provider's own wait, when it gave one. The job runner
    reads both (workers/errors.py).
    """

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None, user_message: str | None = None
    ) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after)
        self.user_message = user_message  # what a user can act on, when the reply fails for good


class ContextOverflow(LLMError):
    """The server says the request does not fit the model's context. Raised before the first
    piece of a reply, so the caller may ask again with less history."""

    def __init__(self, message: str) -> None:
        super().__init__(
            message,
            retryable=False,
            user_message="Your message is too long for the assistant's model, even without the earlier "
            "conversation. Please send a shorter message.",
        )


@dataclass(frozen=True)
class ReplyEnd:
    """The last item of a streamed reply: why it ended and, when the LLM reports it, its cost."""

    finish_reason: str = "stop"  # "stop", or "length" when LLM_MAX_TOKENS cut it
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class LLM(Protocol):
    async def generate_questions(self, description: str, count: int) -> list[GeneratedQuestion]: ...

    def stream_reply(self, messages: list[dict[str, str]]) -> AsyncIterator[str | ReplyEnd]:
        """The reply's text pieces as they come, then one ReplyEnd."""
        ...

    async def aclose(self) -> None: ...


def check_questions(questions: list[GeneratedQuestion], count: int) -> list[GeneratedQuestion]:
    """Reject sets a user must not see: wrong count, duplicate choices, correct index out of range."""
    if len(questions) != count:
        raise LLMError(f"expected {count} questions, got {len(questions)}")
    for number, question in enumerate(questions, 1):
        normalized = {choice.strip().casefold() for choice in question.choices}
        if len(normalized) != len(question.choices):
            raise LLMError(f"question {number} has duplicate choices")
        if not 0 <= question.correct_index < len(question.choices):
            raise LLMError(f"question {number} has no valid correct index")
    return questions


def load_prompt(name: str) -> str:
    with open(prompt_path(name), encoding="utf-8") as file:
        return file.read()
