"""Redis behind Sentinel: where the master named REDIS_SENTINEL_MASTER is now, and news of a failover.

Every connection of a process finds the master through the Sentinels and finds it again:
- the hand-written connections (multiplexed command paths, the pub/sub hub) ask `locate()` on
  every (re)connect (SENTINEL GET-MASTER-ADDR-BY-NAME, one Sentinel after another) and check with
  ROLE that the server they reached is the master; a READONLY reply or a lost connection makes them
  reconnect, so locate again;
- redis-py's pools are its SentinelConnectionPool (redis.asyncio.sentinel): each new connection
  asks the Sentinels (SENTINEL MASTERS, a master that is down is refused) and a connection that
  answers READONLY is dropped;
- all of them are dropped at once when a Sentinel announces `+switch-master` for our master
  (each process subscribes to every Sentinel), so none keeps talking to a server that is no
  longer the master.

Replication is asynchronous: between the moment a Sentinel promotes a replica and the moment it
announces the switch (about a second), the old master still takes writes, and they are lost. So
when the Sentinel leading a failover announces that it promotes a replica
(`+failover-state-send-slaveof-noone`), every connection is dropped and none is made until the
switch (or an abort) is announced, at most PAUSE_SECONDS: calls meanwhile fail as StoreUnavailable
(503, or a worker's retry), rather than succeed on a server whose writes are about to vanish.

REDIS_URL gives the user, password, database and TLS options of the master; the Sentinels are
reached with the same TLS options and REDIS_SENTINEL_PASSWORD.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError

from backend.redis.errors import REDIS_FAILURES
from backend.redis.wire import PubSubProtocol, Reconnector, RespProtocol, ServerAddress, open_connection, pack_command

log = logging.getLogger("backend.redis.sentinel")

SWITCH_MASTER = b"+switch-master"
PROMOTING = b"+failover-state-send-slaveof-noone"
IDLE_PING_SECONDS = 5.0
# A failover that gives up after the promotion started: the master stays where it was.
ABORTED = (b"-failover-abort-slave-timeout", b"+failover-end-for-timeout")
PAUSE_SECONDS = 10.0  # no switch nor abort heard by then: connect again, ROLE and READONLY still guard


class FailoverUnderWay(MasterNotFoundError):
    """A Sentinel is promoting a replica: no connection is made until it announces the switch."""


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool that waits (up to its timeout) for a free connection, like the
    pools of a single Redis, instead of failing at once past max_connections, and that makes no
    connection while a failover is under way."""

    paused: Callable[[], bool] = staticmethod(lambda: False)

    async def get_master_address(self) -> Any:
        if self.paused():
            raise FailoverUnderWay(f"a failover of {self.service_name!r} is under way")
        return await super().get_master_address()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped


