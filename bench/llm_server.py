"""A small OpenAI-compatible streaming server for B7, cheap enough to pace thousands of replies
at once: every chat completion streams TOKENS chunks at RATE a second (chunked transfer, keep-
alive), then a usage chunk and `[DONE]`. One timer for all replies: each tick writes the chunks
that are due.

python -m bench.llm_server PORT RATE TOKENS
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

import orjson

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
TICK = 0.01


def frame(payload: bytes) -> bytes:
    """One chunk of the chunked body."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def event(body: dict) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"


def chunk(index: int) -> bytes:
    content = "Token" if index == 0 else f" w{index}"
    return event(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "bench",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
        }
    )


class Reply:
    __slots__ = ("next_at", "sent", "transport")

    def __init__(self, transport: asyncio.Transport, start: float) -> None:
        self.transport = transport
        self.next_at = start
        self.sent = 0


class Server:
    def __init__(self, rate: float, tokens: int) -> None:
        self.interval = 1 / rate
        self.tokens = tokens
        self.replies: list[Reply] = []
        self.chunks = [frame(chunk(i)) for i in range(tokens)]
        last = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "bench"}
        usage = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": tokens + 10}
        self.ending = (
            frame(event({**last, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
            + frame(event({**last, "choices": [], "usage": usage}))
            + frame(b"data: [DONE]\n\n")
            + b"0\r\n\r\n"
        )

    def start(self, transport: asyncio.Transport) -> None:
        transport.write(HEAD)
        # A real model's first token takes its time: after U(0, d) + d (d = 1/RATE), like the fake
        # LLM's (workers/llm/fake.py), so replies started together do not tick together and B6's
        # "beyond the LLM" holds on this path too.
        first = time.monotonic() + self.interval + random.uniform(0, self.interval)
        self.replies.append(Reply(transport, first))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            kept = []
            for reply in self.replies:
                if reply.transport.is_closing():
                    continue
                out = []
                while reply.next_at <= now and reply.sent < self.tokens:
                    out.append(self.chunks[reply.sent])
                    reply.sent += 1
                    reply.next_at += self.interval
                if reply.sent == self.tokens:
                    out.append(self.ending)
                if out:
                    reply.transport.write(b"".join(out))
                if reply.sent < self.tokens:
                    kept.append(reply)
            self.replies = kept


class Connection(asyncio.Protocol):
    """HTTP/1.1 requests, one after another on a kept-alive connection."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            self.server.start(self.transport)


async def main(port: int, rate: float, tokens: int) -> None:
    server = Server(rate, tokens)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Connection(server), "127.0.0.1", port, backlog=4096)
    async with listener:
        await server.run()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])))
    except ImportError:
        asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])))
