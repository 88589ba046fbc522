"""Creating the Redis client of a process (single node or cluster)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.settings import Settings

# Redis being unreachable surfaces as one of these; the API answers 503 for them.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

AnyRedis = Redis | RedisCluster


def connect(settings: Settings, *, decode: bool = True, **extra: Any) -> AnyRedis:
    """One pooled client; connections are made lazily and remade after Redis comes back."""
    options: dict[str, Any] = {
        "decode_responses": decode,
        "socket_connect_timeout": 2,
        "socket_keepalive": True,
        "health_check_interval": 30,
        # A pooled connection that died with a Redis restart is remade once, at once.
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    options.update(extra)
    if settings.REDIS_CLUSTER:
        return RedisCluster.from_url(settings.REDIS_URL, **options)
    # A burst beyond the pool waits for a free connection (up to 10 s) instead of failing.
    pool = BlockingConnectionPool.from_url(settings.REDIS_URL, max_connections=256, timeout=10, **options)
    return Redis(connection_pool=pool)
