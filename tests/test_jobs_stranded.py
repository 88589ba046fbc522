"""Jobs are never stranded: a state change whose job cannot be queued is undone, a reply whose
job was lost is ended, and a handed-back job keeps its attempt count."""

from __future__ import annotations

import asyncio
import signal

import httpx
import redis as sync_redis

from backend.store import keys
from devstack.login import auth, dev_login
from tests.conftest import LlmStub, Processes, eventually, isolated_url, openai_env
from tests.support.sse import read
from tests.test_chat import new_chat, send
from tests.test_interview import describe

CHAT_JOBS = "ai:{jobs}:chat"
QUESTION_JOBS = "ai:{jobs}:questions"
ATTEMPTS = "ai:{jobs}:attempts"


async def test_a_job_that_cannot_be_queued_undoes_its_state_change(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url)
    processes.worker(url)
    admin = sync_redis.Redis.from_url(url)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        for stream in (CHAT_JOBS, QUESTION_JOBS):
            admin.delete(stream)
            admin.set(stream, "not a stream")  # every XADD now fails (WRONGTYPE)
        try:
            prompt = await http.post(f"/assistant/chat/{chat_id}/", json={"prompt": "hello"}, headers=user)
            assert prompt.status_code == 503 and prompt.json()["message"]
            described = await http.post("/user/skill-description", json={"description": "Go"}, headers=user)
            assert described.status_code == 503
            assert (await http.get("/user/questions", headers=user)).status_code == 409  # not "not ready" forever
            replay = await read(
                await http.send(
                    http.build_request("GET", f"/assistant/chat/{chat_id}/stream", headers=user), stream=True
                )
            )
            assert replay.last.event == "error"  # the stored prompt's reply was ended, not left queued
        finally:
            admin.delete(CHAT_JOBS, QUESTION_JOBS)
        # The chat takes prompts again, and the interview can start.
        assert (await send(http, user, chat_id, "again")).last.event == "done"
        await describe(http, user)
    admin.close()


async def test_a_reply_whose_job_was_lost_is_ended_and_the_chat_is_free(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url, JOB_LEASE_SECONDS="2", QUEUE_MAX_WAIT_SECONDS="1")  # no worker: the job waits
    admin = sync_redis.Redis.from_url(url)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        waiting = asyncio.create_task(send(http, user, chat_id, "lost"))
        await eventually(lambda: admin.xlen(CHAT_JOBS) == 1)
        admin.delete(CHAT_JOBS)  # the job is lost (e.g. a Redis without persistence restarted)
        stream = await asyncio.wait_for(waiting, 10)
        assert stream.last.event == "error"  # ended by the reader within the lease, not forever
        processes.worker(url, JOB_LEASE_SECONDS="2")
        # A worker still starting on a busy machine would let the next reply outwait its lease.
        await eventually(lambda: admin.hlen(keys.WORKER_REPORTS) > 0, within=30)
        assert (await send(http, user, chat_id, "next")).last.event == "done"
    admin.close()


async def test_a_handed_back_job_keeps_its_attempts(processes: Processes, redis_url: str, stub: LlmStub) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url)
    env = {**openai_env(stub), "WORKER_SHUTDOWN_GRACE_SECONDS": "0.5", "JOB_LEASE_SECONDS": "60"}
    leaving = processes.worker(url, **env)
    stub.control(questions_delay=30)
    admin = sync_redis.Redis.from_url(url, decode_responses=True)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        user = auth(await dev_login(http))
        await describe(http, user, "handed back")
        await eventually(lambda: len(stub.requests()) == 1)
        [(old_id, _)] = admin.xrange(QUESTION_JOBS)
        assert admin.hget(ATTEMPTS, old_id) == "1"
        leaving.signal(signal.SIGTERM)
        assert leaving.process.wait(10) == 0
        [(new_id, fields)] = admin.xrange(QUESTION_JOBS)
        assert new_id != old_id and fields["type"] == "questions"
        assert admin.hgetall(ATTEMPTS) == {new_id: "1"}  # moved with the job, the old entry's cleaned
        assert admin.xpending(QUESTION_JOBS, "workers")["pending"] == 0
    admin.close()
