"""Users, identities and sessions."""

from __future__ import annotations

from typing import cast

from backend.redis.clients import AnyRedis
from backend.redis.errors import StoreUnavailable, translate_errors
from backend.redis.scripts import Scripts
from backend.store import keys
from backend.store.clock import now_ms
from backend.store.tokens import new_token, parse_token

RETRIES = 20  # a script that found the sessions index changed under it is called again this often


class IndexMoved(StoreUnavailable):
    """The sessions index kept changing under a script (logins racing without pause): a 503, try again."""


async def members(redis: AnyRedis, key: str) -> list[str]:
    """Every member of a sorted set, lowest score first."""
    return cast(list[str], await redis.zrange(key, 0, -1))


@translate_errors
class Users:
    def __init__(self, redis: AnyRedis, scripts: Scripts, session_ttl: int, max_sessions: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.session_ttl = session_ttl
        self.max_sessions = max_sessions  # per user: a new login drops the oldest
        self._authenticate_call = scripts.authenticate.prefix(2)  # every request: packed once

    async def login(self, provider: str, subject: str, username: str, issuer: str | None = None) -> tuple[int, str]:
        """Find or create the user of a provider identity and open a session: (user id, token).

        Racing first logins of one identity each draw an id, but claim_identity binds only the
        first; the loser's id is never used. Creating the user hash is idempotent. A user hash is
        made only right after the identity was bound: an identity bound to a user that does not
        exist (deleted by DELETE /user, or a first login that died between the two steps) is
        unbound and the login makes a new user, so a deleted user never comes back.

        With an issuer (oidc) the identity is keyed by issuer and subject. A user who logged in
        before issuers were kept has only the key without one: on a miss, that key's user id is
        bound under the new key by the same claim_identity (set once, never overwritten, so
        racing logins all end on one user). The old key is only read, never changed, so a
        rollback still finds every user. Two keys in one script would span two Redis Cluster
        slots, hence the read then the one-key script.
        """
        identity = keys.identity(provider, subject, issuer)
        legacy_key = keys.identity(provider, subject) if issuer is not None else ""
        for _ in range(RETRIES):
            bound = await self.redis.get(identity)
            fresh = False
            if bound is None and legacy_key:
                legacy = await self.redis.get(legacy_key)
                if legacy is not None:
                    bound = await self.scripts.claim_identity(keys=[identity], args=[legacy])
            if bound is None:
                candidate = await self.redis.incr(keys.USER_SEQ)
                bound = await self.scripts.claim_identity(keys=[identity], args=[candidate])
                fresh = True  # bound just now, by this login or a racing first one: the user may be made
            user_id = int(bound)
            token = await self._open_session(user_id, username, provider, fresh, identity, legacy_key)
            if token is not None:
                return user_id, token
            # The identity points at a user that is gone (deleted; or a first login that died
            # before creating it): unbind it, if still so, and log in as a new user.
            for key in filter(None, (identity, legacy_key)):
                await self.scripts.release_identity(keys=[key], args=[user_id])
        raise IndexMoved

    async def _open_session(
        self, user_id: int, username: str, provider: str, fresh: bool, identity: str, legacy_key: str
    ) -> str | None:
        """A new session's token (the oldest sessions past the cap dropped); None when the user
        does not exist and `fresh` is false."""
        token = new_token(user_id)
        parsed = parse_token(token)
        assert parsed is not None  # new_token() makes a well-formed token
        session_key = parsed[1]
        digest = session_key.rpartition(":")[2]
        index = keys.sessions(user_id)
        for _ in range(RETRIES):
            now = now_ms()
            scored = cast(list[tuple[str, float]], await self.redis.zrange(index, 0, -1, withscores=True))
            live = [member for member, expiry in scored if expiry > now]
            drop = live[: max(0, len(live) + 1 - self.max_sessions)]
            outcome = int(
                await self.scripts.login(
                    keys=[keys.user(user_id), session_key, index, *(keys.session(user_id, d) for d in drop)],
                    args=[
                        user_id,
                        username,
                        now,
                        self.session_ttl,
                        provider,
                        int(fresh),
                        self.max_sessions,
                        digest,
                        identity,
                        legacy_key,
                        *drop,
                    ],
                )
            )
            if outcome == 1:
                return token
            if outcome == 0:
                return None
        raise IndexMoved

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

    async def logout(self, token: str) -> None:
        parsed = parse_token(token)
        if parsed is not None:
            user_id, session_key = parsed
            digest = session_key.rpartition(":")[2]
            await self.scripts.logout(keys=[session_key, keys.sessions(user_id)], args=[digest])

    async def logout_all(self, user_id: int) -> int:
        """End every session of the user: how many there were."""
        index = keys.sessions(user_id)
        for _ in range(RETRIES):
            digests = await members(self.redis, index)
            ended = int(
                await self.scripts.logout_all(keys=[index, *(keys.session(user_id, d) for d in digests)], args=digests)
            )
            if ended >= 0:
                return ended
        raise IndexMoved
