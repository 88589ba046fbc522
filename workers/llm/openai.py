"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp) and Azure OpenAI, through
Chat Completions.

Servers differ in what they refuse; each refusal is answered at once in the way the server
asks, and remembered for the model (in this process) so later calls go right the first time:
- the reply's cap: `max_tokens` (vLLM, Ollama, llama.cpp, older Azure API versions) or
  `max_completion_tokens` (OpenAI's gpt-5.x and o-series);
- structured output: JSON schema, JSON mode, or JSON read from plain text (workers/llm/structured.py);
- a request over the context raises ContextOverflow, for the chat job to send less history.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, cast

import httpx2
import openai
import pydantic
from openai import AsyncAzureOpenAI, AsyncOpenAI
from openai._constants import RAW_RESPONSE_HEADER
from openai._response import AsyncAPIResponse, AsyncResponseContextManager
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from config.settings import Settings
from workers.llm.base import ContextOverflow, GeneratedQuestion, LLMError, QuestionSet, ReplyEnd, load_prompt
from workers.llm.events import sse_pieces
from workers.llm.refusals import context_overflow, refused_parameter, refuses_response_format
from workers.llm.structured import OutputMode, next_mode, parse_answer, schema_text
from workers.llm.transport import Http1Transport, proxied

log = logging.getLogger("workers.llm")

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


CAPS = ("max_tokens", "max_completion_tokens")


@dataclass
class Learned:
    """What one model's server wants, learned from its refusals."""

    cap: str = "max_tokens"  # every OpenAI-compatible server takes it; OpenAI's newest refuse it
    output: OutputMode = "json_schema"


def make_client(settings: Settings) -> AsyncOpenAI:
    # Retries belong to the job runner (backoff, attempts counted in Redis), not the client.
    # One connection per job slot, kept alive: the package's default pool (1,000 connections, 100
    # kept alive) would hold replies past the 1,000th and open a new connection for most others.
    slots = settings.WORKER_CONCURRENCY
    # Our HTTP/1.1 transport (workers/llm/transport.py: a fraction of httpcore2's CPU per chunk
    # and per request) for a plain-HTTP server (vLLM, Ollama, llama.cpp in the cluster or on the
    # host), where it is tested. A TLS server (OpenAI, Azure) and a proxy keep httpx2's own
    # transport, the one the `openai` package is tested with.
    server = settings.AZURE_OPENAI_ENDPOINT if settings.LLM_PROVIDER == "azure" else settings.OPENAI_BASE_URL
    plain_http = server.startswith("http://")
    own = plain_http and not proxied()
    transport: dict[str, Any] = {"transport": Http1Transport(max_connections=slots)} if own else {}
    common: dict[str, Any] = {
        "timeout": settings.LLM_TIMEOUT_SECONDS,
        "max_retries": 0,
        "http_client": openai.DefaultAsyncHttpxClient(
            timeout=settings.LLM_TIMEOUT_SECONDS,
            limits=httpx2.Limits(max_connections=slots, max_keepalive_connections=slots),
            **transport,
        ),
    }
    if settings.LLM_PROVIDER == "azure":
        # /openai/deployments/<LLM_MODEL>/chat/completions?api-version=..., key in `api-key`.
        return AsyncAzureOpenAI(
            azure_endpoint=settings.AZURE_OPENAI_ENDPOINT,
            api_key=settings.AZURE_OPENAI_API_KEY,
            api_version=settings.OPENAI_API_VERSION,
            **common,
        )
    return AsyncOpenAI(api_key=settings.OPENAI_API_KEY, base_url=settings.OPENAI_BASE_URL or None, **common)


class OpenAILLM:
    def __init__(self, settings: Settings) -> None:
        self.model = settings.LLM_MODEL
        self.max_tokens = settings.LLM_MAX_TOKENS
        self.client = make_client(settings)
        self.learned: dict[str, Learned] = {}
        self.system = load_prompt("questions_system.txt")
        self.user = load_prompt("questions_user.txt")
        self.json_prompt = load_prompt("questions_json.txt").format(schema=schema_text(QuestionSet))

    def _learned(self) -> Learned:
        return self.learned.setdefault(self.model, Learned())

    async def generate_questions(self, description: str, count: int) -> list[GeneratedQuestion]:
        learned = self._learned()
        while True:
            mode = learned.output
            try:
                return await self._questions(description, count, mode)
            except openai.APIStatusError as error:
                fallback = next_mode(mode)
                if error.status_code != 400 or fallback is None or not refuses_response_format(error.body):
                    raise classified(error, "question generation") from error
                log.warning(
                    "LLM refused response_format %s; asking with %s from now on",
                    mode,
                    fallback,
                    extra={"model": self.model, "error": str(error)},
                )
                learned.output = fallback
            except openai.OpenAIError as error:
                raise classified(error, "question generation") from error
            except (pydantic.ValidationError, ValueError) as error:  # unusable output: another try may do
                raise LLMError(f"question generation failed: {type(error).__name__}: {error}") from error

    async def _questions(self, description: str, count: int, mode: OutputMode) -> list[GeneratedQuestion]:
        user = self.user.format(count=count, description=description)
        if mode == "json_schema":
            completion = await self.client.chat.completions.parse(
                model=self.model,
                messages=[{"role": "system", "content": self.system}, {"role": "user", "content": user}],
                response_format=QuestionSet,
            )
            if not completion.choices or completion.choices[0].message.parsed is None:
                raise LLMError("question generation returned no structured answer")
            return completion.choices[0].message.parsed.questions
        # The fallbacks carry the schema in the prompt (JSON mode also needs the word "JSON" there).
        extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if mode == "json_object" else {}
        answer = await self.client.chat.completions.create(
            model=self.model,
            messages=[
                {"role": "system", "content": self.system},
                {"role": "user", "content": user + self.json_prompt},
            ],
            **extra,
        )
        content = answer.choices[0].message.content if answer.choices else None
        if not content:
            raise LLMError("question generation returned an empty answer")
        return parse_answer(QuestionSet, content, list_field="questions").questions

    def _streamed_post(self, body: dict[str, Any]) -> AsyncResponseContextManager[AsyncAPIResponse[Any]]:
        """`chat.completions.with_streaming_response.create(**body)` without its request transform.

        The package walks every message through its TypedDict annotations before it posts (22% of
        a worker's samples while 500 replies start at once, py-spy in B6; README, Performance):
        for a body of plain strings that walk changes nothing, so it is posted as it is, through
        the same client (its headers, its Azure deployment URL, its errors and its raw response)."""
        # The raw-response header makes `post` answer the raw response (the package casts it the same way).
        return AsyncResponseContextManager(
            cast(
                Awaitable[AsyncAPIResponse[Any]],
                self.client.post(
                    "/chat/completions",
                    body=body,
                    cast_to=ChatCompletion,
                    options={"headers": {RAW_RESPONSE_HEADER: "stream"}},
                    stream=True,
                    stream_cls=openai.AsyncStream[ChatCompletionChunk],
                ),
            )
        )

    async def _open_stream(
        self, stack: contextlib.AsyncExitStack, messages: list[dict[str, str]]
    ) -> AsyncAPIResponse[Any]:
        """The streamed completion's raw response, asked with the cap parameter the server takes.

        The status is checked here: the package raises its APIStatusError types before any byte
        of the stream is read."""
        learned = self._learned()
        for attempt in range(2):
            cap = learned.cap
            try:
                body = {
                    "model": self.model,
                    "messages": messages,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    cap: self.max_tokens,
                }
                return await stack.enter_async_context(self._streamed_post(body))
            except openai.APIStatusError as error:
                if context_overflow(error.body):
                    raise ContextOverflow(f"chat completion: the request is over the context: {error}") from error
                if attempt == 0 and error.status_code == 400 and refused_parameter(error.body, cap):
                    other = CAPS[1 - CAPS.index(cap)]
                    log.warning(
                        "LLM refused %s; sending %s from now on",
                        cap,
                        other,
                        extra={"model": self.model, "error": str(error)},
                    )
                    learned.cap = other
                    continue
                raise classified(error, "chat completion") from error
            except openai.OpenAIError as error:
                raise classified(error, "chat completion") from error
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def stream_reply(self, messages: list[dict[str, str]]) -> AsyncIterator[str | ReplyEnd]:
        """The reply read from the raw event stream: its `data:` lines parsed with orjson, no
        pydantic object per chunk (that cost about 175 us of CPU a chunk; see README, B7)."""
        async with contextlib.AsyncExitStack() as stack:
            response = await self._open_stream(stack, messages)
            end = ReplyEnd()
            try:
                async for piece in sse_pieces(response.http_response.aiter_bytes()):
                    if isinstance(piece, ReplyEnd):
                        end = piece
                        break
                    yield piece
            except LLMError:
                raise
            except Exception as error:  # transport errors mid-stream (httpx2's), a line that is not JSON
                raise LLMError(f"chat stream failed: {type(error).__name__}: {error}") from error
        yield end

    async def aclose(self) -> None:
        await self.client.close()
