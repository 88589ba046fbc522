"""The LLM client's HTTP/1.1 transport (workers/llm/transport.py) under the worker's provider:
replies streamed over kept-alive connections, the connection cap, and each way a server can
fail (no answer, a stall mid-reply, a close mid-reply, nobody listening) classified as before:
a retryable LLMError.

In-process: the real `openai` client in OpenAILLM against a small server on loopback written
here, which counts its connections and can misbehave on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx2
import orjson
import pytest

from config.settings import Settings
from devstack.ports import free_port
from workers.llm import LLMError, ReplyEnd
from workers.llm.openai import OpenAILLM

MESSAGES = [{"role": "user", "content": "Hello?"}]
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def event(content: str) -> bytes:
    body = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return chunked(b"data: " + orjson.dumps(body) + b"\n\n")


def ending(tokens: int) -> bytes:
    usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": tokens}}
    return chunked(b"data: " + orjson.dumps(usage) + b"\n\n") + chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n"


@dataclass
class Server:
    """Answers every chat completion with `tokens` pieces; `mode` misbehaves: "silent" (no
    answer), "stall" (two pieces, then nothing), "close" (two pieces, then the connection closes)."""

    mode: str = "ok"
    tokens: int = 5
    delay: float = 0.0
    connections: int = 0
    requests: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    handlers: list[asyncio.Task[None]] = field(default_factory=list)
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)  # type: ignore[arg-type]
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length"))
                request = orjson.loads(await reader.readexactly(length))
                assert request["stream"] is True
                self.requests += 1
                if self.mode == "silent":
                    await self.closing.wait()
                    return
                writer.write(HEAD)
                pieces = 2 if self.mode in ("stall", "close") else self.tokens
                for index in range(pieces):
                    writer.write(event(f"w{index} "))
                    await writer.drain()
                    await asyncio.sleep(self.delay)
                if self.mode == "stall":
                    await self.closing.wait()
                    return
                if self.mode == "close":
                    writer.close()
                    return
                writer.write(ending(self.tokens))
                await writer.drain()


@contextlib.asynccontextmanager
async def serving(server: Server) -> AsyncIterator[int]:
    port = free_port()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.closing.set()
        listener.close()
        for writer in server.writers:
            writer.close()
        await asyncio.wait_for(asyncio.gather(*server.handlers), 5)  # every handler ended by itself
        await listener.wait_closed()


@contextlib.asynccontextmanager
async def provider(port: int, **env: object) -> AsyncIterator[OpenAILLM]:
    config = {
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "LLM_MODEL": "m",
        **env,
    }
    llm = OpenAILLM(Settings(_env_file=None, **config))  # type: ignore[arg-type]
    try:
        yield llm
    finally:
        await llm.aclose()


async def reply(llm: OpenAILLM, pieces: list[str] | None = None) -> ReplyEnd:
    pieces = [] if pieces is None else pieces
    async for piece in llm.stream_reply(MESSAGES):
        if isinstance(piece, ReplyEnd):
            return piece
        pieces.append(piece)
    raise AssertionError("no ReplyEnd")


async def test_replies_stream_over_one_kept_alive_connection() -> None:
    server = Server(tokens=5)
    async with serving(server) as port, provider(port) as llm:
        for _ in range(3):
            pieces: list[str] = []
            end = await reply(llm, pieces)
            assert "".join(pieces) == "w0 w1 w2 w3 w4 "
            assert (end.prompt_tokens, end.completion_tokens) == (3, 5)
    assert (server.requests, server.connections) == (3, 1)


async def test_connections_are_capped_at_the_job_slots() -> None:
    server = Server(tokens=4, delay=0.05)
    async with serving(server) as port, provider(port, WORKER_CONCURRENCY=2) as llm:
        ends = await asyncio.gather(*(reply(llm) for _ in range(6)))
    assert all(end.completion_tokens == 4 for end in ends)
    assert server.requests == 6
    assert server.connections == 2  # the other replies waited for a connection, then reused it


@pytest.mark.parametrize("mode", ["silent", "stall"])
async def test_no_data_within_the_timeout_is_a_retryable_error(mode: str) -> None:
    async with serving(Server(mode=mode)) as port, provider(port, LLM_TIMEOUT_SECONDS=1) as llm:
        started = time.monotonic()
        pieces: list[str] = []
        with pytest.raises(LLMError) as raised:
            await reply(llm, pieces)
        waited = time.monotonic() - started
    assert raised.value.retryable
    assert 1.0 <= waited < 4.0  # the timeout (1 s), checked every second
    assert pieces == ([] if mode == "silent" else ["w0 ", "w1 "])
    assert "Timeout" in str(raised.value)


async def test_a_close_mid_reply_is_a_retryable_error() -> None:
    async with serving(Server(mode="close")) as port, provider(port) as llm:
        pieces: list[str] = []
        with pytest.raises(LLMError) as raised:
            await reply(llm, pieces)
    assert raised.value.retryable
    assert pieces == ["w0 ", "w1 "]
    assert isinstance(raised.value.__cause__, httpx2.RemoteProtocolError)


async def test_nobody_listening_is_a_retryable_connection_error() -> None:
    async with provider(free_port()) as llm:
        with pytest.raises(LLMError) as raised:
            await reply(llm)
    assert raised.value.retryable
    assert "APIConnectionError" in str(raised.value)
