"""Rate limits kept in Redis (GCRA, lua/rate_limit.lua), shared by every pod."""

from __future__ import annotations

import math

from backend.redis.errors import translate_errors
from backend.redis.scripts import Scripts
from backend.store import keys


@translate_errors
class RateLimiter:
    def __init__(self, scripts: Scripts) -> None:
        self.scripts = scripts

    async def retry_after(self, name: str, who: str, per_minute: int) -> int:
        """0 when the call is allowed, else whole seconds to wait. per_minute=0 disables."""
        if per_minute <= 0:
            return 0
        interval_ms = 60_000 / per_minute
        wait_ms = await self.scripts.rate_limit(keys=[keys.rate_limit(name, who)], args=[interval_ms, per_minute])
        return math.ceil(float(wait_ms) / 1000) if float(wait_ms) > 0 else 0
