"""Short-lived login state: OAuth `state` grants (PKCE verifier and nonce) and the dev
provider's one-time codes. Each is read exactly once (GETDEL)."""

from __future__ import annotations

import orjson

from backend.redis.clients import AnyRedis
from backend.redis.errors import translate_errors
from backend.store import keys

STATE_TTL_SECONDS = 600
DEV_CODE_TTL_SECONDS = 120


@translate_errors
class Logins:
    def __init__(self, redis: AnyRedis) -> None:
        self.redis = redis

    async def save_state(self, state: str, verifier: str, nonce: str) -> None:
        await self.redis.set(keys.oauth_state(state), orjson.dumps({"v": verifier, "n": nonce}), ex=STATE_TTL_SECONDS)

    async def take_state(self, state: str) -> tuple[str, str] | None:
        """(PKCE verifier, nonce) of a pending login, consumed; None when unknown, used or expired."""
        stored = await self.redis.getdel(keys.oauth_state(state))
        if stored is None:
            return None
        grant = orjson.loads(stored)
        return grant["v"], grant["n"]

    async def save_dev_code(self, code: str, username: str, challenge: str) -> None:
        await self.redis.set(
            keys.dev_code(code), orjson.dumps({"u": username, "c": challenge}), ex=DEV_CODE_TTL_SECONDS
        )

    async def take_dev_code(self, code: str) -> tuple[str, str] | None:
        """(username, PKCE challenge) of a dev-provider code, consumed; None when unknown or used."""
        stored = await self.redis.getdel(keys.dev_code(code))
        if stored is None:
            return None
        grant = orjson.loads(stored)
        return grant["u"], grant["c"]
