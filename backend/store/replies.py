"""Reply generations: the fenced writer used by workers, and the log/state used by readers.

Each reply (one generation of a chat) has an ordered log (a Redis Stream whose entry ids are
``0-<seq>``) and a pub/sub channel; both carry the same ready-made SSE frames, built in Lua.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import orjson
from redis.asyncio import RedisCluster

from backend.store import keys
from backend.store.redis import AnyRedis
from backend.store.scripts import Scripts
from backend.store.users import now_ms
from config.settings import Settings

FinishMode = Literal["done", "error", "stopped", "fail", "reap"]

DEAD_WORKER_MESSAGE = "The assistant stopped responding. Please send your message again."


class Replies:
    def __init__(self, redis: AnyRedis, scripts: Scripts, settings: Settings) -> None:
        self.redis = redis
        self.scripts = scripts
        self.log_ttl = settings.REPLY_LOG_TTL_SECONDS
        self.lease_ms = int(settings.JOB_LEASE_SECONDS * 700)  # renewed every lease/5: see README
        self.publish_command = "SPUBLISH" if settings.REDIS_CLUSTER else "PUBLISH"
        self.db = settings.redis_db

    def channel(self, user_id: int, chat_id: int, gen: int) -> str:
        return keys.reply_channel(user_id, chat_id, gen, self.db)

    @staticmethod
    def chunk_data(content: str, **extra: object) -> bytes:
        """The event's data; `extra` fields are for benchmarks (a publish time), never for clients."""
        return orjson.dumps({"content": content, **extra} if extra else {"content": content})

    @staticmethod
    def error_data(message: str) -> bytes:
        return orjson.dumps({"content": "", "message": message})

    async def state(self, user_id: int, chat_id: int) -> tuple[int | None, str, int]:
        """(generation or None for a missing chat, status, last seq) of the chat's newest reply."""
        gen, status, seq = await self.redis.hmget(keys.chat(user_id, chat_id), "replyGen", "replyStatus", "replySeq")
        if gen is None:
            return None, "", 0
        return int(gen), status, int(seq)

    async def ended(self, replies: list[tuple[int, int, int]]) -> list[bool]:
        """For each (user, chat, generation): is that reply over? One pipeline for all of them; a
        reply whose writer sent chunks and whose lease expired is ended here (event: error)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id, chat_id, _ in replies:
                pipe.hmget(keys.chat(user_id, chat_id), "replyGen", "replyStatus", "replySeq")
                pipe.exists(keys.reply_lease(user_id, chat_id))
            states = await pipe.execute()
        over = []
        for index, (user_id, chat_id, gen) in enumerate(replies):
            (current, status, seq), lease = states[2 * index], states[2 * index + 1]
            if current is None or int(current) != gen or status == "idle":
                over.append(True)
            elif status == "streaming" and seq != "0" and not lease:
                await self.finish(user_id, chat_id, gen, "reap")  # its writer died
                over.append(True)
            else:
                over.append(False)
        return over

    async def claim(self, user_id: int, chat_id: int, gen: int, token: str) -> int:
        return int(await self.scripts.claim_reply(
            keys=[keys.chat(user_id, chat_id), keys.reply_lease(user_id, chat_id)], args=[gen, token, self.lease_ms]
        ))

    async def renew_many(self, leases: list[tuple[int, int, int, str]]) -> None:
        """Renew the writer leases of many replies (user, chat, generation, token) at once."""
        calls = [([keys.chat(u, c), keys.reply_lease(u, c)], [g, t, self.lease_ms]) for u, c, g, t in leases]
        if isinstance(self.redis, RedisCluster):  # no scripts in cluster pipelines
            await asyncio.gather(*(self.scripts.renew_reply(keys=k, args=a) for k, a in calls))
            return
        for start in range(0, len(calls), 500):
            async with self.redis.pipeline(transaction=False) as pipe:
                for call_keys, call_args in calls[start:start + 500]:
                    await self.scripts.renew_reply(keys=call_keys, args=call_args, client=pipe)
                await pipe.execute()

    def append_call(self, user_id: int, chat_id: int, gen: int, token: str, content: str,
                    **extra: object) -> tuple[list, list]:
        """(keys, args) of one append_chunk call, for callers that batch them in a pipeline."""
        return (
            [keys.chat(user_id, chat_id), keys.reply_log(user_id, chat_id, gen), keys.partial(user_id, chat_id)],
            [gen, token, self.chunk_data(content, **extra), content, self.log_ttl,
             self.channel(user_id, chat_id, gen), self.publish_command],
        )

    async def finish(self, user_id: int, chat_id: int, gen: int, mode: FinishMode, *, token: str = "",
                     message: str = "") -> int:
        """End the reply; 0 when it was already ended (or the fence did not allow it)."""
        if mode in ("error", "fail", "reap"):
            data = self.error_data(message or DEAD_WORKER_MESSAGE)
        elif mode == "stopped":
            data = orjson.dumps({"content": "", "stopped": True})
        else:
            data = orjson.dumps({"content": ""})
        return int(await self.scripts.finish_reply(
            keys=[keys.chat(user_id, chat_id), keys.reply_log(user_id, chat_id, gen), keys.partial(user_id, chat_id),
                  keys.reply_lease(user_id, chat_id), keys.messages(user_id, chat_id), keys.chats(user_id)],
            args=[gen, token, mode, data, now_ms(), self.log_ttl, self.channel(user_id, chat_id, gen),
                  self.publish_command, chat_id],
        ))
