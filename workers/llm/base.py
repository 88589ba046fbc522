"""What every LLM provider offers, and the checks its question sets must pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Protocol

from pydantic import BaseModel, Field, StringConstraints

from config.settings import prompt_path

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class GeneratedQuestion(BaseModel):
    content: Text
    choices: Annotated[list[Text], Field(min_length=2, max_length=6)]
    correct_index: int
    explanation: Text


class QuestionSet(BaseModel):
    questions: list[GeneratedQuestion]


class LLMError(Exception):
    """The LLM failed or answered something unusable; the job may be retried."""


class LLM(Protocol):
    async def generate_questions(self, description: str, count: int) -> list[GeneratedQuestion]: ...

    def stream_reply(self, messages: list[dict[str, str]]) -> AsyncIterator[str]: ...

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
