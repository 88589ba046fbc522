"""One pub/sub connection per API process, shared by all of its open streams.

The hub subscribes a channel when its first listener arrives (and lets the listener wait for
Redis's confirmation), unsubscribes it when the last one leaves, and fans each message out to
the channel's listeners. If Redis drops the connection (it does when a subscriber falls behind
its output buffer limit), the hub reconnects, re-subscribes everything, and tells every
listener to refill its gap from the reply log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import PubSub

from backend.errors import ServiceUnavailable
from backend.store.redis import AnyRedis

log = logging.getLogger("backend.hub")

CONFIRM_TIMEOUT_SECONDS = 5.0


class Listener:
    """What one open stream receives: frames in arrival order, plus wake-ups."""

    __slots__ = ("closing", "frames", "resync", "wake")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.wake = asyncio.Event()
        self.resync = False  # frames may have been lost: re-read the log
        self.closing = False  # the pod is shutting down: end the stream, the client resumes

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.wake.set()

    def flag_resync(self) -> None:
        self.resync = True
        self.wake.set()


class Hub:
    def __init__(self, redis: AnyRedis, *, sharded: bool = False) -> None:
        self.redis = redis
        self.sharded = sharded
        self.listeners: dict[bytes, set[Listener]] = {}
        self._confirmed: dict[bytes, asyncio.Future[None]] = {}
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._home = f"ai:hub:{os.getpid()}:{id(self)}".encode()  # keeps the reader subscribed to something
        self.reconnects = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pubsub-hub")

    async def stop(self) -> None:
        for listeners in self.listeners.values():
            for listener in listeners:
                listener.closing = True
                listener.wake.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()

    @property
    def open_streams(self) -> int:
        return sum(len(listeners) for listeners in self.listeners.values())

    async def subscribe(self, channel: bytes, listener: Listener) -> None:
        """Add a listener and wait until Redis confirms the channel's subscription."""
        listeners = self.listeners.get(channel)
        if listeners is None:
            self.listeners[channel] = {listener}
            confirmed = self._confirmed[channel] = asyncio.get_running_loop().create_future()
            if self._pubsub is not None:
                with contextlib.suppress(Exception):  # on failure the reconnect re-subscribes it
                    await self._send("subscribe", channel)
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
            if self._pubsub is not None:
                asyncio.get_running_loop().create_task(self._quiet_send("unsubscribe", channel))

    async def _send(self, command: str, channel: bytes) -> None:
        assert self._pubsub is not None
        if self.sharded:
            command = "s" + command
        await getattr(self._pubsub, command)(channel)

    async def _quiet_send(self, command: str, channel: bytes) -> None:
        with contextlib.suppress(Exception):
            if channel not in self.listeners:  # nobody came back meanwhile
                await self._send(command, channel)

    async def _run(self) -> None:
        backoff = 0.05
        first = True
        while True:
            try:
                await self._connect(resync=not first)
                first = False
                backoff = 0.05
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("pub/sub connection lost, reconnecting", extra={"error": repr(error)})
                self.reconnects += 1
                if self._pubsub is not None:
                    with contextlib.suppress(Exception):
                        await self._pubsub.aclose()
                    self._pubsub = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _connect(self, *, resync: bool) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=False)
        try:
            await self._subscribe_everything(pubsub, resync=resync)
        except BaseException:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            raise
        self._pubsub = pubsub

    async def _subscribe_everything(self, pubsub: PubSub, *, resync: bool) -> None:
        await pubsub.subscribe(self._home)
        if resync:
            # Confirmations may not arrive for channels subscribed before the drop: re-arm them.
            for channel in self.listeners:
                if self._confirmed.get(channel) is None or self._confirmed[channel].done():
                    self._confirmed[channel] = asyncio.get_running_loop().create_future()
        # Channels added while we subscribe are picked up by the next round; the connection is
        # published (and subscribe() sends directly) only once nothing is left over.
        sent: set[bytes] = set()
        while pending := [channel for channel in self.listeners if channel not in sent]:
            await self._subscribe_all(pubsub, pending)
            sent.update(pending)

    async def _subscribe_all(self, pubsub: PubSub, channels: list[bytes]) -> None:
        if self.sharded:  # one SSUBSCRIBE may only name channels of one slot
            for channel in channels:
                await pubsub.ssubscribe(channel)
            return
        for start in range(0, len(channels), 500):
            await pubsub.subscribe(*channels[start:start + 500])

    async def _read(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        listeners = self.listeners
        message_types = (b"message", b"smessage", "message", "smessage")
        while True:
            message = await pubsub.get_message(timeout=5.0)
            if message is None:
                continue
            kind = message["type"]
            channel = message["channel"]
            if kind in message_types:
                for listener in listeners.get(channel, ()):
                    listener.push(message["data"])
            elif kind in ("subscribe", "ssubscribe", b"subscribe", b"ssubscribe"):
                confirmed = self._confirmed.get(channel)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
                    # Anything published while we were not subscribed is in the log.
                    for listener in listeners.get(channel, ()):
                        listener.flag_resync()


class ClusterHub:
    """The hub on a Redis Cluster: reply channels are sharded (SSUBSCRIBE), so each master node
    gets its own Hub on one direct connection, and a channel goes to the node owning its slot."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.redis = cluster  # log reads go through the cluster client
        self.hubs: dict[str, Hub] = {}

    def start(self) -> None:
        """Node hubs are started on first use, once the cluster's slot map is known."""

    async def stop(self) -> None:
        for hub in self.hubs.values():
            await hub.stop()
            await hub.redis.aclose()

    @property
    def open_streams(self) -> int:
        return sum(hub.open_streams for hub in self.hubs.values())

    @property
    def reconnects(self) -> int:
        return sum(hub.reconnects for hub in self.hubs.values())

    async def _hub_for(self, channel: bytes) -> Hub:
        if not self.redis.nodes_manager.slots_cache:
            await self.redis.initialize()
        node = self.redis.get_node_from_key(channel)
        hub = self.hubs.get(node.name)
        if hub is None:
            connection = self.redis.connection_kwargs
            client = Redis(host=node.host, port=node.port, decode_responses=False,
                           username=connection.get("username"), password=connection.get("password"),
                           socket_connect_timeout=2, socket_keepalive=True)
            hub = self.hubs[node.name] = Hub(client, sharded=True)
            hub.start()
        return hub

    async def subscribe(self, channel: bytes, listener: Listener) -> None:
        await (await self._hub_for(channel)).subscribe(channel, listener)

    def unsubscribe(self, channel: bytes, listener: Listener) -> None:
        for hub in self.hubs.values():
            if channel in hub.listeners:
                hub.unsubscribe(channel, listener)
                return
