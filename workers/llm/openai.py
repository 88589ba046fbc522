"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp) through Chat Completions."""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import AsyncIterator
from typing import cast

import httpx2
import openai
import pydantic
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from config.settings import Settings
from workers.llm.base import GeneratedQuestion, LLMError, QuestionSet, ReplyEnd, load_prompt

# Answers after which another attempt cannot succeed: the request, the key or the model is wrong.
FINAL_STATUSES = {400, 401, 403, 404, 422}
USER_MESSAGES = {
    401: "The assistant is not configured correctly (its API key was refused). Please tell the operator.",
    403: "The assistant is not allowed to use its model. Please tell the operator.",
    404: "The assistant's model is not available. Please tell the operator.",
    429: "The assistant is over its usage limit right now. Please try again in a minute.",
}


def retry_after(response: httpx2.Response) -> float | None:
    """The provider's Retry-After (seconds or an HTTP date), or OpenAI's retry-after-ms."""
    headers = response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(ms) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def classified(error: openai.OpenAIError, what: str) -> LLMError:
    """The openai client's exception as an LLMError the runner knows how to retry (or not)."""
    message = f"{what} failed: {type(error).__name__}: {error}"
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        return LLMError(
            message,
            retryable=status not in FINAL_STATUSES,
            retry_after=retry_after(error.response),
            user_message=USER_MESSAGES.get(status),
        )
    # Timeouts and connection errors (APITimeoutError, APIConnectionError) are worth another try.
    return LLMError(message, retryable=isinstance(error, openai.APIConnectionError))


class OpenAILLM:
    def __init__(self, settings: Settings) -> None:
        self.model = settings.LLM_MODEL
        self.max_tokens = settings.LLM_MAX_TOKENS
        # Retries belong to the job runner (backoff, attempts counted in Redis), not the client.
        self.client = AsyncOpenAI(
            api_key=settings.OPENAI_API_KEY,
            base_url=settings.OPENAI_BASE_URL or None,
            timeout=settings.LLM_TIMEOUT_SECONDS,
            max_retries=0,
        )
        self.system = load_prompt("questions_system.txt")
        self.user = load_prompt("questions_user.txt")

    async def generate_questions(self, description: str, count: int) -> list[GeneratedQuestion]:
        messages = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user.format(count=count, description=description)},
        ]
        try:
            completion = await self.client.chat.completions.parse(
                model=self.model,
                messages=cast("list[ChatCompletionMessageParam]", messages),  # plain role/content dicts
                response_format=QuestionSet,
            )
        except openai.OpenAIError as error:
            raise classified(error, "question generation") from error
        except (pydantic.ValidationError, ValueError) as error:  # unusable output: another try may do
            raise LLMError(f"question generation failed: {type(error).__name__}: {error}") from error
        if not completion.choices or completion.choices[0].message.parsed is None:
            raise LLMError("question generation returned no structured answer")
        return completion.choices[0].message.parsed.questions

    async def stream_reply(self, messages: list[dict[str, str]]) -> AsyncIterator[str | ReplyEnd]:
        try:
            # `max_tokens`, not `max_completion_tokens`: the one every OpenAI-compatible server
            # (vLLM, Ollama, llama.cpp) honours; OpenAI still takes it for its chat models.
            stream = await self.client.chat.completions.create(
                model=self.model,
                messages=cast("list[ChatCompletionMessageParam]", messages),  # plain role/content dicts
                stream=True,
                max_tokens=self.max_tokens,
                stream_options={"include_usage": True},
            )
        except openai.OpenAIError as error:
            raise classified(error, "chat completion") from error
        finish_reason, usage = "stop", None
        try:
            async for chunk in stream:
                if chunk.usage is not None:  # the usage chunk (no choices), when the server sends one
                    usage = chunk.usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.finish_reason:
                    finish_reason = "length" if choice.finish_reason == "length" else "stop"
                if choice.delta.content:
                    yield choice.delta.content
        except Exception as error:  # transport errors mid-stream are not always wrapped by openai
            raise LLMError(f"chat stream failed: {type(error).__name__}: {error}") from error
        finally:
            await stream.close()
        yield ReplyEnd(
            finish_reason, usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None
        )

    async def aclose(self) -> None:
        await self.client.close()
