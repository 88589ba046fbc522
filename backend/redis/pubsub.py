"""The Redis side of the relay: one pub/sub connection per API process (per master node on a
Cluster), shared by all of its open streams.

A hub subscribes a channel when its first listener arrives (and lets the listener wait for
Redis's confirmation), unsubscribes it when the last one leaves, and hands each message to the
channel's listeners as it is parsed. An idle connection is checked with PING and replaced when
it does not answer. Whenever messages may have been missed (a dropped or replaced connection, a
channel moved to another node), every affected listener is told to refill its gap from the
reply log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Protocol

from redis.exceptions import RedisError

from backend.backoff import Backoff
from backend.redis.cluster import Topology
from backend.redis.errors import REDIS_FAILURES, StoreUnavailable
from backend.redis.wire import Locator, PubSubProtocol, Reconnector, ServerAddress, open_connection

log = logging.getLogger("backend.redis.pubsub")

CONFIRM_TIMEOUT_SECONDS = 5.0
SUBSCRIBE_BATCH = 500


class Listener(Protocol):
    def deliver(self, frame: bytes) -> None:
        """A message of the channel, in the order Redis published it."""

    def refill(self) -> None:
        """Messages may have been missed: read the log after the last delivered one."""


Orphans = Callable[[dict[bytes, set[Listener]]], None]


class Hub:
    """The pub/sub connection to one Redis server.

    On a single Redis it reconnects by itself forever; behind Sentinel (`locator` given) each
    connection goes to the master the Sentinels name then. On a Cluster node (`on_orphans` given) a
    lost connection, a refused subscription (MOVED) or a subscription the server dropped
    (`sunsubscribe` after a slot migration) hands the channels back to the ClusterHub, which
    routes them by the current topology.
    """

    def __init__(
        self,
        address: ServerAddress,
        timeout: float,
        *,
        sharded: bool = False,
        on_orphans: Orphans | None = None,
        locator: Locator | None = None,
    ) -> None:
        self.address = address
        self.locator = locator
        self.timeout = timeout
        self.sharded = sharded
        self.on_orphans = on_orphans
        self.listeners: dict[bytes, set[Listener]] = {}
        self._confirmed: dict[bytes, asyncio.Future[None]] = {}
        self._connection: PubSubProtocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._home = f"ai:hub:{os.getpid()}:{id(self)}".encode()  # one subscription that is always there
        self.stopped = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"pubsub-{self.address.host}")

    async def stop(self) -> None:
        self.stopped = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None:
            self._connection.fail(ConnectionError("hub stopped"))

    async def subscribe(self, channel: bytes, listener: Listener) -> None:
        """Add a listener and wait until Redis confirms the channel's subscription."""
        confirmed = self.add(channel, {listener})
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), CONFIRM_TIMEOUT_SECONDS)
        except TimeoutError:
            self.unsubscribe(channel, listener)
            raise StoreUnavailable("Redis did not confirm a subscription in time") from None

    def add(self, channel: bytes, listeners: set[Listener]) -> asyncio.Future[None]:
        """Add listeners to a channel; the future resolves when Redis confirms it (then the
        listeners refill whatever was published before)."""
        current = self.listeners.get(channel)
        if current is None:
            self.listeners[channel] = set(listeners)
            confirmed = self._confirmed[channel] = asyncio.get_running_loop().create_future()
            if self._connection is not None:  # else the (re)connection subscribes it
                self._command(b"SUBSCRIBE", channel)
            return confirmed
        current.update(listeners)
        return self._confirmed[channel]

    def unsubscribe(self, channel: bytes, listener: Listener) -> None:
        listeners = self.listeners.get(channel)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self.listeners[channel]
            self._confirmed.pop(channel, None)
            if self._connection is not None:
                self._command(b"UNSUBSCRIBE", channel)

    def drop(self) -> None:
        """Close the connection now (the master moved): the hub reconnects, every listener refills."""
        if self._connection is not None:
            self._connection.fail(ConnectionError("the master moved (Sentinel failover)"))

    def _command(self, command: bytes, *channels: bytes) -> None:
        assert self._connection is not None
        if self.sharded:  # one SSUBSCRIBE may only name channels of one slot
            for channel in channels:
                self._connection.command(b"S" + command, channel)
        else:
            self._connection.command(command, *channels)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        for listener in self.listeners.get(channel, ()):
            listener.deliver(data)

    def _on_subscribed(self, channel: bytes) -> None:
        confirmed = self._confirmed.get(channel)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)
            # Anything published before the subscription took effect is in the log.
            for listener in self.listeners.get(channel, ()):
                listener.refill()

    def _on_unsubscribed(self, channel: bytes) -> None:
        """Redis dropped a channel we still listen to (its slot moved away): route it again."""
        if channel in self.listeners and self.on_orphans is not None:
            self._orphan([channel])

    def _on_refused(self, error: RedisError) -> None:
        log.info("subscription refused", extra={"error": str(error), "node": self.address.host})
        if self.on_orphans is not None:  # MOVED: the ClusterHub finds the right node
            self._orphan([channel for channel, confirmed in self._confirmed.items() if not confirmed.done()])

    def _orphan(self, channels: list[bytes]) -> None:
        orphans = {}
        for channel in channels:
            listeners = self.listeners.pop(channel, None)
            self._confirmed.pop(channel, None)
            if listeners:
                orphans[channel] = listeners
        if orphans and self.on_orphans is not None:
            self.on_orphans(orphans)

    async def _run(self) -> None:
        reconnect = Reconnector(cap=1.0)
        while True:
            connection = None
            try:
                loop = asyncio.get_running_loop()
                address = self.address
                if self.locator is not None:
                    async with asyncio.timeout(self.timeout):
                        address = await self.locator.locate()
                connection = await open_connection(
                    address,
                    lambda: PubSubProtocol(
                        self._on_message, self._on_subscribed, self._on_unsubscribed, self._on_refused
                    ),
                    self.timeout,
                    select_db=False,
                    master=self.locator is not None,
                )
                connection.command(b"SUBSCRIBE", self._home)
                await connection.ping(self.timeout)  # set-up and home subscription answered
                self._connection = connection
                reconnect.succeeded()
                channels = list(self.listeners)
                for channel in channels:  # a subscription that was live before a drop must confirm again
                    if self._confirmed[channel].done():
                        self._confirmed[channel] = loop.create_future()
                for start in range(0, len(channels), SUBSCRIBE_BATCH):
                    self._command(b"SUBSCRIBE", *channels[start : start + SUBSCRIBE_BATCH])
                await self._watch(connection)
            except asyncio.CancelledError:
                raise
            except (*REDIS_FAILURES, RuntimeError) as error:  # any failure means: reconnect
                log.warning(
                    "pub/sub connection lost, reconnecting",
                    extra={"error": repr(error), "node": f"{self.address.host}:{self.address.port}"},
                )
            finally:
                self._connection = None
                if connection is not None:
                    connection.fail(ConnectionError("replaced"))
            if self.on_orphans is not None:
                self._orphan(list(self.listeners))  # the ClusterHub re-routes them (the node may be gone)
                return
            reconnect.failed()
            await asyncio.sleep(reconnect.wait_time())

    async def _watch(self, connection: PubSubProtocol) -> None:
        """Until the connection is lost: PING it whenever Redis has been silent for a while."""
        idle_limit = max(1.0, self.timeout)
        while not connection.lost:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle_limit):
                    await asyncio.shield(connection.closed)
            if connection.lost:
                break
            if connection.loop.time() - connection.heard >= idle_limit:
                try:
                    await connection.ping(self.timeout)
                except TimeoutError:
                    raise TimeoutError(f"Redis did not answer a PING within {self.timeout} s") from None
        raise connection.closed.result()


