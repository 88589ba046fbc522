"""Replies keep flowing while the Redis Cluster changes under them: a planned failover, a slot
migration and a killed master, each on the master that holds the user's slot.

Two API pods and one worker (REDIS_CLUSTER=true) on 3 masters with one replica each. A reply is read
live on pod A (the POST) and followed on pod B (GET .../stream); the topology changes mid-reply.
Both streams must keep delivering events (no silence over MAX_SILENCE), end with `done`, carry the
same events with increasing ids, equal a replay read afterwards, and the chat must take new prompts
on both pods, with nothing restarted. One cluster per test: each test changes its topology.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import httpx
import pytest

from devstack.login import auth, dev_login
from devstack.redis_server import RedisCluster, RedisServer
from devstack.services import Api
from tests.conftest import Processes
from tests.support.sse import Event, events, read
from tests.test_chat import new_chat

# About 125 events 60 ms apart: a reply stays open some 7.5 s, longer than any change below takes.
ENV = {
    "REDIS_CLUSTER": "true",
    "FAKE_LLM_TOKEN_DELAY_MS": "60",
    "FAKE_LLM_REPLY_WORDS": "120",
    "REDIS_TIMEOUT_SECONDS": "1",
    "JOB_LEASE_SECONDS": "5",
    "WORKER_SHUTDOWN_GRACE_SECONDS": "2",
}
# Seconds between two events of a live reply. A killed master's slots have no master at all until its
# replica is promoted (the helper measures it: 3.5 to 5 s with --cluster-node-timeout 2000), so a
# change may add its own duration plus CATCH_UP, the time to find the new master, to the allowance.
MAX_SILENCE = 5.0
CATCH_UP = 3.0
READ_TIMEOUT = 9.0  # a stream silent for longer is cut by the client: a failing test ends in seconds
REPLY_WITHIN = 25.0  # from the topology change to both streams' end


@dataclass
class Stack:
    cluster: RedisCluster
    a: Api
    b: Api


@pytest.fixture
def start_stack() -> Iterator[Callable[..., Stack]]:
    """`start_stack(**env)`: a new cluster, two API pods and a worker, with `env` over `ENV`."""
    clusters: list[RedisCluster] = []
    procs = Processes()

    def start(**overrides: str) -> Stack:
        cluster = RedisCluster(masters=3, replicas=1)
        clusters.append(cluster)
        cluster.start()
        env = {**ENV, **overrides}
        a, b = procs.api(cluster.url, **env), procs.api(cluster.url, **env)
        procs.worker(cluster.url, **env, WORKER_CONCURRENCY="8")
        return Stack(cluster, a, b)

    try:
        yield start
        print(
            "\n".join(f"--- {s.module} (port {getattr(s, 'port', '-')})\n{s.output()[-3000:]}" for s in procs.started)
        )  # shown when the test failed
    finally:
        for service in reversed(procs.started):
            service.stop(timeout=5)
        for cluster in clusters:
            cluster.stop()


@dataclass
class Live:
    """An SSE response read in the background, each event stamped with its arrival time."""

    name: str
    events: list[Event] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    status: int | None = None
    error: str = ""
    ended: float = 0.0
    task: asyncio.Task | None = None

    @classmethod
    def open(
        cls, name: str, http: httpx.AsyncClient, method: str, path: str, user: dict[str, str], body: dict | None = None
    ) -> Live:
        live = cls(name)
        live.task = asyncio.create_task(live._read(http, method, path, user, body))
        return live

    async def _read(
        self, http: httpx.AsyncClient, method: str, path: str, user: dict[str, str], body: dict | None
    ) -> None:
        try:
            async with http.stream(method, path, headers=user, json=body) as response:
                self.status = response.status_code
                if response.status_code != 200:
                    self.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                    return
                async for event in events(response):
                    self.events.append(event)
                    self.times.append(time.monotonic())
        except httpx.HTTPError as error:
            self.error = f"{type(error).__name__} {error}".strip()
        finally:
            self.ended = time.monotonic()

    async def wait_for_events(self, count: int, within: float = 15) -> None:
        deadline = time.monotonic() + within
        while len(self.events) < count:
            assert self.task and not self.task.done(), f"{self.name} ended early: {self.summary()}"
            assert time.monotonic() < deadline, f"{self.name}: no {count} events within {within}s: {self.summary()}"
            await asyncio.sleep(0.02)

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1].event == "done"

    @property
    def text(self) -> str:
        return "".join(e.data.get("content", "") for e in self.events)

    def silences(self) -> list[tuple[float, str]]:
        """(seconds, after which event id) of every wait between two events, and of the wait after the
        last event when the stream did not end with `done`."""
        times = self.times + ([] if self.done else [self.ended or time.monotonic()])
        ids = [e.id for e in self.events] or ["(none)"]
        return [(later - earlier, ids[min(i, len(ids) - 1)]) for i, (earlier, later) in enumerate(pairwise(times))]

    def summary(self) -> str:
        longest = max(self.silences(), default=(0.0, "-"))
        last = self.events[-1] if self.events else None
        return (
            f"status {self.status}, {len(self.events)} events, last {last and (last.id, last.event, last.data)}, "
            f"longest silence {longest[0]:.1f}s after {longest[1]}, error {self.error or '-'}"
        )


Change = Callable[[RedisCluster, int], Callable[[], None]]  # (cluster, user's slot) -> a check run afterwards


async def reply_survives(stack: Stack, change: Change) -> None:
    timeout = httpx.Timeout(10, read=READ_TIMEOUT)
    async with (
        httpx.AsyncClient(base_url=stack.a.url, timeout=timeout) as a,
        httpx.AsyncClient(base_url=stack.b.url, timeout=timeout) as b,
    ):
        await _reply_survives(stack, a, b, change)


async def _reply_survives(stack: Stack, a: httpx.AsyncClient, b: httpx.AsyncClient, change: Change) -> None:
    user = auth(await dev_login(a))
    user_id = (await a.get("/user/info", headers=user)).json()["userId"]
    chat_id = await new_chat(a, user)
    slot = stack.cluster.slot_of(f"{{u:{user_id}}}")
    assert slot == stack.cluster.slot_of(f"ai:{{u:{user_id}}}:chat:{chat_id}:reply:1")

    sender = Live.open("pod A (POST)", a, "POST", f"/assistant/chat/{chat_id}/", user, {"prompt": "keep flowing"})
    await sender.wait_for_events(3)
    follower = Live.open("pod B (resume)", b, "GET", f"/assistant/chat/{chat_id}/stream", user)
    await follower.wait_for_events(3)

    started = time.monotonic()
    check = await asyncio.to_thread(change, stack.cluster, slot)
    took = time.monotonic() - started
    await asyncio.to_thread(check)  # the helper really changed the topology (direct redis-py checks)

    tasks = [sender.task, follower.task]
    _, pending = await asyncio.wait(tasks, timeout=REPLY_WITHIN)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    report = f"change took {took:.1f}s; A: {sender.summary()}; B: {follower.summary()}"
    allowed = max(MAX_SILENCE, took + CATCH_UP)
    for live in (sender, follower):
        assert max(live.silences(), default=(0.0, ""))[0] <= allowed, f"{live.name} went silent: {report}"
        assert live.done, f"{live.name} did not end with done: {report}"
        assert [e.seq for e in live.events] == list(range(1, len(live.events) + 1)), f"gap or duplicate: {report}"
    assert [(e.id, e.event, e.data) for e in follower.events] == [(e.id, e.event, e.data) for e in sender.events]
    assert sender.text.startswith('(turn 1) You asked: "keep flowing".') and len(sender.text.split()) > 120

    async with b.stream("GET", f"/assistant/chat/{chat_id}/stream", headers=user) as response:
        assert response.status_code == 200
        replay = await read(response)
    assert [(e.id, e.event, e.data) for e in replay.events] == [(e.id, e.event, e.data) for e in sender.events]
    messages = (await a.get(f"/assistant/chat/{chat_id}", headers=user)).json()["messages"]
    assert messages[-1] == {**messages[-1], "role": "assistant", "content": sender.text}

    for turn, (name, http) in enumerate([("A", a), ("B", b)], start=2):
        after = Live.open(
            f"new prompt on pod {name}",
            http,
            "POST",
            f"/assistant/chat/{chat_id}/",
            user,
            {"prompt": f"again on {name}"},
        )
        await asyncio.wait({after.task}, timeout=REPLY_WITHIN)
        after.task.cancel()
        await asyncio.gather(after.task, return_exceptions=True)
        assert after.done, f"{after.name}: {after.summary()}"
        assert after.text.startswith(f'(turn {turn}) You asked: "again on {name}".')


def keys_in(cluster: RedisCluster, node: RedisServer, slot: int) -> int:
    return int(cluster.call(node, "CLUSTER", "COUNTKEYSINSLOT", slot))


def planned_failover(cluster: RedisCluster, slot: int) -> Callable[[], None]:
    master = cluster.owner(slot)
    replica = cluster.replica_of(master)
    cluster.failover(replica)

    def check() -> None:
        assert cluster.owner(slot) is replica and cluster.role(replica) == "master"
        assert cluster.role(master) == "slave" and cluster.replica_of(replica) is master
        assert keys_in(cluster, replica, slot) > 0  # the user's keys are served by the new master

    return check


def slot_migration(cluster: RedisCluster, slot: int) -> Callable[[], None]:
    source = cluster.owner(slot)
    target = next(node for node in cluster.masters() if node is not source)
    assert keys_in(cluster, source, slot) > 0
    moved = cluster.migrate_slot(slot, source, target)

    def check() -> None:
        assert moved > 0 and cluster.owner(slot) is target
        assert keys_in(cluster, source, slot) == 0 and keys_in(cluster, target, slot) >= moved

    return check


def killed_master(cluster: RedisCluster, slot: int) -> Callable[[], None]:
    master = cluster.owner(slot)
    replica = cluster.replica_of(master)
    cluster.kill(master)

    def check() -> None:
        assert master.process is None or master.process.poll() is not None
        assert cluster.owner(slot) is replica and cluster.role(replica) == "master"
        assert keys_in(cluster, replica, slot) > 0

    return check


async def test_reply_survives_planned_failover(start_stack: Callable[..., Stack]) -> None:
    await reply_survives(start_stack(), planned_failover)


async def test_reply_survives_slot_migration(start_stack: Callable[..., Stack]) -> None:
    await reply_survives(start_stack(), slot_migration)


# The reply's lease key lives in the killed master's slot: with no master for 3.5 to 5 s its renewals
# cannot land, so a 5 s lease would expire on the promoted replica and end a reply whose worker is
# alive. The lease here outlasts the outage.
async def test_reply_survives_killed_master(start_stack: Callable[..., Stack]) -> None:
    await reply_survives(start_stack(JOB_LEASE_SECONDS="12"), killed_master)
