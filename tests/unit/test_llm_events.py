"""The raw Chat Completions event stream read as bytes, whatever the read boundaries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from workers.llm.base import LLMError, ReplyEnd
from workers.llm.events import sse_pieces


def chunk(content: str | None = None, finish: str | None = None) -> dict:
    delta = {} if content is None else {"content": content}
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def wire(*events: object, done: bool = True) -> bytes:
    lines = [b"data: " + orjson.dumps(event) + b"\n\n" for event in events]
    return b": keep-alive\n\n" + b"".join(lines) + (b"data: [DONE]\n\n" if done else b"")


async def read(data: bytes, size: int) -> list[str | ReplyEnd]:
    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    return [piece async for piece in sse_pieces(pieces())]


USAGE = {"id": "c", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
async def test_pieces_then_the_end_whatever_the_reads(size: int) -> None:
    data = wire(
        {"choices": [{"delta": {"role": "assistant"}}]}, chunk("Hé"), chunk(" wörld"), chunk("!", "stop"), USAGE
    )
    assert await read(data, size) == ["Hé", " wörld", "!", ReplyEnd("stop", 11, 3)]


async def test_length_and_no_usage_no_done() -> None:
    data = wire(chunk("a"), chunk(None, "length"), done=False)
    assert await read(data.replace(b"\n", b"\r\n"), 5) == ["a", ReplyEnd("length", None, None)]


async def test_an_error_mid_stream_raises() -> None:
    data = wire(chunk("a"), {"error": {"message": "model crashed", "type": "server_error"}})
    with pytest.raises(LLMError, match="model crashed") as raised:
        await read(data, 10)
    assert raised.value.retryable
