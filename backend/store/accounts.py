"""A user's data as a whole: everything stored about them (GET /user/export), and all of it
deleted (DELETE /user).

Every key of a user carries the hash tag ``{u:<id>}`` (backend/store/keys.py) and is reachable
from one of the user's indexes (sessions, tickets, chats) or from the chat hashes; the keys
outside the tag (the provider identity, the per-user rate-limit buckets) are named from the
user hash and keys.USER_RATE_LIMITS. Deleting therefore never scans the keyspace.
"""

from __future__ import annotations

from typing import Any

import orjson

from backend.redis.clients import AnyRedis
from backend.redis.errors import translate_errors
from backend.redis.scripts import Scripts
from backend.store import keys
from backend.store.chats import Chats
from backend.store.control import Control
from backend.store.interview import question_views
from backend.store.replies import ReplyStatus
from backend.store.users import RETRIES, IndexMoved, members

PAGE = 100  # chats read (or deleted) per pipeline


@translate_errors
class Accounts:
    def __init__(self, redis: AnyRedis, scripts: Scripts, chats: Chats, control: Control) -> None:
        self.redis = redis
        self.scripts = scripts
        self.chats = chats
        self.control = control

    async def export(self, user_id: int) -> dict[str, Any] | None:
        """The user, their interview with its answers, every chat with its messages, and their
        sessions' expiries: one JSON-ready document (None when the user is gone)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.user(user_id))
            pipe.hgetall(keys.questions(user_id))
            pipe.hgetall(keys.answers(user_id))
            pipe.zrange(keys.sessions(user_id), 0, -1, withscores=True)
            pipe.zrange(keys.chats(user_id), 0, -1, desc=True)
            user, questions, answers, sessions, chat_ids = await pipe.execute()
        if not user:
            return None
        status = user.get("status", "NOT_STARTED")
        profile: dict[str, Any] = {
            "userId": int(user["userId"]),
            "username": user.get("username", ""),
            "createdAt": int(user.get("createdAt", 0)),
            "provider": user.get("provider", ""),
            "storedBytes": int(user.get("storedBytes", 0)),
        }
        if user.get("identity"):
            profile["identity"] = user["identity"].removeprefix(keys.PREFIX + "identity:")
        interview: dict[str, Any] = {
            "skillDescription": user.get("skillDescription", ""),
            "status": status,
            "questions": question_views(user, questions, answers),
        }
        if "score" in user:
            interview["score"] = int(user["score"])
        chats = []
        for start in range(0, len(chat_ids), PAGE):
            page = chat_ids[start : start + PAGE]
            async with self.redis.pipeline(transaction=False) as pipe:
                for chat_id in page:
                    pipe.hmget(keys.chat(user_id, chat_id), "title", "createdAt", "updatedAt")
                    pipe.lrange(keys.messages(user_id, chat_id), 0, -1)
                rows = await pipe.execute()
            for index, chat_id in enumerate(page):
                (title, created, updated), messages = rows[2 * index], rows[2 * index + 1]
                if created is None:
                    continue  # deleted meanwhile
                chats.append(
                    {
                        "chatId": int(chat_id),
                        "title": title or "",
                        "createdAt": int(created),
                        "updatedAt": int(updated),
                        "messages": [orjson.loads(m) for m in messages],
                    }
                )
        return {
            "user": profile,
            "interview": interview,
            "chats": chats,
            "sessions": [{"expiresAt": int(expiry)} for _, expiry in sessions],
        }

    async def delete(self, user_id: int) -> None:
        """Every key of the user, in an order that lets nothing come back:

        1. replies in flight are told to stop (their workers cancel the LLM call);
        2. the provider identity is unbound, so a later login with it makes a new user;
        3. the user hash, every session, the interview and the stream counts go at once
           (lua/close_account.lua): no token works, and no chat, prompt or interview can be made;
        4. each chat goes with its reply logs (an in-flight reply ends with an error event, and its
           log, which its readers still read, is listed in an index of such logs);
        5. those logs, the stream tickets, the indexes and the user's rate-limit buckets.
        """
        user = await self.redis.hgetall(keys.user(user_id))
        chat_ids = set(await members(self.redis, keys.chats(user_id)))
        await self._stop_replies(user_id, sorted(chat_ids))
        for field in ("identity", "legacyIdentity"):
            if user.get(field):
                await self.scripts.release_identity(keys=[user[field]], args=[user_id])
        await self._close(user_id)
        chat_ids |= set(await members(self.redis, keys.chats(user_id)))  # made before the close
        for chat_id in sorted(chat_ids, key=int):
            await self.chats.delete(user_id, int(chat_id))
        # The logs of replies that were in flight when their chat went (the ones above included).
        for entry in await members(self.redis, keys.deleted_chat_logs(user_id)):
            chat_id, _, gen = entry.partition(":")
            await self.redis.delete(keys.reply_log(user_id, chat_id, gen))
        for digest in await members(self.redis, keys.stream_tickets(user_id)):
            await self.redis.delete(keys.stream_ticket(user_id, digest))
        await self.redis.delete(
            keys.deleted_chat_logs(user_id),
            keys.stream_tickets(user_id),
            keys.chats(user_id),
            keys.open_streams(user_id),
        )
        for name in keys.USER_RATE_LIMITS:
            await self.redis.delete(keys.rate_limit(name, str(user_id)))  # one slot each on a Cluster

    async def _stop_replies(self, user_id: int, chat_ids: list[str]) -> None:
        for start in range(0, len(chat_ids), PAGE):
            page = chat_ids[start : start + PAGE]
            async with self.redis.pipeline(transaction=False) as pipe:
                for chat_id in page:
                    pipe.hmget(keys.chat(user_id, chat_id), "replyGen", "replyStatus")
                states = await pipe.execute()
            for chat_id, (gen, status) in zip(page, states, strict=True):
                if gen is not None and status in (ReplyStatus.QUEUED, ReplyStatus.STREAMING):
                    await self.control.stop_reply(user_id, int(chat_id), int(gen))

    async def _close(self, user_id: int) -> None:
        index = keys.sessions(user_id)
        for _ in range(RETRIES):
            digests = await members(self.redis, index)
            closed = await self.scripts.close_account(
                keys=[
                    keys.user(user_id),
                    index,
                    keys.questions(user_id),
                    keys.answers(user_id),
                    keys.open_streams(user_id),
                    *(keys.session(user_id, d) for d in digests),
                ],
                args=digests,
            )
            if int(closed) == 1:
                return
        raise IndexMoved
