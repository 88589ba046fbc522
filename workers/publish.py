"""Publishing reply chunks.

Every reply a worker is writing appends through one `ChunkPublisher` over one multiplexed
connection (backend/store/fast.py): the commands of one event-loop turn leave in one system
call and their replies are parsed in C, so a worker process sustains many replies with little
Python per chunk. The EVALSHA of lua/append_chunk.lua is packed once per reply up to the
chunk's own arguments, so a chunk costs two small byte strings. After a Redis restart the script
is loaded again. On a Redis Cluster the calls go through redis-py, which routes each reply's keys
to their node.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from backend.store.fast import Multiplexed
from backend.store.replies import Replies
from backend.store.scripts import Scripts
from workers import metrics


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


class ReplyChunks:
    """The append calls of one reply, pre-packed around the chunk's data and content."""

    def __init__(self, publisher: ChunkPublisher, user_id: int, chat_id: int, gen: int, token: str) -> None:
        self.publisher = publisher
        self.ids = (user_id, chat_id, gen, token)
        call_keys, call_args = publisher.replies.append_call(user_id, chat_id, gen, token, "")
        parts = [p if isinstance(p, bytes) else str(p).encode()
                 for p in ("EVALSHA", publisher.script.sha, len(call_keys), *call_keys, *call_args)]
        # parts: EVALSHA sha numkeys k1 k2 k3 gen token DATA CONTENT ttl channel command
        self.head = b"*%d\r\n" % len(parts) + b"".join(_bulk(p) for p in parts[:8])
        self.tail = b"".join(_bulk(p) for p in parts[10:])

    def packed(self, content: str, extra: dict[str, Any]) -> bytes:
        data = orjson.dumps({"content": content, **extra} if extra else {"content": content})
        return self.head + _bulk(data) + _bulk(content.encode()) + self.tail

    async def append(self, content: str, **extra: Any) -> int:
        """Seq of the appended chunk, 0 when this writer has been fenced out."""
        started = time.perf_counter()
        seq = await self.publisher.send(self, content, extra)
        metrics.PUBLISH_LATENCY.observe(time.perf_counter() - started)
        return seq


class ChunkPublisher:
    def __init__(self, scripts: Scripts, replies: Replies, fast: Multiplexed | None) -> None:
        self.scripts = scripts
        self.replies = replies
        self.script = scripts.append_chunk
        self.fast = fast

    def reply(self, user_id: int, chat_id: int, gen: int, token: str) -> ReplyChunks:
        return ReplyChunks(self, user_id, chat_id, gen, token)

    async def send(self, reply: ReplyChunks, content: str, extra: dict[str, Any]) -> int:
        if self.fast is None:  # Redis Cluster
            call_keys, call_args = self.replies.append_call(*reply.ids, content, **extra)
            return int(await self.script(keys=call_keys, args=call_args))
        return int(await self.fast.evalsha(self.script, reply.packed(content, extra)))
