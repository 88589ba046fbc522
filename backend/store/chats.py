"""Chats and their message history. A chat's keys live under its owner's hash tag, so another
user's chat id simply does not exist for the caller."""

from __future__ import annotations

import builtins
from enum import IntEnum
from typing import Any, cast

import orjson

from backend import sse
from backend.redis.clients import AnyRedis
from backend.redis.errors import StoreError, translate_errors
from backend.redis.scripts import Scripts
from backend.store import keys
from backend.store.clock import now_ms
from backend.store.replies import Replies, ReplyStatus

TITLE_CHARS = 60


class ReplyInFlight(StoreError):
    """The chat already has a reply being written."""


class TooManyChats(StoreError):
    """The user already holds the most chats allowed."""


class StorageFull(StoreError):
    """The prompt would take the user past USER_STORAGE_MAX_BYTES."""


class NoSuchUser(StoreError):
    """The user was deleted while the request ran."""


class CreateChat(IntEnum):
    """lua/create_chat.lua's answer."""

    NO_USER = -1
    AT_CAP = 0
    CREATED = 1


class StartReply(IntEnum):
    """lua/start_reply.lua's answers other than a new generation."""

    NO_CHAT = -1
    IN_FLIGHT = -2
    STORAGE_FULL = -3


class DeleteChat(IntEnum):
    """lua/delete_chat.lua's answer."""

    DELETED = 1
    NO_CHAT = 0
    MOVED_ON = -1  # a new generation started meanwhile: call again
    KEPT = 2  # written to after the given time


