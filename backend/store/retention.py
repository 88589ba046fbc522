"""CHAT_RETENTION_DAYS: chats nobody wrote to for that many days are deleted.

Two paths, both through Chats.delete (a reply in flight ends, the bytes are released):
- lazily, per user, when the user lists their chats (the API): what they see is never stale;
- a sweep of every user's chat index, by one worker at a time (a lease), every SWEEP_SECONDS:
  the chats of users who never come back go too. It walks the keyspace with SCAN (every node of
  a Cluster), in steps, so it never blocks Redis.
"""

from __future__ import annotations

import re

from backend.redis.clients import AnyRedis
from backend.redis.errors import translate_errors
from backend.store import keys
from backend.store.chats import Chats
from backend.store.clock import now_ms

DAY_MS = 86_400_000
SWEEP_SECONDS = 3600.0
CHAT_INDEX = re.compile(re.escape(keys.PREFIX) + r"\{u:([1-9][0-9]*)\}:chats")


@translate_errors
class Retention:
    def __init__(self, redis: AnyRedis, chats: Chats, days: int) -> None:
        self.redis = redis
        self.chats = chats
        self.days = days  # 0: chats are kept

    def cutoff(self) -> int:
        """Chats last written before this (ms) are past retention."""
        return now_ms() - self.days * DAY_MS

    async def sweep_user(self, user_id: int) -> int:
        """Delete the user's chats past retention: how many went."""
        if self.days <= 0:
            return 0
        deleted = 0
        while True:
            gone = await self.chats.delete_idle(user_id, self.cutoff())
            deleted += gone
            if gone == 0:
                return deleted

    async def sweep(self) -> int:
        """Every user's chats past retention: how many went."""
        if self.days <= 0:
            return 0
        deleted = 0
        async for key in self.redis.scan_iter(match=keys.chats("*"), count=1000, _type="zset"):
            match = CHAT_INDEX.fullmatch(key)
            if match is not None:
                deleted += await self.sweep_user(int(match[1]))
        return deleted
