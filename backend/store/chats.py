"""Chats and their message history. A chat's keys live under its owner's hash tag, so another
user's chat id simply does not exist for the caller."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import orjson

from backend.store import keys
from backend.store.clients import AnyRedis
from backend.store.errors import StoreError, translate_errors
from backend.store.replies import Replies
from backend.store.scripts import Scripts
from backend.store.users import now_ms

TITLE_CHARS = 60


class ReplyInFlight(StoreError):
    """The chat already has a reply being written."""


class StartReply(IntEnum):
    """lua/start_reply.lua's answers other than a new generation."""

    NO_CHAT = -1
    IN_FLIGHT = -2


class DeleteChat(IntEnum):
    """lua/delete_chat.lua's answer."""

    DELETED = 1
    NO_CHAT = 0
    MOVED_ON = -1  # a new generation started meanwhile: call again


@translate_errors
class Chats:
    def __init__(self, redis: AnyRedis, scripts: Scripts, replies: Replies) -> None:
        self.redis = redis
        self.scripts = scripts
        self.replies = replies

    async def create(self, user_id: int) -> int:
        chat_id = int(await self.redis.incr(keys.CHAT_SEQ))
        await self.scripts.create_chat(keys=[keys.chat(user_id, chat_id), keys.chats(user_id)],
                                       args=[chat_id, now_ms()])
        return chat_id

    async def list(self, user_id: int) -> list[dict[str, Any]]:
        chat_ids = await self.redis.zrevrange(keys.chats(user_id), 0, -1)
        if not chat_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for chat_id in chat_ids:
                pipe.hmget(keys.chat(user_id, chat_id), "title", "createdAt", "updatedAt")
            rows = await pipe.execute()
        return [
            {"chatId": int(chat_id), "title": title, "createdAt": int(created), "updatedAt": int(updated)}
            for chat_id, (title, created, updated) in zip(chat_ids, rows, strict=True)
            if created is not None
        ]

    async def get(self, user_id: int, chat_id: int) -> dict[str, Any] | None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.chat(user_id, chat_id), "createdAt")
            pipe.lrange(keys.messages(user_id, chat_id), 0, -1)
            created, raw_messages = await pipe.execute()
        if created is None:
            return None
        return {"chatId": chat_id, "createdAt": int(created), "messages": [orjson.loads(m) for m in raw_messages]}

    async def history(self, user_id: int, chat_id: int) -> list[dict[str, Any]]:
        return [orjson.loads(m) for m in await self.redis.lrange(keys.messages(user_id, chat_id), 0, -1)]

    async def delete(self, user_id: int, chat_id: int) -> bool:
        while True:
            gen, _, _ = await self.replies.state(user_id, chat_id)
            if gen is None:
                return False
            outcome = await self.scripts.delete_chat(
                keys=[
                    keys.chat(user_id, chat_id), keys.messages(user_id, chat_id), keys.partial(user_id, chat_id),
                    keys.reply_lease(user_id, chat_id), keys.chats(user_id), keys.reply_log(user_id, chat_id, gen),
                ],
                args=[chat_id, gen, self.replies.error_data("The chat was deleted."),
                      self.replies.channel(user_id, chat_id, gen), self.replies.publish_command,
                      self.replies.log_ttl],
            )
            if outcome != DeleteChat.MOVED_ON:
                return outcome == DeleteChat.DELETED

    async def start_reply(self, user_id: int, chat_id: int, prompt: str, *, reap: bool = True) -> int | None:
        """Store the prompt and open a reply: its generation, None when the chat does not exist."""
        now = now_ms()
        message = orjson.dumps({"role": "user", "content": prompt, "createdAt": now})
        title = " ".join(prompt.split())[:TITLE_CHARS]
        gen = int(
            await self.scripts.start_reply(
                keys=[keys.chat(user_id, chat_id), keys.messages(user_id, chat_id), keys.chats(user_id)],
                args=[chat_id, message, title, now],
            )
        )
        if gen == StartReply.NO_CHAT:
            return None
        if gen == StartReply.IN_FLIGHT:
            # A reply whose writer died, or whose job was lost, and that nobody is watching would
            # block the chat.
            if reap and await self.replies.reap(user_id, chat_id):
                return await self.start_reply(user_id, chat_id, prompt, reap=False)
            raise ReplyInFlight
        return gen
