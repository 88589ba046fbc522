"""Short-lived login state: OAuth `state` grants (PKCE verifier and nonce) and the dev
provider's one-time codes. Each is read exactly once. Pending states are counted for the whole
service (lua/save_state.lua): past LOGIN_STATES_MAX, no new login starts until some expire."""

from __future__ import annotations

import orjson

from backend.redis.clients import AnyRedis
from backend.redis.errors import translate_errors
from backend.redis.scripts import Scripts
from backend.store import keys

STATE_TTL_SECONDS = 600
DEV_CODE_TTL_SECONDS = 120


@translate_errors
class Logins:
    def __init__(self, redis: AnyRedis, scripts: Scripts, max_states: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.max_states = max_states  # pending logins of the whole service

    async def save_state(self, state: str, verifier: str, nonce: str) -> int:
        """0 when the state is stored; else the ms until a pending state expires (the ceiling is reached)."""
        return int(
            await self.scripts.save_state(
                keys=[keys.oauth_state(state), keys.LOGIN_STATES],
                args=[state, orjson.dumps({"v": verifier, "n": nonce}), STATE_TTL_SECONDS * 1000, self.max_states],
            )
        )

    async def take_state(self, state: str) -> tuple[str, str] | None:
        """(PKCE verifier, nonce) of a pending login, consumed; None when unknown, used or expired."""
        stored = await self.scripts.take_state(keys=[keys.oauth_state(state), keys.LOGIN_STATES], args=[state])
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