class ClusterHub:
    """The hub on a Redis Cluster: reply channels are sharded (SSUBSCRIBE), so each master node
    gets its own Hub on one direct connection, and a channel goes to the node owning its slot.
    When a node hub loses channels (failover, migration, a dead node), the topology is read
    again and they are subscribed where they now live; their listeners refill from the log."""

    def __init__(self, topology: Topology, address: ServerAddress, timeout: float) -> None:
        self.topology = topology
        self.address = address
        self.timeout = timeout
        self.hubs: dict[str, Hub] = {}
        self._homeless: dict[bytes, set[Listener]] = {}
        self._rerouting: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Node hubs are started on first use, once the cluster's slot map is known."""

    async def stop(self) -> None:
        if self._rerouting is not None:
            self._rerouting.cancel()
        for hub in list(self.hubs.values()):
            await hub.stop()

    def _hub_at(self, host: str, port: int) -> Hub:
        name = f"{host}:{port}"
        hub = self.hubs.get(name)
        if hub is None or hub.stopped or (hub._task is not None and hub._task.done()):
            hub = self.hubs[name] = Hub(self.address.at(host, port), self.timeout, sharded=True, on_orphans=self._adopt)
            hub.start()
        return hub

    async def _hub_for(self, channel: bytes) -> Hub:
        try:
            return self._hub_at(*await self.topology.node_for(channel))
        except REDIS_FAILURES as error:
            raise StoreUnavailable(f"no cluster node serves the channel: {error!r}") from error

    async def subscribe(self, channel: bytes, listener: Listener) -> None:
        await (await self._hub_for(channel)).subscribe(channel, listener)

    def unsubscribe(self, channel: bytes, listener: Listener) -> None:
        homeless = self._homeless.get(channel)
        if homeless is not None:
            homeless.discard(listener)
            if not homeless:
                del self._homeless[channel]
        for hub in self.hubs.values():
            if channel in hub.listeners:
                hub.unsubscribe(channel, listener)
                return

    def _adopt(self, orphans: dict[bytes, set[Listener]]) -> None:
        for channel, listeners in orphans.items():
            self._homeless.setdefault(channel, set()).update(listeners)
            for listener in listeners:
                listener.refill()
        if self._rerouting is None or self._rerouting.done():
            self._rerouting = asyncio.get_running_loop().create_task(self._reroute(), name="pubsub-reroute")

    async def _reroute(self) -> None:
        """Subscribe homeless channels on the node that owns them now, retrying until it works."""
        backoff = Backoff(0.05, cap=1.0)
        while self._homeless:
            await backoff.sleep()
            try:
                await self.topology.refresh()
            except StoreUnavailable as error:
                log.warning("cluster topology unavailable", extra={"error": str(error)})
                continue
            homeless, self._homeless = self._homeless, {}
            for channel, listeners in homeless.items():
                try:
                    node = self.topology.known_node_for(channel)
                except REDIS_FAILURES:  # its slot has no owner in this map yet: next round
                    self._homeless.setdefault(channel, set()).update(listeners)
                    continue
                self._hub_at(*node).add(channel, listeners)
            log.info("channels re-routed after a topology change", extra={"channels": len(homeless)})
