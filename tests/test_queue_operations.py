"""Operating the job queue: LLM errors classified, dead letters and the admin CLI, chat before
questions, and load shedding when the workers fall behind."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx
import pytest

from backend.store.datastore import Store
from backend.store.queue import Capacity
from config.settings import Settings
from devstack.login import auth, dev_login
from devstack.services import ROOT, _env
from tests.conftest import LlmStub, Processes, eventually, isolated_url, openai_env
from tests.support.prom import sample
from tests.test_chat import new_chat, send
from tests.test_chat_streaming import history
from tests.test_interview import describe

FAST_RETRIES = {"JOB_RETRY_BASE_SECONDS": "0.05"}


def admin(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """python -m workers.admin, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "workers.admin", *args],
        cwd=ROOT,
        env=_env(url, {}),
        capture_output=True,
        text=True,
        timeout=30,
    )


async def generation_failed(http: httpx.AsyncClient, user: dict[str, str]) -> bool:
    return (await http.get("/user/questions", headers=user)).status_code == 409


async def test_a_refused_key_fails_at_once_becomes_a_dead_letter_and_is_retried_by_the_cli(
    processes: Processes, redis_url: str, stub: LlmStub
) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url)
    processes.worker(url, **openai_env(stub), **FAST_RETRIES)
    stub.control(questions="status", status=401)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        user = auth(await dev_login(http))
        await describe(http, user, "Rust")
        await eventually(lambda: generation_failed(http, user), within=10)
        await asyncio.sleep(0.5)
        assert len(stub.requests()) == 1  # a 401 is not retried

        [line] = admin(url, "dead").stdout.splitlines()
        letter = json.loads(line)
        assert letter["type"] == "questions" and letter["attempts"] == 1 and "401" in letter["error"]
        assert letter["userId"] > 0 and letter["failedAt"] > 0
        queue = admin(url, "queue")
        assert queue.returncode == 0 and "dead: 1" in queue.stdout and "questions:" in queue.stdout
        assert sample((await http.get("/metrics")).text, "ai_jobs_dead") == 1

        stub.control()  # the operator fixed the key
        retried = admin(url, "retry", letter["id"])
        assert retried.returncode == 0, retried.stderr
        questions = (await eventually(lambda: http.get("/user/questions", headers=user))).json()
        assert questions["ready"] and questions["questions"][0]["content"].endswith("Rust")
        assert admin(url, "dead").stdout == ""
        assert admin(url, "retry", letter["id"]).returncode == 1  # gone: nothing to retry


async def test_cli_retry_all_and_purge(processes: Processes, redis_url: str, stub: LlmStub) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url)
    processes.worker(url, **openai_env(stub), **FAST_RETRIES)
    stub.control(questions="status", status=400)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        users = [auth(await dev_login(http)) for _ in range(3)]
        for user in users:
            await describe(http, user)
        await eventually(lambda: len(admin(url, "dead").stdout.splitlines()) == 3, within=15)
        assert "purged 3" in admin(url, "purge").stdout
        assert admin(url, "dead").stdout == ""
        for user in users[:2]:
            await describe(http, user)
        await eventually(lambda: len(admin(url, "dead").stdout.splitlines()) == 2, within=15)
        stub.control()
        assert admin(url, "retry", "--all").returncode == 0
        for user in users[:2]:
            assert (await eventually(lambda u=user: http.get("/user/questions", headers=u))).json()["ready"]


async def test_429_waits_for_retry_after_and_500_is_retried(
    processes: Processes, redis_url: str, stub: LlmStub
) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url)
    processes.worker(url, **openai_env(stub), **FAST_RETRIES)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        user = auth(await dev_login(http))
        stub.control(questions="status", status=429, retry_after=1)
        await describe(http, user)
        await eventually(lambda: len(stub.requests()) >= 2, within=10)
        first, second = stub.requests()[:2]
        assert second["at"] - first["at"] >= 1.0  # never sooner than Retry-After (the backoff is 0.05 s)
        await eventually(lambda: generation_failed(http, user), within=10)  # three attempts, then failed
        assert len(stub.requests()) == 3

        stub.clear()
        stub.control(questions="status", status=503)
        await describe(http, user)
        await eventually(lambda: len(stub.requests()) == 3, within=10)


async def test_a_chat_reply_whose_key_is_refused_tells_the_user(
    processes: Processes, redis_url: str, stub: LlmStub
) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url)
    processes.worker(url, **openai_env(stub), **FAST_RETRIES)
    stub.control(chat="status", status=401)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        user = auth(await dev_login(http))
        stream = await send(http, user, await new_chat(http, user), "hello")
        assert stream.last.event == "error" and "API key" in stream.last.data["message"]
        assert len(stub.requests()) == 1


