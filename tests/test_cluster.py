"""The login, interview and chat flows on a local 3-master Redis Cluster (REDIS_CLUSTER=true)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

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
        await asyncio.gather(*(a.post(f"/user/questions/{q['id']}/answer", headers=user, json={"answer": 0})
                               for q in questions))
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
    assert stopped.last.data == {"content": "", "stopped": True}
