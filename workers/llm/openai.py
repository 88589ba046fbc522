"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp) through Chat Completions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pydantic
from openai import AsyncOpenAI

from config.settings import Settings
from workers.llm.base import GeneratedQuestion, LLMError, QuestionSet, load_prompt


class OpenAILLM:
    def __init__(self, settings: Settings) -> None:
        self.model = settings.LLM_MODEL
        # Retries belong to the job runner (backoff, attempts counted in Redis), not the client.
        self.client = AsyncOpenAI(api_key=settings.OPENAI_API_KEY, base_url=settings.OPENAI_BASE_URL or None,
                                  timeout=settings.LLM_TIMEOUT_SECONDS, max_retries=0)
        self.system = load_prompt("questions_system.txt")
        self.user = load_prompt("questions_user.txt")

    async def generate_questions(self, description: str, count: int) -> list[GeneratedQuestion]:
        messages = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user.format(count=count, description=description)},
        ]
        try:
            completion = await self.client.chat.completions.parse(
                model=self.model, messages=messages, response_format=QuestionSet  # type: ignore[arg-type]
            )
        except (openai.OpenAIError, pydantic.ValidationError, ValueError) as error:
            raise LLMError(f"question generation failed: {type(error).__name__}: {error}") from error
        if not completion.choices or completion.choices[0].message.parsed is None:
            raise LLMError("question generation returned no structured answer")
        return completion.choices[0].message.parsed.questions

    async def stream_reply(self, messages: list[dict[str, str]]) -> AsyncIterator[str]:
        try:
            stream = await self.client.chat.completions.create(
                model=self.model, messages=messages, stream=True  # type: ignore[arg-type]
            )
        except openai.OpenAIError as error:
            raise LLMError(f"chat completion failed: {type(error).__name__}: {error}") from error
        try:
            async for chunk in stream:
                if not chunk.choices:  # the usage chunk
                    continue
                content = chunk.choices[0].delta.content
                if content:
                    yield content
        except Exception as error:  # transport errors mid-stream are not always wrapped by openai
            raise LLMError(f"chat stream failed: {type(error).__name__}: {error}") from error
        finally:
            await stream.close()

    async def aclose(self) -> None:
        await self.client.close()
