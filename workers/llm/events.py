"""A Chat Completions event stream read as bytes: one `data:` line an event, each parsed with
orjson into plain dicts (the servers, OpenAI's, vLLM's, Ollama's, llama.cpp's, write one line
of JSON per event)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import orjson

from workers.llm.base import LLMError, ReplyEnd


async def sse_pieces(stream: AsyncIterable[bytes]) -> AsyncIterator[str | ReplyEnd]:
    """The reply's text pieces, then one ReplyEnd (at `[DONE]`, or when the stream ends).

    An error object in the stream (`data: {"error": ...}`, as OpenAI sends one mid-stream)
    raises LLMError, retryable like any failure of a stream."""
    finish_reason, usage = "stop", None
    pending = b""
    async for data in stream:
        *lines, pending = (pending + data).split(b"\n") if pending else data.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, `: comments`, `event:` and `id:` fields
            payload = line[5:].strip()
            if payload == b"[DONE]":
                yield ReplyEnd(finish_reason, *usage_of(usage))
                return
            event = orjson.loads(payload)
            if event.get("error"):
                raise LLMError(f"chat stream failed: the server sent an error: {event['error']}")
            if event.get("usage"):  # the usage chunk (no choices), when the server sends one
                usage = event["usage"]
            choices = event.get("choices")
            if not choices:
                continue
            choice = choices[0]
            if choice.get("finish_reason"):
                finish_reason = "length" if choice["finish_reason"] == "length" else "stop"
            content = (choice.get("delta") or {}).get("content")
            if content:
                yield content
    yield ReplyEnd(finish_reason, *usage_of(usage))


def usage_of(usage: dict[str, int] | None) -> tuple[int | None, int | None]:
    if not usage:
        return None, None
    return usage.get("prompt_tokens"), usage.get("completion_tokens")
