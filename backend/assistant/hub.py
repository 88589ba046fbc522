"""One pub/sub connection per API process, shared by all of its open streams.

The hub subscribes a channel when its first listener arrives (and lets the listener wait for
Redis's confirmation), unsubscribes it when the last one leaves, and hands each message to the
channel's listeners as it is parsed. If Redis drops the connection (it does when a subscriber
falls behind its output buffer limit), the hub reconnects, re-subscribes everything, and tells
every listener to refill its gap from the reply log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Protocol

from redis.asyncio import RedisCluster

from backend.assistant.resp import Address, PubSubConnection, open_pubsub
from backend.errors import ServiceUnavailable

log = logging.getLogger("backend.hub")

CONFIRM_TIMEOUT_SECONDS = 5.0


class Listener(Protocol):
    def deliver(self, frame: bytes) -> None:
        """A message of the channel, in the order Redis published it."""

    def refill(self) -> None:
        """Messages may have been missed: read the log after the last delivered one."""


class Hub:
    def __init__(self, address: Address, *, sharded: bool = False) -> None:
        self.address = address
        self.sharded = sharded
        self.listeners: dict[bytes, set[Listener]] = {}
        self._confirmed: dict[bytes, asyncio.Future[None]] = {}
        self._connection: PubSubConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._home = f"ai:hub:{os.getpid()}:{id(self)}".encode()  # one subscription that is always there

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pubsub-hub")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()

    async def subscribe(self, channel: bytes, listener: Listener) -> None:
        """Add a listener and wait until Redis confirms the channel's subscription."""
        listeners = self.listeners.get(channel)
        if listeners is None:
            self.listeners[channel] = {listener}
            confirmed = self._confirmed[channel] = asyncio.get_running_loop().create_future()
            if self._connection is not None:  # else the (re)connection subscribes it
                self._command(b"SUBSCRIBE", channel)
        else:
            listeners.add(listener)
            confirmed = self._confirmed[channel]
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), CONFIRM_TIMEOUT_SECONDS)
        except TimeoutError:
            self.unsubscribe(channel, listener)
            raise ServiceUnavailable("The service is temporarily unavailable. Please retry shortly.") from None

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

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                connection = await open_pubsub(self.address, self._on_message, self._on_subscribed)
                connection.command(b"SUBSCRIBE", self._home)
                self._connection = connection
                channels = list(self.listeners)
                for channel in channels:  # a subscription that was live before a drop must confirm again
                    if self._confirmed[channel].done():
                        self._confirmed[channel] = asyncio.get_running_loop().create_future()
                for start in range(0, len(channels), 500):
                    self._command(b"SUBSCRIBE", *channels[start:start + 500])
                backoff = 0.05
                raise await connection.closed or ConnectionError("closed")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure means: reconnect
                self._connection = None
                log.warning("pub/sub connection lost, reconnecting", extra={"error": repr(error)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)


class ClusterHub:
    """The hub on a Redis Cluster: reply channels are sharded (SSUBSCRIBE), so each master node
    gets its own Hub on one direct connection, and a channel goes to the node owning its slot."""

    def __init__(self, cluster: RedisCluster, address: Address) -> None:
        self.cluster = cluster
        self.address = address
        self.hubs: dict[str, Hub] = {}

    def start(self) -> None:
        """Node hubs are started on first use, once the cluster's slot map is known."""

    async def stop(self) -> None:
        for hub in self.hubs.values():
            await hub.stop()

    async def _hub_for(self, channel: bytes) -> Hub:
        if not self.cluster.nodes_manager.slots_cache:
            await self.cluster.initialize()
        node = self.cluster.get_node_from_key(channel)
        hub = self.hubs.get(node.name)
        if hub is None:
            hub = self.hubs[node.name] = Hub(self.address.at(node.host, node.port), sharded=True)
            hub.start()
        return hub

    async def subscribe(self, channel: bytes, listener: Listener) -> None:
        await (await self._hub_for(channel)).subscribe(channel, listener)

    def unsubscribe(self, channel: bytes, listener: Listener) -> None:
        for hub in self.hubs.values():
            if channel in hub.listeners:
                hub.unsubscribe(channel, listener)
                return
