"""The data layer of one process: its Redis connections and the repositories over them.

Everything above the store (routes, auth, the relay, ops, workers) reaches Redis only through
the attributes of `Store`, whose names come from the domain.
"""

from __future__ import annotations

import asyncio
import contextlib

from backend.redis.clients import AnyRedis, Memory, connect, is_cluster, memory
from backend.redis.cluster import ClusterConnections, Topology
from backend.redis.errors import REDIS_FAILURES, translate_errors
from backend.redis.pubsub import ClusterHub, Hub
from backend.redis.scripts import Scripts
from backend.redis.sentinel import Sentinels
from backend.redis.wire import CommandPath, MultiplexedConnection, ServerAddress
from backend.store.accounts import Accounts
from backend.store.chats import Chats
from backend.store.control import Control
from backend.store.interview import Interview
from backend.store.logins import Logins
from backend.store.open_streams import OpenStreams
from backend.store.queue import JobQueue
from backend.store.ratelimit import RateLimiter
from backend.store.replies import Replies
from backend.store.retention import Retention
from backend.store.tickets import StreamTickets
from backend.store.users import Users
from config.settings import Settings

# A worker's XREADGROUP waits this long for a job before asking again.
JOB_READ_BLOCK_MS = 5000


@translate_errors
class Store:
    def __init__(self, settings: Settings, *, worker: bool = False) -> None:
        self.settings = settings
        self.address = ServerAddress.from_url(settings.REDIS_URL)
        self.timeout = settings.REDIS_TIMEOUT_SECONDS
        self.cluster = settings.REDIS_CLUSTER
        # Behind Sentinel every connection below finds the master through the Sentinels and
        # follows a failover (backend/redis/sentinel.py).
        self.sentinels = (
            Sentinels(
                settings.sentinels,
                settings.REDIS_SENTINEL_MASTER,
                settings.REDIS_URL,
                settings.REDIS_SENTINEL_PASSWORD,
                self.timeout,
            )
            if settings.REDIS_SENTINELS
            else None
        )
        self._clients: list[AnyRedis] = []
        self.redis = self._client()
        # The hot calls (every script: session checks, chunk appends, each state change; and a
        # stream's opening reads) go on multiplexed connections: one to a single Redis, one per
        # master of a Cluster, routed by slot. redis-py's pools carry the other commands.
        # The slot map is read on a client of its own: redis-py marks every pooled connection of a
        # client for reconnect when that client re-reads the map.
        # On a Cluster (is_cluster), _client() connects a RedisCluster too; its annotation says either.
        self.topology = (
            Topology(self._client(decode=False), self.timeout) if is_cluster(self.redis) else None  # type: ignore[arg-type]
        )
        self.command_path = self._multiplexed()
        # Heartbeats (writer leases, open-stream holds) go on a lane of their own: on a process
        # whose command path is backed up with chunks, they still arrive before their leases expire.
        self.heartbeat_path = self._multiplexed()
        self.scripts = Scripts(self.command_path)
        self.users = Users(self.redis, self.scripts, settings.SESSION_TTL_SECONDS, settings.SESSIONS_PER_USER_MAX)
        self.logins = Logins(self.redis, self.scripts, settings.LOGIN_STATES_MAX)
        self.interview = Interview(self.redis, self.scripts)
        self.replies = Replies(
            self.redis,
            self.command_path,
            self.scripts,
            db=self.address.db,
            sharded=self.cluster,
            log_ttl=settings.REPLY_LOG_TTL_SECONDS,
            lease_seconds=settings.JOB_LEASE_SECONDS,
            # Load shedding keeps waits under QUEUE_MAX_WAIT_SECONDS; a reply still
            # queued a lease after that has lost its job.
            queued_seconds=settings.QUEUE_MAX_WAIT_SECONDS + settings.JOB_LEASE_SECONDS,
            max_messages=settings.CHAT_HISTORY_MAX_MESSAGES,
            heartbeats=self.heartbeat_path,
        )
        self.chats = Chats(
            self.redis,
            self.scripts,
            self.replies,
            max_chats=settings.CHATS_PER_USER_MAX,
            max_messages=settings.CHAT_HISTORY_MAX_MESSAGES,
            max_bytes=settings.USER_STORAGE_MAX_BYTES,
        )
        # A stream of a pod that died stops counting within JOB_LEASE_SECONDS, like its replies.
        self.open_streams = OpenStreams(
            self.redis,
            self.scripts,
            per_user=settings.STREAMS_PER_USER_MAX,
            hold_seconds=settings.JOB_LEASE_SECONDS,
            heartbeats=self.heartbeat_path,
        )
        self.tickets = StreamTickets(self.redis, self.scripts)
        self.retention = Retention(self.redis, self.chats, settings.CHAT_RETENTION_DAYS)
        self.limiter = RateLimiter(self.scripts)
        self.control = Control(self._client() if worker else self.redis, self.address.db)
        blocking = self._client(read_timeout=JOB_READ_BLOCK_MS / 1000 + self.timeout) if worker else None
        self.queue = JobQueue(self.redis, self.command_path, self.scripts, blocking)
        self.accounts = Accounts(self.redis, self.scripts, self.chats, self.control)

    def _multiplexed(self) -> CommandPath:
        """Multiplexed connections: one to a single Redis, or one per master of a Cluster."""
        if self.topology is not None:
            return ClusterConnections(self.topology, self.address, self.timeout)
        connection = MultiplexedConnection(self.address, self.timeout, self.sentinels)
        if self.sentinels is not None:
            self.sentinels.follow(connection.drop)
        return connection

    def _client(self, *, decode: bool = True, read_timeout: float | None = None) -> AnyRedis:
        client = connect(self.settings, decode=decode, read_timeout=read_timeout, sentinels=self.sentinels)
        self._clients.append(client)
        return client

    def hub(self) -> Hub | ClusterHub:
        """The pub/sub hub of an API process (started by the caller)."""
        if self.topology is not None:
            return ClusterHub(self.topology, self.address, self.timeout)
        hub = Hub(self.address, self.timeout, locator=self.sentinels)
        if self.sentinels is not None:
            self.sentinels.follow(hub.drop)
        return hub

    async def ping(self) -> bool:
        """Does Redis answer within the timeout?"""
        try:
            async with asyncio.timeout(self.timeout):
                return bool(await self.redis.ping())
        except (*REDIS_FAILURES, TimeoutError):
            return False

    async def memory(self) -> list[Memory]:
        """Redis memory against maxmemory (every master of a Cluster)."""
        return await memory(self.redis)

    async def close(self) -> None:
        """Close every connection; bounded, so a shutdown never hangs on a pool."""
        await self.command_path.close()
        await self.heartbeat_path.close()
        if self.sentinels is not None:
            await self.sentinels.close()
        for client in self._clients:
            with contextlib.suppress(*REDIS_FAILURES, TimeoutError):
                async with asyncio.timeout(1.0):  # redis-py's pool can wait on a connection a cancelled task held
                    await client.aclose()
