"""Publishing reply chunks in batches.

Every reply a worker is writing appends through one `ChunkPublisher`; chunks that arrive while
a round trip is in flight go out together in the next one, so one worker process sustains many
replies with few round trips. The EVALSHA of lua/append_chunk.lua is packed once per reply up to
the chunk's own arguments, so a chunk costs two small byte strings. After a Redis restart the
script is loaded again. A Redis Cluster client is sent the calls concurrently instead (it routes
each reply's keys to their node).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from redis.asyncio import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from backend.store.redis import AnyRedis
from backend.store.replies import Replies
from backend.store.scripts import Scripts
from workers import metrics

Pending = tuple["ReplyChunks", str, dict[str, Any], asyncio.Future[int]]


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


class ReplyChunks:
    """The append calls of one reply, pre-packed around the chunk's data and content."""

    def __init__(self, publisher: ChunkPublisher, user_id: int, chat_id: int, gen: int, token: str) -> None:
        self.publisher = publisher
        self.ids = (user_id, chat_id, gen, token)
        call_keys, call_args = publisher.replies.append_call(user_id, chat_id, gen, token, "")
        parts = [str(p).encode() if not isinstance(p, bytes) else p
                 for p in ("EVALSHA", publisher.script.sha, len(call_keys), *call_keys, *call_args)]
        # parts: EVALSHA sha numkeys k1..k4 gen token DATA CONTENT ttl lease channel command
        self.head = b"*%d\r\n" % len(parts) + b"".join(_bulk(p) for p in parts[:9])
        self.tail = b"".join(_bulk(p) for p in parts[11:])

    def packed(self, content: str, extra: dict[str, Any]) -> bytes:
        data = orjson.dumps({"content": content, **extra} if extra else {"content": content})
        return self.head + _bulk(data) + _bulk(content.encode()) + self.tail

    async def append(self, content: str, **extra: Any) -> int:
        """Seq of the appended chunk, 0 when this writer has been fenced out."""
        return await self.publisher.submit(self, content, extra)


class ChunkPublisher:
    def __init__(self, redis: AnyRedis, scripts: Scripts, replies: Replies) -> None:
        self.redis = redis
        self.replies = replies
        self.script = scripts.append_chunk
        self._pending: list[Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.chunks = 0

    def reply(self, user_id: int, chat_id: int, gen: int, token: str) -> ReplyChunks:
        return ReplyChunks(self, user_id, chat_id, gen, token)

    async def submit(self, reply: ReplyChunks, content: str, extra: dict[str, Any]) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((reply, content, extra, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        started = time.perf_counter()
        seq = await future
        metrics.PUBLISH_LATENCY.observe(time.perf_counter() - started)
        return seq

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._send(batch)
            except Exception as error:  # every caller of the batch gets the failure
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.batches += 1
            self.chunks += len(batch)
            for (*_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(int(result))

    async def _send(self, batch: list[Pending]) -> list[Any]:
        if isinstance(self.redis, RedisCluster):
            return await asyncio.gather(*(
                self.script(keys=keys_, args=args_)
                for keys_, args_ in (self.replies.append_call(*r.ids, c, **e) for r, c, e, _ in batch)
            ), return_exceptions=True)
        results = await self._round_trip(b"".join(r.packed(c, e) for r, c, e, _ in batch), len(batch))
        if any(isinstance(r, NoScriptError) for r in results):  # Redis restarted: load it, send again
            await self.redis.script_load(self.script.script)
            results = await self._round_trip(b"".join(r.packed(c, e) for r, c, e, _ in batch), len(batch))
        return results

    async def _round_trip(self, packed: bytes, count: int) -> list[Any]:
        pool = self.redis.connection_pool
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(packed, check_health=False)
            results: list[Any] = []
            for _ in range(count):
                try:
                    results.append(await connection.read_response())
                except ResponseError as error:
                    results.append(error)
            return results
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)


