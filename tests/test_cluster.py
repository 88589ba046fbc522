"""The login, interview and chat flows on a local 3-master Redis Cluster (REDIS_CLUSTER=true)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from backend.store.datastore import Store
from config.settings import Settings
from devstack.login import auth, dev_login
from devstack.redis_server import RedisCluster
from devstack.services import Api
from tests.conftest import Processes
from tests.test_chat import assert_consecutive, new_chat, send
from tests.test_chat_streaming import history, resume
from tests.test_interview import describe, ready_questions


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    nodes = RedisCluster().start()
    yield nodes
    nodes.stop()


@pytest.fixture(scope="module")
def cluster_pods(cluster: RedisCluster) -> Iterator[list[Api]]:
    procs = Processes()
    env = {"REDIS_CLUSTER": "true", "FAKE_LLM_TOKEN_DELAY_MS": "10", "FAKE_LLM_REPLY_WORDS": "80"}
    pods = [procs.api(cluster.url, **env), procs.api(cluster.url, **env)]
    procs.worker(cluster.url, **env, WORKER_CONCURRENCY="32")
    yield pods
    procs.stop_all()


@pytest.fixture
async def a(cluster_pods: list[Api]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster_pods[0].url, timeout=30) as http:
        yield http


@pytest.fixture
async def b(cluster_pods: list[Api]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster_pods[1].url, timeout=30) as http:
        yield http


async def test_login_and_sessions_on_cluster(a: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
    token = await dev_login(a, "cluster-user")
    info = (await b.get("/user/info", headers=auth(token))).json()
    assert info["username"] == "cluster-user"
    assert (await b.post("/user/logout", headers=auth(token))).status_code == 200
    assert (await a.get("/user/info", headers=auth(token))).status_code == 401


async def test_interview_on_cluster(a: httpx.AsyncClient) -> None:
    users = [auth(await dev_login(a)) for _ in range(6)]  # spread over the three masters
    for user in users:
        await describe(a, user, "Erlang on a cluster")
    for user in users:
        questions = await ready_questions(a, user)
        await asyncio.gather(
            *(a.post(f"/user/questions/{q['id']}/answer", headers=user, json={"answer": 0}) for q in questions)
        )
        info = (await a.get("/user/info", headers=user)).json()
        assert info["interviewQuestionStatus"] == "SUCCESS" and isinstance(info["interviewScore"], int)


async def test_chat_streams_resume_and_stop_on_cluster(a: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
    users = [auth(await dev_login(a)) for _ in range(6)]
    chats = [(user, await new_chat(a, user)) for user in users]
    streams = await asyncio.gather(*(send(a, user, chat_id, "sharded hello") for user, chat_id in chats))
    for (user, chat_id), stream in zip(chats, streams, strict=True):
        assert stream.last.event == "done"
        assert_consecutive(stream)
        assert (await history(b, user, chat_id))[-1]["content"] == stream.text

    user, chat_id = chats[0]
    head = await send(a, user, chat_id, "resume me elsewhere", max_events=10)
    tail = await resume(b, user, chat_id, head.last.id)
    assert tail.last.event == "done" and tail.events[0].seq == head.last.seq + 1
    assert head.text + tail.text == (await history(a, user, chat_id))[-1]["content"]

    reader = asyncio.create_task(send(a, user, chat_id, "stop me on the cluster"))
    await asyncio.sleep(0.4)
    assert (await b.post(f"/assistant/chat/{chat_id}/stop", headers=user)).status_code == 200
    stopped = await asyncio.wait_for(reader, 10)
    assert stopped.last.data == {"content": "", "stopped": True, "finishReason": "stopped"}


async def test_chat_pages_on_cluster(a: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
    for user in [auth(await dev_login(a)) for _ in range(3)]:  # spread over the masters
        created = [await new_chat(a, user) for _ in range(5)]
        first = (await b.get("/assistant/chat", headers=user, params={"limit": 2})).json()
        rest = (await a.get("/assistant/chat", headers=user, params={"before": first["next"]})).json()
        assert "next" not in rest
        assert sorted(c["chatId"] for c in first["chats"] + rest["chats"]) == sorted(created)


async def test_open_streams_counted_and_held_on_cluster(cluster: RedisCluster) -> None:
    settings = Settings(REDIS_URL=cluster.url, REDIS_CLUSTER=True, STREAMS_PER_USER_MAX=2, JOB_LEASE_SECONDS=1)
    store = Store(settings)
    users = range(10_001, 10_007)  # keys on every master
    try:
        held = {user: [await store.open_streams.open(user) for _ in range(2)] for user in users}
        assert all(None not in ids for ids in held.values())
        assert [await store.open_streams.open(user) for user in users] == [None] * len(users)
        for _ in range(4):  # 2 s, twice what an entry lasts unless its holder extends it
            await asyncio.sleep(0.5)
            await store.open_streams.hold()  # what the relay's ticker does: one call per user, all users
        assert [await store.open_streams.open(user) for user in users] == [None] * len(users)
        await store.open_streams.close(users[0], held[users[0]][0])
        assert await store.open_streams.open(users[0]) is not None
        store.open_streams.held.clear()  # as if the holder died: its streams expire
        await asyncio.sleep(1.1)
        assert None not in [await store.open_streams.open(user) for user in users[1:]]
    finally:
        await store.close()
