"""Open SSE streams per user, counted across pods (STREAMS_PER_USER_MAX).

Each open stream is an entry of the user's sorted set scored by an expiry in Redis time
(lua/open_stream.lua). The pod that holds streams extends all of them in one batch every few
seconds (`hold`, called by the relay's ticker) and removes each one when it ends; the entries
of a pod that died expire within `hold_seconds` and are dropped by the next open.
"""

from __future__ import annotations

import itertools
import secrets
from enum import IntEnum

from backend.redis.clients import AnyRedis
from backend.redis.errors import translate_errors
from backend.redis.scripts import Call, Scripts
from backend.redis.wire import CommandPath, pack_command
from backend.store import keys


class OpenStream(IntEnum):
    """lua/open_stream.lua's answer."""

    AT_CAP = 0
    OPENED = 1


@translate_errors
class OpenStreams:
    def __init__(
        self, redis: AnyRedis, scripts: Scripts, *, per_user: int, hold_seconds: float, heartbeats: CommandPath
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.heartbeats = heartbeats  # holds: a lane of their own, never behind a backlog of other calls
        self.per_user = per_user
        self.hold_ms = max(1, int(hold_seconds * 1000))
        self.prefix = secrets.token_hex(8)  # stream ids unique across pods without a round trip
        self.counter = itertools.count(1)
        self.held: dict[int, set[str]] = {}  # user -> ids of the streams this process has open

    async def open(self, user_id: int) -> str | None:
        """A new stream's id, or None when the user already holds `per_user` streams."""
        stream_id = f"{self.prefix}-{next(self.counter)}"
        opened = await self.scripts.open_stream(
            keys=[keys.open_streams(user_id)], args=[stream_id, self.per_user, self.hold_ms]
        )
        if int(opened) != OpenStream.OPENED:
            return None
        self.held.setdefault(user_id, set()).add(stream_id)
        return stream_id

    async def close(self, user_id: int, stream_id: str) -> None:
        """The stream ended. It is no longer extended even if Redis cannot be told now."""
        ids = self.held.get(user_id)
        if ids is not None:
            ids.discard(stream_id)
            if not ids:
                del self.held[user_id]
        key = keys.open_streams(user_id)
        # On the multiplexed lane: when a thousand streams end together, redis-py's pool would
        # open a connection for each (each reading the package's metadata: 8% of the API's CPU in B2).
        await self.heartbeats.call_packed(pack_command("ZREM", key, stream_id), key)

    async def hold(self) -> None:
        """Extend every stream this process has open: one script call per user, pipelined."""
        calls: list[Call] = [([keys.open_streams(user_id)], [self.hold_ms, *ids]) for user_id, ids in self.held.items()]
        await self.scripts.hold_streams.many(calls, path=self.heartbeats)
