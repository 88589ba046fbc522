"""Question generation through the real openai client against an OpenAI-compatible stub,
retries and final failure, supersession, and a worker killed mid-job."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from devstack.login import auth, dev_login
from tests.conftest import LlmStub, Processes, eventually, isolated_url, openai_env
from tests.test_interview import describe, ready_questions


@pytest.fixture
def openai_stack(processes: Processes, redis_url: str, stub: LlmStub):
    url = isolated_url(redis_url)
    api = processes.api(url)
    processes.worker(url, JOB_RETRY_BASE_SECONDS="0.05", **openai_env(stub))
    return api


async def test_questions_from_openai_compatible_server(openai_stack, stub: LlmStub) -> None:
    async with httpx.AsyncClient(base_url=openai_stack.url) as http:
        user = auth(await dev_login(http))
        await describe(http, user, "Kotlin coroutines and Android")
        questions = await ready_questions(http, user)
    assert [q["content"] for q in questions] == [
        f"Question {i} about: Kotlin coroutines and Android" for i in range(1, 6)
    ]
    assert all(q["choices"] == ["alpha", "beta", "gamma"] for q in questions)
    [sent] = stub.requests()
    body = sent["body"]
    assert sent["authorization"] == "Bearer test-key"
    assert body["model"] == "stub-model-1"
    assert "Kotlin coroutines and Android" in body["messages"][-1]["content"]
    assert body["messages"][0]["role"] == "system"
    schema = body["response_format"]["json_schema"]
    assert body["response_format"]["type"] == "json_schema" and schema["strict"] is True
    item = schema["schema"]["$defs"]["GeneratedQuestion"]
    assert set(item["required"]) == {"content", "choices", "correct_index", "explanation"}


@pytest.mark.parametrize("mode", ["error500", "invalid_json", "wrong_schema"])
async def test_llm_failures_are_retried_then_reported(openai_stack, stub: LlmStub, mode: str) -> None:
    stub.control(questions=mode)
    async with httpx.AsyncClient(base_url=openai_stack.url) as http:
        user = auth(await dev_login(http))
        await describe(http, user)

        async def failed() -> bool:
            return (await http.get("/user/info", headers=user)).json()["interviewQuestionStatus"] == "NOT_STARTED"

        await eventually(failed)
        response = await http.get("/user/questions", headers=user)
        assert response.status_code == 409 and "failed" in response.json()["message"]
    assert len(stub.requests()) == 3  # JOB_MAX_ATTEMPTS


async def test_newer_description_wins_over_running_job(openai_stack, stub: LlmStub) -> None:
    stub.control(questions_delay=1.0)
    async with httpx.AsyncClient(base_url=openai_stack.url) as http:
        user = auth(await dev_login(http))
        await describe(http, user, "first description")
        await eventually(lambda: len(stub.requests()) == 1)
        await describe(http, user, "second description")
        questions = await ready_questions(http, user)
        assert all(q["content"].endswith("second description") for q in questions)
        await eventually(lambda: len(stub.requests()) == 2)
        await asyncio.sleep(1.2)  # the first job's answer arrives now, and must be dropped
        again = (await http.get("/user/questions", headers=user)).json()["questions"]
        assert [q["id"] for q in again] == [q["id"] for q in questions]


async def test_worker_killed_mid_job_is_reclaimed(processes: Processes, redis_url: str, stub: LlmStub) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url)
    env = {**openai_env(stub), "JOB_LEASE_SECONDS": "2"}
    doomed = processes.worker(url, **env)
    stub.control(questions_delay=30)
    async with httpx.AsyncClient(base_url=api.url) as http:
        user = auth(await dev_login(http))
        await describe(http, user, "survives a crash")
        await eventually(lambda: len(stub.requests()) == 1)  # the job is running in `doomed`
        doomed.kill()
        stub.control()
        processes.worker(url, **env)
        questions = await ready_questions(http, user)
        assert len(questions) == 5 and questions[0]["content"].endswith("survives a crash")
    assert len(stub.requests()) == 2
