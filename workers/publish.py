"""Publishing reply chunks in batches.

Every reply a worker is writing calls `append()`; chunks that arrive while a round trip is in
flight are sent together in the next pipeline, so one worker process sustains many replies
with few round trips. EVALSHA goes straight into the pipeline (redis-py would otherwise check
SCRIPT EXISTS on every pipeline); after a Redis restart the script is loaded again. A Redis
Cluster client refuses EVALSHA in pipelines, so there a batch goes out as concurrent calls.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import RedisCluster
from redis.exceptions import NoScriptError

from backend.store.redis import AnyRedis
from backend.store.replies import Replies
from backend.store.scripts import Scripts


class ChunkPublisher:
    def __init__(self, redis: AnyRedis, scripts: Scripts, replies: Replies) -> None:
        self.redis = redis
        self.replies = replies
        self.script = scripts.append_chunk
        self._pending: list[tuple[list[Any], list[Any], asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.chunks = 0

    async def append(self, user_id: int, chat_id: int, gen: int, token: str, content: str,
                     **extra: Any) -> int:
        """Seq of the appended chunk, 0 when the writer has been fenced out."""
        call_keys, call_args = self.replies.append_call(user_id, chat_id, gen, token, content, **extra)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((call_keys, call_args, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._send(batch)
            except Exception as error:  # every caller of the batch gets the failure
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.batches += 1
            self.chunks += len(batch)
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(int(result))

    async def _send(self, batch: list[tuple[list[Any], list[Any], asyncio.Future[int]]]) -> list[Any]:
        if isinstance(self.redis, RedisCluster):
            return await asyncio.gather(*(self.script(keys=k, args=a) for k, a, _ in batch), return_exceptions=True)
        for attempt in (1, 2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for call_keys, call_args, _ in batch:
                    pipe.evalsha(self.script.sha, len(call_keys), *call_keys, *call_args)
                results = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in results):
                await self.redis.script_load(self.script.script)
                continue
            return results
        raise AssertionError("unreachable")