@translate_errors
class Chats:
    def __init__(
        self,
        redis: AnyRedis,
        scripts: Scripts,
        replies: Replies,
        *,
        max_chats: int,
        max_messages: int,
        max_bytes: int,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.replies = replies
        self.max_chats = max_chats  # per user
        self.max_bytes = max_bytes  # UTF-8 bytes of prompts and replies per user
        self.max_messages = max_messages  # kept per chat, the newest (the scripts that add one trim)

    async def create(self, user_id: int) -> int:
        """The new chat's id; TooManyChats when the user holds `max_chats` already."""
        chat_id = int(await self.redis.incr(keys.CHAT_SEQ))
        created = await self.scripts.create_chat(
            keys=[keys.chat(user_id, chat_id), keys.chats(user_id), keys.user(user_id)],
            args=[chat_id, now_ms(), self.max_chats],
        )
        if int(created) == CreateChat.NO_USER:
            raise NoSuchUser
        if int(created) != CreateChat.CREATED:
            raise TooManyChats
        return chat_id

    async def list(
        self, user_id: int, limit: int, before: tuple[int, int] | None = None
    ) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
        """A page of the user's chats, most recently updated first, and the position to read the
        next page from (None on the last page).

        A position is (updatedAt, chatId) of the last chat of a page. The index is a sorted set
        by updatedAt whose ties Redis orders by member (the chat id as a string, bytewise), so
        the page after a position is the rest of its tie (members below it) and then the scores
        below it: stable across ties, and a chat updated meanwhile moves above every position.
        """
        index = keys.chats(user_id)
        rows: list[tuple[str, float]]  # the clients decode (decode_responses): members are str
        if before is None:
            rows = await self.redis.zrange(  # type: ignore[assignment]  # redis-py's union of every reply shape
                index, "+inf", "-inf", desc=True, byscore=True, withscores=True, offset=0, num=limit + 1
            )
        else:
            score, member = before[0], str(before[1])
            # The tie (at most max_chats) and the chats below it, at one instant.
            tie, older = await self.scripts.read_chat_page(keys=[index], args=[score, limit + 1])
            rows = sorted(((m, s) for m, s in pairs(tie) if m.encode() < member.encode()), reverse=True)
            rows += pairs(older)
        page, more = rows[:limit], len(rows) > limit
        if not page:
            return [], None
        async with self.redis.pipeline(transaction=False) as pipe:
            for chat_id, _ in page:
                pipe.hmget(keys.chat(user_id, chat_id), "title", "createdAt", "updatedAt")
            fields = await pipe.execute()
        chats = [
            {"chatId": int(chat_id), "title": title, "createdAt": int(created), "updatedAt": int(updated)}
            for (chat_id, _), (title, created, updated) in zip(page, fields, strict=True)
            if created is not None and updated is not None  # a chat deleted meanwhile has neither
        ]
        last_id, last_score = page[-1]
        return chats, ((int(last_score), int(last_id)) if more else None)

    async def get(self, user_id: int, chat_id: int) -> dict[str, Any] | None:
        """The chat, its messages, and its newest reply: `status` (queued, streaming, idle) and the
        id of its last event so far (left out when it has none), so a reloaded client can resume."""
        created, gen, status, seq, raw_messages = await self.scripts.read_chat(
            keys=[keys.chat(user_id, chat_id), keys.messages(user_id, chat_id)], args=[self.max_messages]
        )
        if created is None:
            return None
        reply: dict[str, str] = {"status": ReplyStatus(status or ReplyStatus.IDLE).value}
        if gen and seq and int(gen) > 0 and int(seq) > 0:
            reply["lastEventId"] = f"{int(gen)}-{int(seq)}"
        return {
            "chatId": chat_id,
            "createdAt": int(created),
            "messages": [orjson.loads(m) for m in raw_messages],
            "reply": reply,
        }

    async def context(self, user_id: int, chat_id: int) -> tuple[dict[str, str], builtins.list[dict[str, Any]]]:
        """What a reply is written from, read at one instant: the user's profile and the newest
        `max_messages` messages of the chat, oldest first."""  # `list` is a method here
        flat, raw = await self.scripts.read_chat_context(
            keys=[keys.user(user_id), keys.messages(user_id, chat_id)], args=[self.max_messages]
        )
        return dict(zip(flat[::2], flat[1::2], strict=True)), [orjson.loads(m) for m in raw]

    async def delete(self, user_id: int, chat_id: int, *, idle_before: int = 0) -> bool:
        """Delete the chat (True), or find none (False). With `idle_before` (ms), only if nobody
        wrote to it since: checked in the same Lua call, so a chat written to meanwhile stays."""
        while True:
            gen, _, _ = await self.replies.state(user_id, chat_id)
            if gen is None:
                return False
            outcome = await self.scripts.delete_chat(
                keys=[
                    keys.chat(user_id, chat_id),
                    keys.messages(user_id, chat_id),
                    keys.partial(user_id, chat_id),
                    keys.reply_lease(user_id, chat_id),
                    keys.chats(user_id),
                    keys.reply_log(user_id, chat_id, gen),
                    keys.user(user_id),
                    keys.reply_log(user_id, chat_id, gen - 1),
                    keys.deleted_chat_logs(user_id),
                ],
                args=[
                    chat_id,
                    gen,
                    sse.error_data("The chat was deleted."),
                    self.replies.channel(user_id, chat_id, gen),
                    self.replies.publish_command,
                    self.replies.log_ttl,
                    idle_before,
                ],
            )
            if outcome != DeleteChat.MOVED_ON:
                return bool(outcome == DeleteChat.DELETED)

    async def delete_idle(self, user_id: int, cutoff_ms: int, limit: int = 100) -> int:
        """Delete up to `limit` of the user's chats nobody wrote to since `cutoff_ms` (CHAT_RETENTION_DAYS):
        how many went. The index is scored by the last write, so this reads only the ones to delete."""
        stale = cast(
            list[str],  # the clients decode (decode_responses)
            await self.redis.zrange(keys.chats(user_id), "-inf", cutoff_ms, byscore=True, offset=0, num=limit),
        )
        deleted = 0
        for chat_id in stale:
            deleted += await self.delete(user_id, int(chat_id), idle_before=cutoff_ms)
        return deleted

    async def start_reply(self, user_id: int, chat_id: int, prompt: str, *, reap: bool = True) -> int | None:
        """Store the prompt and open a reply: its generation, None when the chat does not exist."""
        now = now_ms()
        message = orjson.dumps({"role": "user", "content": prompt, "createdAt": now})
        title = " ".join(prompt.split())[:TITLE_CHARS]
        gen = int(
            await self.scripts.start_reply(
                keys=[
                    keys.chat(user_id, chat_id),
                    keys.messages(user_id, chat_id),
                    keys.chats(user_id),
                    keys.user(user_id),
                ],
                args=[chat_id, message, title, now, self.max_messages, self.max_bytes],
            )
        )
        if gen == StartReply.NO_CHAT:
            return None
        if gen == StartReply.STORAGE_FULL:
            raise StorageFull
        if gen == StartReply.IN_FLIGHT:
            # A reply whose writer died, or whose job was lost, and that nobody is watching would
            # block the chat.
            if reap and await self.replies.reap(user_id, chat_id):
                return await self.start_reply(user_id, chat_id, prompt, reap=False)
            raise ReplyInFlight
        return gen


def pairs(flat: list[str]) -> list[tuple[str, float]]:
    """ZRANGE ... WITHSCORES from a script (member, score, ...) as redis-py gives it: (member, score)."""
    return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]
