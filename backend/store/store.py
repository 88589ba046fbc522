"""The data layer of one process: one Redis pool, the scripts, and the repositories over them."""

from __future__ import annotations

from backend.assistant.resp import Address
from backend.store.chats import Chats
from backend.store.fast import Multiplexed
from backend.store.interview import Interview
from backend.store.ratelimit import RateLimiter
from backend.store.redis import AnyRedis, connect
from backend.store.replies import Replies
from backend.store.scripts import Scripts
from backend.store.users import Users
from config.settings import Settings


class Store:
    def __init__(self, settings: Settings, redis: AnyRedis | None = None) -> None:
        self.settings = settings
        self.redis = redis if redis is not None else connect(settings)
        self.scripts = Scripts(self.redis)
        self.fast = None if settings.REDIS_CLUSTER else Multiplexed(Address.from_url(settings.REDIS_URL))
        self.users = Users(self.redis, self.scripts, settings.SESSION_TTL_SECONDS, self.fast)
        self.interview = Interview(self.redis, self.scripts)
        self.replies = Replies(self.redis, self.scripts, settings)
        self.chats = Chats(self.redis, self.scripts, self.replies)
        self.limiter = RateLimiter(self.scripts)

    async def close(self) -> None:
        if self.fast is not None:
            await self.fast.close()
        await self.redis.aclose()
