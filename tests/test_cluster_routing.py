"""The script path on a Redis Cluster: one multiplexed connection per master, each call sent to
the node of its slot, following MOVED (a migrated slot) and ASK (a slot half-way through a
migration) the way redis-py's cluster client does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from backend.redis.cluster import ClusterConnections
from backend.store import keys
from backend.store.datastore import Store
from config.settings import Settings
from devstack.redis_server import RedisCluster, RedisServer


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    nodes = RedisCluster().start()
    yield nodes
    nodes.stop()


@pytest.fixture
async def store(cluster: RedisCluster) -> AsyncIterator[Store]:
    store = Store(Settings(REDIS_URL=cluster.url, REDIS_CLUSTER=True))
    yield store
    await store.close()


def connections(store: Store) -> ClusterConnections:
    assert isinstance(store.command_path, ClusterConnections)
    return store.command_path


async def users_on_every_master(store: Store, cluster: RedisCluster) -> dict[int, tuple[int, str]]:
    """Master port -> (user id, token) of a user whose slot that master serves."""
    found: dict[int, tuple[int, str]] = {}
    index = 0
    while len(found) < len(cluster.masters()):
        index += 1
        user_id, token = await store.users.login("dev", f"routing-{index}", f"routing-{index}")
        found.setdefault(cluster.master_for_key(keys.user(user_id)).port, (user_id, token))
    return found


async def test_each_call_goes_to_the_master_of_its_slot(store: Store, cluster: RedisCluster) -> None:
    users = await users_on_every_master(store, cluster)
    for user_id, token in users.values():
        profile = await store.users.authenticate(token)
        assert profile is not None and profile["username"].startswith("routing-")
        chat_id = await store.chats.create(user_id)
        assert chat_id > 0
    # One connection per master, and each master ran the scripts of its own users.
    assert set(connections(store).nodes) == {("127.0.0.1", port) for port in users}
    for port in users:
        stats = cluster.call(cluster.by_port(port), "INFO", "commandstats")
        assert stats["cmdstat_evalsha"]["calls"] > 0


async def test_a_migrated_slot_is_followed(store: Store, cluster: RedisCluster) -> None:
    users = await users_on_every_master(store, cluster)
    source_port, (user_id, token) = next(iter(users.items()))
    assert await store.users.authenticate(token) is not None  # the map is read, the old owner known
    source = cluster.by_port(source_port)
    target = next(node for node in cluster.masters() if node is not source)
    slot = cluster.slot_of(keys.user(user_id))
    await asyncio.to_thread(cluster.migrate_slot, slot, source, target)

    # The old owner answers MOVED; the call lands on the new one, and the map is read again.
    profile = await store.users.authenticate(token)
    assert profile is not None and profile["provider"] == "dev"
    await asyncio.sleep(0.5)
    assert store.topology is not None
    assert store.topology.known_node_for(keys.user(user_id)) == ("127.0.0.1", target.port)
    chat_id = await store.chats.create(user_id)
    assert (await store.chats.get(user_id, chat_id)) is not None


async def test_a_slot_half_way_through_a_migration_is_asked(store: Store, cluster: RedisCluster) -> None:
    users = await users_on_every_master(store, cluster)
    source_port, (user_id, token) = next(iter(users.items()))
    assert await store.users.authenticate(token) is not None
    source = cluster.by_port(source_port)
    target = next(node for node in cluster.masters() if node is not source)
    slot = cluster.slot_of(keys.user(user_id))
    # Every key of the slot moves to the target, but the slot stays MIGRATING: the source answers
    # ASK for each of them, and only a client that sends ASKING first is served by the target.
    cluster.call(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.node_id(source))
    cluster.call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.node_id(target))
    try:
        moved = move_keys(cluster, source, target, slot)
        assert moved >= 2  # the user and the session
        profile = await store.users.authenticate(token)
        assert profile is not None and profile["provider"] == "dev"
        assert await store.open_streams.open(user_id) is not None  # a script that writes, asked too
        assert int(cluster.call(target, "CLUSTER", "COUNTKEYSINSLOT", slot)) >= moved + 1
    finally:
        for node in cluster.masters():
            cluster.call(node, "CLUSTER", "SETSLOT", slot, "NODE", cluster.node_id(target))
        cluster.wait_settled()


def move_keys(cluster: RedisCluster, source: RedisServer, target: RedisServer, slot: int) -> int:
    names = cluster.call(source, "CLUSTER", "GETKEYSINSLOT", slot, 1000)
    cluster.call(source, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *names)
    return len(names)
