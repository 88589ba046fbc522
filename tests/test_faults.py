"""A multi-pod fault suite: two API processes and two workers on one Redis."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest

from devstack.login import auth, dev_login
from devstack.redis_server import RedisServer
from devstack.services import Api, Worker
from tests.conftest import LlmStub, Processes, eventually, isolated_url, openai_env
from tests.test_chat import assert_consecutive, new_chat, send
from tests.test_chat_streaming import history, resume
from tests.test_interview import describe, ready_questions

LEASE = {"JOB_LEASE_SECONDS": "2"}


@dataclass
class Cluster:
    apis: list[Api]
    workers: list[Worker]
    redis_url: str


async def streaming(http: httpx.AsyncClient, user: dict[str, str], chat_id: int) -> None:
    """Wait until the chat's reply has sent a chunk (a worker that starts slowly on a busy
    machine must not turn a mid-reply fault into a fault before the reply)."""

    async def started() -> bool:
        reply = (await http.get(f"/assistant/chat/{chat_id}", headers=user)).json()["reply"]
        return reply["status"] == "streaming" and "lastEventId" in reply

    await eventually(started, within=30)


def two_by_two(processes: Processes, redis_url: str, **worker_env: str) -> Cluster:
    apis = [processes.api(redis_url, **LEASE), processes.api(redis_url, **LEASE)]
    workers = [processes.worker(redis_url, **LEASE, **worker_env) for _ in range(2)]
    return Cluster(apis, workers, redis_url)


async def test_api_pod_sigterm_mid_stream_client_resumes_on_other_pod(processes: Processes, redis_url: str) -> None:
    pods = two_by_two(processes, isolated_url(redis_url), FAKE_LLM_TOKEN_DELAY_MS="20", FAKE_LLM_REPLY_WORDS="150")
    doomed, survivor = pods.apis
    async with (
        httpx.AsyncClient(base_url=doomed.url, timeout=30) as a,
        httpx.AsyncClient(base_url=survivor.url, timeout=30) as b,
    ):
        user = auth(await dev_login(a))
        chat_id = await new_chat(a, user)
        reader = asyncio.create_task(send(a, user, chat_id, "keep going"))
        await streaming(a, user, chat_id)
        started = time.monotonic()
        doomed.signal(signal.SIGTERM)
        head = await asyncio.wait_for(reader, 10)
        assert head.events and not head.finished  # ended cleanly, without done/error: resume it
        assert doomed.process.wait(15) == 0
        assert time.monotonic() - started < 12
        with pytest.raises(httpx.ConnectError):
            await a.get("/health")
        tail = await resume(b, user, chat_id, head.last.id)
        assert tail.finished and tail.last.event == "done"
        assert_consecutive(tail, first_seq=head.last.seq + 1)
        assert head.text + tail.text == (await history(b, user, chat_id))[-1]["content"]


async def test_worker_sigterm_finishes_running_reply(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url)
    worker = processes.worker(url, FAKE_LLM_TOKEN_DELAY_MS="20", FAKE_LLM_REPLY_WORDS="80")
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        reader = asyncio.create_task(send(http, user, chat_id, "finish me"))
        await streaming(http, user, chat_id)
        worker.signal(signal.SIGTERM)
        stream = await reader
        assert stream.last.event == "done" and len(stream.text.split()) > 80
        assert worker.process.wait(15) == 0


async def test_worker_sigterm_hands_back_a_long_job(processes: Processes, redis_url: str, stub: LlmStub) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url)
    env = {**openai_env(stub), "WORKER_SHUTDOWN_GRACE_SECONDS": "0.5", "JOB_LEASE_SECONDS": "60"}
    leaving = processes.worker(url, **env)
    stub.control(questions_delay=30)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        user = auth(await dev_login(http))
        await describe(http, user, "handed back")
        await eventually(lambda: len(stub.requests()) == 1)
        leaving.signal(signal.SIGTERM)
        assert leaving.process.wait(10) == 0
        stub.control()
        processes.worker(url, **env)
        started = time.monotonic()
        questions = await ready_questions(http, user)
        assert time.monotonic() - started < 10  # handed back: no 60 s lease to wait out
        assert questions[0]["content"].endswith("handed back")


async def test_chat_job_of_worker_killed_before_first_chunk_runs_elsewhere(
    processes: Processes, redis_url: str, stub: LlmStub
) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url, **LEASE)
    doomed = processes.worker(url, **LEASE, **openai_env(stub))
    stub.control(first_chunk_delay=30)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        reader = asyncio.create_task(send(http, user, chat_id, "run me somewhere"))
        await eventually(lambda: len(stub.requests()) == 1)  # inside the LLM call, no chunk out yet
        doomed.kill()
        stub.control()
        processes.worker(url, **LEASE, **openai_env(stub))
        stream = await asyncio.wait_for(reader, 20)
        assert stream.last.event == "done" and stream.text.startswith("[history=1]")
        assert_consecutive(stream)
    assert len(stub.requests()) == 2


async def test_redis_restart_under_load(processes: Processes) -> None:
    server = RedisServer().start()
    try:
        apis = [processes.api(server.url), processes.api(server.url)]
        processes.worker(server.url)
        clients = [httpx.AsyncClient(base_url=api.url, timeout=10) for api in apis]
        tokens = [await dev_login(c) for c in clients]
        statuses: Counter[int] = Counter()
        stop = asyncio.Event()

        async def load(http: httpx.AsyncClient, token: str) -> None:
            while not stop.is_set():
                statuses[(await http.get("/user/info", headers=auth(token))).status_code] += 1

        loaders = [asyncio.create_task(load(c, t)) for c, t in zip(clients, tokens, strict=True) for _ in range(4)]
        await asyncio.sleep(0.5)
        server.stop()
        await asyncio.sleep(1.0)
        server.start()
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*loaders)
        assert statuses[200] > 0 and statuses[503] > 0
        assert set(statuses) <= {200, 401, 503}, statuses  # 401: the restarted Redis kept no sessions
        for http in clients:  # recovered without a restart: a new login works end to end
            token = await dev_login(http)
            assert (await http.get("/user/info", headers=auth(token))).status_code == 200
            chat_id = await new_chat(http, auth(token))
            assert (await send(http, auth(token), chat_id, "after the restart")).last.event == "done"
        for http in clients:
            await http.aclose()
    finally:
        server.stop()


async def test_rate_limit_is_shared_by_pods(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    apis = [processes.api(url, RATE_LIMIT_AUTH_PER_MINUTE="30"), processes.api(url, RATE_LIMIT_AUTH_PER_MINUTE="30")]
    async with httpx.AsyncClient() as http:
        responses = await asyncio.gather(*(http.get(f"{apis[i % 2].url}/user/auth-code") for i in range(120)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 30, 429: 90}
    assert all(r.headers["retry-after"].isdigit() for r in responses if r.status_code == 429)