async def test_a_burst_of_question_jobs_does_not_delay_a_prompt(
    processes: Processes, redis_url: str, stub: LlmStub
) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url)
    processes.worker(url, **openai_env(stub), WORKER_CONCURRENCY="2")
    stub.control(questions_delay=4)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        users = [auth(await dev_login(http)) for _ in range(4)]
        for user in users:
            await describe(http, user)
        await eventually(lambda: len(stub.requests()) >= 1)
        chat_user = users[0]
        chat_id = await new_chat(http, chat_user)
        started = time.monotonic()
        async with http.stream(
            "POST", f"/assistant/chat/{chat_id}/", json={"prompt": "first"}, headers=chat_user
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    break
        assert time.monotonic() - started < 2.0  # a question job takes 4 s: the prompt did not wait for one


async def test_load_shedding_when_no_worker_takes_jobs(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url, QUEUE_MAX_WAIT_SECONDS="1")
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        await describe(http, user)  # waits: no worker runs
        await eventually(lambda: shedding(http, 1), within=10)
        refused = await http.post(f"/assistant/chat/{chat_id}/", json={"prompt": "hi"}, headers=user)
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1 and refused.json()["message"]
        # Refused before the session is looked up (fast while saturated): a token that is no session
        # gets the same busy answer and nothing else; no credentials at all is still 401.
        stranger = {"Authentication": "Basic 1." + "x" * 43}
        shed = await http.post(f"/assistant/chat/{chat_id}/", json={"prompt": "hi"}, headers=stranger)
        assert shed.status_code == 503 and shed.json() == refused.json()
        assert (await http.post(f"/assistant/chat/{chat_id}/", json={"prompt": "hi"})).status_code == 401
        other = auth(await dev_login(http))
        described = await http.post("/user/skill-description", json={"description": "Go"}, headers=other)
        assert described.status_code == 503 and "Retry-After" in described.headers
        assert (await http.get("/user/info", headers=user)).status_code == 200  # reads are never shed
        processes.worker(url)
        await eventually(lambda: shedding(http, 0), within=15)
        assert (await send(http, user, chat_id, "hi")).last.event == "done"


async def shedding(http: httpx.AsyncClient, state: int) -> bool:
    return sample((await http.get("/metrics")).text, "ai_api_shedding") == state


async def knows_job_length(http: httpx.AsyncClient) -> bool:
    return sample((await http.get("/metrics")).text, "ai_api_worker_job_seconds") is not None


async def free_slots(http: httpx.AsyncClient, count: int) -> bool:
    return sample((await http.get("/metrics")).text, "ai_api_worker_slots_free") == count


async def test_a_prompt_that_would_wait_too_long_for_a_slot_is_refused_at_once(
    processes: Processes, redis_url: str
) -> None:
    """Two slots, replies of about 5 s: with both slots busy, a pod allowing 1 s of wait refuses
    the next prompt at once (nothing stored); a pod allowing 10 s takes it, and it is served
    when a slot frees."""
    url = isolated_url(redis_url)
    strict = processes.api(url, QUEUE_MAX_WAIT_SECONDS="1")
    patient = processes.api(url, QUEUE_MAX_WAIT_SECONDS="10")
    processes.worker(url, WORKER_CONCURRENCY="2", FAKE_LLM_TOKEN_DELAY_MS="50", FAKE_LLM_REPLY_WORDS="100")
    async with (
        httpx.AsyncClient(base_url=strict.url, timeout=30) as http,
        httpx.AsyncClient(base_url=patient.url, timeout=30) as other_pod,
    ):
        users = [auth(await dev_login(http)) for _ in range(4)]
        chats = [await new_chat(http, user) for user in users]
        # One reply to its end first: the worker learns how long a reply takes.
        assert (await send(http, users[0], chats[0], "warm up")).last.event == "done"
        await eventually(lambda: knows_job_length(http), within=5)
        busy = [asyncio.create_task(send(http, users[i], chats[i], "fill a slot")) for i in (0, 1)]
        await eventually(lambda: free_slots(http, 0), within=5)
        await eventually(lambda: free_slots(other_pod, 0), within=5)

        started = time.monotonic()
        refused = await http.post(f"/assistant/chat/{chats[2]}/", json={"prompt": "one more"}, headers=users[2])
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        assert time.monotonic() - started < 1.0  # refused now, not after waiting
        assert await history(http, users[2], chat_id=chats[2]) == []  # nothing stored

        queued = await send(other_pod, users[3], chats[3], "worth the wait")  # waits for a slot, then streams
        assert queued.last.event == "done" and queued.text
        for task in busy:
            assert (await task).last.event == "done"
        await eventually(lambda: free_slots(http, 2), within=5)
        assert (await send(http, users[2], chats[2], "one more")).last.event == "done"


async def test_cluster_wide_series_come_from_one_pod(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    pods = [processes.api(url), processes.api(url)]
    async with httpx.AsyncClient(timeout=20) as http:

        async def exporters() -> int:
            texts = [(await http.get(pod.url + "/metrics")).text for pod in pods]
            return sum('ai_jobs_queue_depth{type="chat"}' in text for text in texts)

        await eventually(lambda: exporters(), within=10)
        await asyncio.sleep(1.0)
        assert await exporters() == 1  # a sum over pods counts the queue once


async def test_worker_reports_add_up_and_expire(redis_url: str) -> None:
    store = Store(Settings(REDIS_URL=isolated_url(redis_url)))
    try:
        queue = store.queue
        queue.bind("worker-a")
        await queue.report_capacity(4, 2.5, 3.0, ttl_seconds=30)  # its first job should end in 2.5 s
        queue.bind("worker-b")
        await queue.report_capacity(8, None, 1.0, ttl_seconds=0.3)  # nothing running; reports for 0.3 s
        capacity = await queue.capacity()
        assert capacity.slots == 12
        assert capacity.next_end_in is not None and 2.3 <= capacity.next_end_in <= 2.5
        assert capacity.job_seconds == pytest.approx((4 * 3.0 + 8 * 1.0) / 12, abs=0.01)

        await asyncio.sleep(0.4)  # worker-b went silent: it no longer counts
        capacity = await queue.capacity()
        assert (capacity.slots, capacity.job_seconds) == (4, 3.0)

        queue.bind("worker-a")
        await queue.report_capacity(0, None, None, ttl_seconds=30)  # shutting down: withdrawn
        assert await queue.capacity() == Capacity(0, None, None)
    finally:
        await store.close()
