"""The LLM layer: one small interface, an OpenAI-compatible (and Azure OpenAI) provider and an
offline fake."""

from __future__ import annotations

from config.settings import Settings
from workers.llm.base import LLM, ContextOverflow, GeneratedQuestion, LLMError, QuestionSet, ReplyEnd


def make_llm(settings: Settings) -> LLM:
    if settings.LLM_PROVIDER in ("openai", "azure"):
        from workers.llm.openai import OpenAILLM

        return OpenAILLM(settings)
    from workers.llm.fake import FakeLLM

    return FakeLLM(settings)


__all__ = ["LLM", "ContextOverflow", "GeneratedQuestion", "LLMError", "QuestionSet", "ReplyEnd", "make_llm"]
