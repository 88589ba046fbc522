"""Redis Cluster routing for the hand-written connections: the slot map (read through redis-py's
cluster client, refreshed by one reader at a time), and one multiplexed connection per master
node, each call sent to the node that owns its keys' slot.

A call follows the cluster's own answers: MOVED goes to the node named (and the map is read
again in the background), ASK goes to the importing node behind an ASKING, and a lost or demoted
node (a failover) reads the map again before the next try. Only that routing is retried here;
a stall is not (the caller's bound holds), and longer outages are the caller's retry policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import RedisCluster
from redis.exceptions import AskError, ClusterDownError, MovedError, ReadOnlyError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from backend.store.errors import REDIS_FAILURES, StoreUnavailable
from backend.store.wire import MultiplexedConnection, ServerAddress

log = logging.getLogger("backend.store.cluster")

ROUTING_TRIES = 4  # enough for a MOVED, then an ASK, then one re-read map
# Answers after which the slot map is read again before the next try.
REROUTE_ON = (RedisConnectionError, ReadOnlyError, ClusterDownError, TryAgainError)

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
        node = self.cluster.get_node_from_key(key)  # type: ignore[arg-type]
        return node.host, node.port

    def masters(self) -> set[Node]:
        return {(node.host, node.port) for node in self.cluster.get_primaries()}

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

    async def _routed(self, key: str | bytes, send: Callable[[MultiplexedConnection, bool], Awaitable[Any]]) -> Any:
        target: Node | None = None
        asking = False
        for attempt in range(ROUTING_TRIES):
            node = target or await self.topology.node_for(key)
            try:
                return await send(self._at(node), asking)
            except MovedError as moved:  # the slot lives elsewhere now
                target, asking = moved.node_addr, False
                self.topology.refresh_soon()
            except AskError as ask:  # the slot is being migrated and this key already moved
                target, asking = ask.node_addr, True
            except REROUTE_ON:
                if attempt == ROUTING_TRIES - 1:
                    raise
                target, asking = None, False
                await asyncio.sleep(random.uniform(0.01, 0.05))
                with contextlib.suppress(StoreUnavailable):
                    await self.topology.refresh()
                await self._forget_gone_nodes()
        raise RedisConnectionError(f"no cluster node took the call after {ROUTING_TRIES} redirections")

    async def _forget_gone_nodes(self) -> None:
        masters = self.topology.masters()
        for node in [node for node in self.nodes if node not in masters]:
            await self.nodes.pop(node).close()

    async def close(self) -> None:
        for connection in self.nodes.values():
            await connection.close()
        self.nodes.clear()
