"""Redis Cluster routing for the hand-written connections: the slot map (read through redis-py's
cluster client, refreshed by one reader at a time), and one multiplexed connection per master
node, each call sent to the node that owns its keys' slot.

A call follows the cluster's own answers: MOVED goes to the node named (and the map is read
again in the background), ASK goes to the importing node behind an ASKING, TRYAGAIN (a
multi-key call while a migrating slot's keys are split) waits a moment and asks again, and a
lost or demoted node (a failover) or an uncovered slot reads the map again before the next try.
Only that routing is retried here, within REDIS_TIMEOUT_SECONDS; a stall is not (the caller's
bound holds), and longer outages are the caller's retry policy. A connection to a node that left
the map is not closed by the router (calls may be on it): a lost one fails by itself, a demoted
one closes on READONLY, and neither reconnects until a call is routed to it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from backend.redis.errors import REDIS_FAILURES, StoreUnavailable
from backend.redis.wire import MultiplexedConnection, ServerAddress

log = logging.getLogger("backend.redis.cluster")

ROUTING_TRIES = 6  # a MOVED, an ASK, a few TRYAGAIN or re-read maps; all within the timeout
# Answers after which the slot map is read again before the next try (an uncovered slot too).
REROUTE_ON = (RedisConnectionError, ReadOnlyError, ClusterDownError, RedisClusterException)

Node = tuple[str, int]


class Topology:
    """Which master node serves a key, from redis-py's slot map of the cluster."""

    def __init__(self, cluster: RedisCluster, timeout: float) -> None:
        self.cluster = cluster
        self.timeout = timeout
        self._reading: asyncio.Task[None] | None = None

    async def node_for(self, key: str | bytes) -> Node:
        if not self.cluster.nodes_manager.slots_cache:
            await self.refresh()
        return self.known_node_for(key)

    def known_node_for(self, key: str | bytes) -> Node:
        """The owner in the map as last read (SlotNotCoveredError when the map has no owner)."""
        node = self.cluster.get_node_from_key(key)  # type: ignore[arg-type]  # redis-py annotates str only; it takes bytes
        if node is None:  # redis-py raises SlotNotCoveredError first; None is only in its annotation
            raise SlotNotCoveredError(f"no node owns the slot of {key!r}")
        return str(node.host), int(node.port)

    async def refresh(self) -> None:
        """Read the map again; callers that ask while a read is under way share it."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.get_running_loop().create_task(self._read(), name="cluster-topology")
        await asyncio.shield(self._reading)

    def refresh_soon(self) -> None:
        """Read the map again in the background (a MOVED told us it is stale)."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.get_running_loop().create_task(self._read(), name="cluster-topology")
            self._reading.add_done_callback(_consume)

    async def _read(self) -> None:
        try:
            async with asyncio.timeout(self.timeout * 2):
                known = bool(self.cluster.nodes_manager.slots_cache)
                await self.cluster.initialize()  # the client's own set-up, once (the map and its command table)
                if known:
                    await self.cluster.nodes_manager.initialize()
        except (*REDIS_FAILURES, RuntimeError) as error:
            raise StoreUnavailable(f"cannot read the cluster topology: {error!r}") from error


def _consume(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("cluster topology unavailable", extra={"error": str(task.exception())})


class ClusterConnections:
    """A multiplexed connection per master node, with calls routed by slot."""

    def __init__(self, topology: Topology, address: ServerAddress, timeout: float) -> None:
        self.topology = topology
        self.address = address
        self.timeout = timeout
        self.nodes: dict[Node, MultiplexedConnection] = {}

    def _at(self, node: Node) -> MultiplexedConnection:
        connection = self.nodes.get(node)
        if connection is None:
            connection = self.nodes[node] = MultiplexedConnection(self.address.at(*node), self.timeout)
        return connection

    async def call_packed(self, command: bytes, key: str | bytes) -> Any:
        """Send one packed command whose keys share `key`'s slot to the node that owns it."""
        return await self._routed(key, lambda connection, asking: connection.call_packed(command, asking=asking))

    async def evalsha(self, source: str, command: bytes, key: str | bytes) -> Any:
        """Run a packed EVALSHA whose keys share `key`'s slot on the node that owns it."""
        return await self._routed(key, lambda connection, asking: connection.evalsha(source, command, asking=asking))

    def send_nowait(self, command: bytes, key: str | bytes) -> asyncio.Future[Any] | None:
        """Write one packed command to the node the map last named, now (see
        MultiplexedConnection.send_nowait); None when the map or the connection is not there yet.
        A redirection comes back as the future's error: the caller then takes the routed path."""
        if not self.topology.cluster.nodes_manager.slots_cache:
            return None
        try:
            node = self.topology.known_node_for(key)
        except RedisClusterException:
            return None
        return self._at(node).send_nowait(command)

    async def _routed(self, key: str | bytes, send: Callable[[MultiplexedConnection, bool], Awaitable[Any]]) -> Any:
        target: Node | None = None
        asking = False
        deadline = asyncio.get_running_loop().time() + self.timeout
        for attempt in range(ROUTING_TRIES):
            try:
                node = target or await self.topology.node_for(key)
                return await send(self._at(node), asking)
            except MovedError as moved:  # the slot lives elsewhere now
                target, asking = moved.node_addr, False
                self.topology.refresh_soon()
                continue
            except AskError as ask:  # the slot is being migrated and this key already moved
                target, asking = ask.node_addr, True
                continue
            except TryAgainError:  # a multi-key call while the slot's keys are split: the same node, shortly
                if attempt == ROUTING_TRIES - 1 or asyncio.get_running_loop().time() > deadline:
                    raise
            except REROUTE_ON:  # the node is lost or no longer the slot's master: read the map again
                if attempt == ROUTING_TRIES - 1 or asyncio.get_running_loop().time() > deadline:
                    raise
                target, asking = None, False
                with contextlib.suppress(StoreUnavailable):
                    await self.topology.refresh()
            await asyncio.sleep(random.uniform(0.02, 0.06))
        raise RedisConnectionError(f"no cluster node took the call after {ROUTING_TRIES} tries")

    async def close(self) -> None:
        for connection in list(self.nodes.values()):
            await connection.close()
        self.nodes.clear()
