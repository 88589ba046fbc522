"""Users, identities and sessions."""

from __future__ import annotations

from typing import cast

from backend.redis.clients import AnyRedis
from backend.redis.errors import translate_errors
from backend.redis.scripts import Scripts
from backend.store import keys
from backend.store.clock import now_ms
from backend.store.tokens import new_token, parse_token


@translate_errors
class Users:
    def __init__(self, redis: AnyRedis, scripts: Scripts, session_ttl: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.session_ttl = session_ttl
        self._authenticate_call = scripts.authenticate.prefix(2)  # every request: packed once

    async def login(self, provider: str, subject: str, username: str, issuer: str | None = None) -> tuple[int, str]:
        """Find or create the user of a provider identity and open a session: (user id, token).

        Racing first logins of one identity each draw an id, but claim_identity binds only the
        first; the loser's id is never used. Creating the user hash is idempotent, so a crash
        between the two steps heals at the next login.

        With an issuer (oidc) the identity is keyed by issuer and subject. A user who logged in
        before issuers were kept has only the key without one: on a miss, that key's user id is
        bound under the new key by the same claim_identity (set once, never overwritten, so
        racing logins all end on one user). The old key is only read, never changed, so a
        rollback still finds every user. Two keys in one script would span two Redis Cluster
        slots, hence the read then the one-key script.
        """
        identity = keys.identity(provider, subject, issuer)
        bound = await self.redis.get(identity)
        if bound is None and issuer is not None:
            legacy = await self.redis.get(keys.identity(provider, subject))
            if legacy is not None:
                bound = await self.scripts.claim_identity(keys=[identity], args=[legacy])
        if bound is None:
            candidate = await self.redis.incr(keys.USER_SEQ)
            bound = await self.scripts.claim_identity(keys=[identity], args=[candidate])
        user_id = int(bound)
        token = new_token(user_id)
        parsed = parse_token(token)
        assert parsed is not None  # new_token() makes a well-formed token
        session_key = parsed[1]
        await self.scripts.login(
            keys=[keys.user(user_id), session_key],
            args=[user_id, username, now_ms(), self.session_ttl, provider],
        )
        return user_id, token

    async def authenticate(self, token: str) -> dict[str, str] | None:
        """The user's hash when the token is a live session, else None."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        user_id, session_key = parsed
        session = session_key.encode()
        command = self._authenticate_call.with_args(session, keys.user(user_id).encode())
        flat = await self.scripts.authenticate.raw(command, session)
        if not flat:
            return None
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    async def profile(self, user_id: int) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(keys.user(user_id)))  # the clients decode

    async def logout(self, token: str) -> None:
        parsed = parse_token(token)
        if parsed is not None:
            await self.redis.delete(parsed[1])
