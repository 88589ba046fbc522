"""redis-py clients of a process (single node or cluster), every call bounded in time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from backend.redis.sentinel import Sentinels
from config.settings import Settings

AnyRedis = Redis | RedisCluster
__all__ = ["AnyRedis", "Memory", "ResponseError", "connect", "is_cluster", "memory"]
CLUSTER_CONNECTIONS_PER_NODE = 1024
# What CLIENT SETINFO reports, resolved once: without it redis-py reads its package metadata
# (importlib.metadata.version) for every new pooled connection, about a millisecond each, which a
# burst that grows the pool pays hundreds of times (2-8% of the API's CPU in B2 and B6).
DRIVER_INFO = DriverInfo()


def connect(
    settings: Settings,
    *,
    decode: bool = True,
    read_timeout: float | None = None,
    sentinels: Sentinels | None = None,
    **extra: Any,
) -> AnyRedis:
    """One pooled client; connections are made lazily and remade after Redis comes back (behind
    `sentinels`: each new connection goes to the master they name then).

    Every call is bounded by REDIS_TIMEOUT_SECONDS (connect, each read, and the wait for a free
    pooled connection); `read_timeout` widens the read bound for a client that blocks on purpose
    (a worker's XREADGROUP ... BLOCK).
    """
    timeout = settings.REDIS_TIMEOUT_SECONDS
    options: dict[str, Any] = {
        "decode_responses": decode,
        "socket_timeout": read_timeout or timeout,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
        # A pooled connection that died with a Redis restart is remade once, at once; a stall
        # (a timeout) is not retried, so the caller fails within the bound.
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), 1, supported_errors=(RedisConnectionError,)),
        "driver_info": DRIVER_INFO,
    }
    options.update(extra)
    if settings.REDIS_CLUSTER:
        # redis-py's cluster pools do not wait for a free connection: past the cap a call fails at
        # once (MaxConnectionsError), so the cap per node is set well above a pod's bursts.
        return RedisCluster.from_url(settings.REDIS_URL, max_connections=CLUSTER_CONNECTIONS_PER_NODE, **options)
    if sentinels is not None:
        return sentinels.client(max_connections=256, **options)
    pool = BlockingConnectionPool.from_url(settings.REDIS_URL, max_connections=256, timeout=timeout, **options)
    return Redis(connection_pool=pool)


def is_cluster(client: AnyRedis) -> bool:
    return isinstance(client, RedisCluster)


@dataclass(frozen=True)
class Memory:
    """One Redis server's memory as INFO says: `used` bytes against `limit` (0: no maxmemory).
    `node` is a Cluster master's host:port, empty for a single Redis (or Sentinel's master)."""

    node: str
    used: int
    limit: int


async def memory(client: AnyRedis) -> list[Memory]:
    """The memory of the Redis the client reaches: one server, or every master of a Cluster
    (each holds its own share of the data, under its own maxmemory)."""
    if isinstance(client, RedisCluster):
        await client.initialize()
        found = []
        for node in client.get_primaries():
            info = await client.info("memory", target_nodes=node)
            found.append(Memory(node.name, int(info["used_memory"]), int(info["maxmemory"])))
        return found
    info = await client.info("memory")
    return [Memory("", int(info["used_memory"]), int(info["maxmemory"]))]