class Sentinels:
    """The Sentinels of one master: its address now, pools that follow it, failover news."""

    def __init__(
        self,
        sentinels: list[tuple[str, int]],
        name: str,
        url: str,
        password: str,
        timeout: float,
    ) -> None:
        self.sentinels = list(sentinels)
        self.name = name
        self.timeout = timeout
        self.address = ServerAddress.from_url(url)  # credentials, database and TLS of the master
        self._password = password or None
        # The URL's options for redis-py's pools, without its host (the Sentinels say where).
        options: dict[str, Any] = dict(parse_url(url))
        connection_class = options.pop("connection_class", None)
        for unused in ("host", "port", "path"):
            options.pop(unused, None)
        self.tls = connection_class is not None and issubclass(connection_class, SSLConnection)
        self.pool_options: dict[str, Any] = {**options, "ssl": True} if self.tls else options
        tls_options = {k: v for k, v in options.items() if k.startswith("ssl")}
        self.manager = Sentinel(
            sentinels,
            sentinel_kwargs={
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "password": self._password,
                **({**tls_options, "ssl": True} if self.tls else {}),
            },
        )
        self._followers: list[Callable[[], object]] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._paused_until = 0.0  # loop time until which no connection is made (a promotion under way)
        self._switched_to = b""  # the last switch acted on (every Sentinel announces it)
        self._tasks: set[asyncio.Task[None]] = set()

    # Where the master is.

    async def locate(self) -> ServerAddress:
        """The master's address now, with REDIS_URL's credentials, database and TLS."""
        self._watch_soon()
        if self.paused():
            raise FailoverUnderWay(f"a failover of {self.name!r} is under way")
        host, port = await self.master()
        return replace(
            self.address, host=host, port=port, path=None, server_hostname=host if self.address.tls else None
        )

    async def master(self) -> tuple[str, int]:
        """SENTINEL GET-MASTER-ADDR-BY-NAME, asked of each Sentinel in turn; the first that knows
        the master answers (and is asked first next time)."""
        errors = []
        for index, (host, port) in enumerate(list(self.sentinels)):
            try:
                reply = await self._ask((host, port), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
            except (*REDIS_FAILURES, TimeoutError) as error:
                errors.append(f"{host}:{port}: {error}")
                continue
            if reply:
                if index:
                    self.sentinels.insert(0, self.sentinels.pop(index))
                return reply[0].decode(), int(reply[1])
            errors.append(f"{host}:{port} does not know {self.name!r}")
        raise MasterNotFoundError(f"no Sentinel names a master for {self.name!r}: {'; '.join(errors)}")

    def _sentinel_address(self, host: str, port: int) -> ServerAddress:
        return ServerAddress(
            host=host,
            port=port,
            password=self._password,
            tls=self.address.tls,
            server_hostname=host if self.address.tls else None,
        )

    async def _ask(self, sentinel: tuple[str, int], *command: str) -> Any:
        protocol = await open_connection(self._sentinel_address(*sentinel), RespProtocol, self.timeout, select_db=False)
        try:
            async with asyncio.timeout(self.timeout):
                return await protocol.send(pack_command(*command))
        finally:
            protocol.fail(ConnectionError("done"))

    # redis-py's pools.

    def client(self, *, max_connections: int, **options: Any) -> Redis:
        """A redis-py client whose pool finds the master through the Sentinels (each new
        connection), drops a connection that answers READONLY, and all of them on a failover."""
        pool = BlockingSentinelPool(  # type: ignore[no-untyped-call]  # redis-py leaves its __init__ untyped
            self.name,
            self.manager,
            max_connections=max_connections,
            timeout=self.timeout,
            **{**self.pool_options, **options},
        )
        pool.paused = self.paused
        self.follow(pool.disconnect)
        return Redis.from_pool(pool)

    # Failover news.

    def follow(self, on_switch: Callable[[], object]) -> None:
        """Call `on_switch` (a coroutine function is run as a task) whenever a Sentinel announces
        that our master moved."""
        self._followers.append(on_switch)

    def paused(self) -> bool:
        """Is a promotion under way (announced, its switch not yet)?"""
        return self._paused_until > asyncio.get_running_loop().time()

    def _heard(self, channel: bytes, data: bytes) -> None:
        """A Sentinel's event: `+failover-state-send-slaveof-noone slave <ip>:<port> <ip> <port> @
        <master> <ip> <port>` or `+switch-master <master> <old ip> <old port> <new ip> <new port>`."""
        fields = data.split(b" ")
        name = self.name.encode()
        if channel == PROMOTING and fields[-3:-2] == [name]:
            log.warning("Sentinel promotes a replica: pausing", extra={"event": data.decode(errors="replace")})
            self._paused_until = asyncio.get_running_loop().time() + PAUSE_SECONDS
            self._drop_all()
        elif channel in ABORTED and name in (fields[1:2] + fields[-3:-2]):  # "master <name> ..." or "... @ <name> ..."
            log.warning("Sentinel failover aborted", extra={"event": data.decode(errors="replace")})
            self._paused_until = 0.0
        elif channel == SWITCH_MASTER and fields[0] == name:
            self._paused_until = 0.0
            if data != self._switched_to:  # each Sentinel announces it: act once
                self._switched_to = data
                log.warning("Sentinel switched the master", extra={"switch": data.decode(errors="replace")})
                self._drop_all()

    def _drop_all(self) -> None:
        loop = asyncio.get_running_loop()
        for follower in self._followers:
            outcome = follower()
            if inspect.isawaitable(outcome):
                task = loop.create_task(_quietly(outcome))
                self._tasks.add(task)  # kept until done: the loop holds tasks only weakly
                task.add_done_callback(self._tasks.discard)

    def _watch_soon(self) -> None:
        if not self._watchers or any(task.done() for task in self._watchers):
            for task in self._watchers:
                task.cancel()
            loop = asyncio.get_running_loop()
            self._watchers = [
                loop.create_task(self._watch(sentinel), name=f"sentinel-watch-{sentinel[1]}")
                for sentinel in list(self.sentinels)
            ]

    async def _watch(self, sentinel: tuple[str, int]) -> None:
        """Subscribed to the failover events of one Sentinel (only the one leading a failover
        announces the promotion), forever."""
        reconnect = Reconnector(cap=1.0)
        while True:
            connection = None
            try:
                connection = await open_connection(
                    self._sentinel_address(*sentinel),
                    lambda: PubSubProtocol(self._heard, _ignore, _ignore, _ignore),
                    self.timeout,
                    select_db=False,
                )
                connection.command(b"SUBSCRIBE", SWITCH_MASTER, PROMOTING, *ABORTED)
                await connection.ping(self.timeout)
                reconnect.succeeded()
                while not connection.lost:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(IDLE_PING_SECONDS):
                            await asyncio.shield(connection.closed)
                    if not connection.lost and connection.loop.time() - connection.heard >= IDLE_PING_SECONDS:
                        await connection.ping(self.timeout)
            except asyncio.CancelledError:
                raise
            except (*REDIS_FAILURES, RuntimeError) as error:
                log.info(
                    "Sentinel watch lost", extra={"error": repr(error), "sentinel": f"{sentinel[0]}:{sentinel[1]}"}
                )
            finally:
                if connection is not None:
                    connection.fail(ConnectionError("replaced"))
            reconnect.failed()
            await asyncio.sleep(reconnect.wait_time())

    async def close(self) -> None:
        for task in self._watchers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(*REDIS_FAILURES, TimeoutError):
            async with asyncio.timeout(1.0):
                await self.manager.aclose()


def _ignore(*_: object) -> None:
    """Subscription notices of the watch connection: nothing to do."""


async def _quietly(outcome: Any) -> None:
    with contextlib.suppress(*REDIS_FAILURES, RedisError):
        await outcome
