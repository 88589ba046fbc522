"""The LLM layer: one small interface, an OpenAI-compatible provider and an offline fake."""

from __future__ import annotations

from config.settings import Settings
from workers.llm.base import LLM, GeneratedQuestion, LLMError, QuestionSet, ReplyEnd


def make_llm(settings: Settings) -> LLM:
    if settings.LLM_PROVIDER == "openai":
        from workers.llm.openai import OpenAILLM

        return OpenAILLM(settings)
    from workers.llm.fake import FakeLLM

    return FakeLLM(settings)


__all__ = ["LLM", "GeneratedQuestion", "LLMError", "QuestionSet", "ReplyEnd", "make_llm"]
