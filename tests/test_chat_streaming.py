"""Live streaming across pods: resume with no gap and no duplicate, disconnects, stop, faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import redis as sync_redis

from devstack.login import auth, dev_login
from devstack.services import Api
from tests.conftest import LlmStub, Processes, eventually, isolated_url, openai_env
from tests.support.sse import Stream, read
from tests.test_chat import assert_consecutive, new_chat, send

SLOW_REPLY = {"FAKE_LLM_TOKEN_DELAY_MS": "15", "FAKE_LLM_REPLY_WORDS": "120"}  # about 2 s per reply


@dataclass
class TwoPods:
    a: Api
    b: Api
    redis_url: str


@pytest.fixture(scope="session")
def pods(session_processes: Processes, redis_url: str) -> TwoPods:
    url = isolated_url(redis_url)
    pods = TwoPods(session_processes.api(url), session_processes.api(url), url)
    session_processes.worker(url, WORKER_CONCURRENCY="64", **SLOW_REPLY)
    return pods


@pytest.fixture
async def a(pods: TwoPods) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pods.a.url, timeout=30) as http:
        yield http


@pytest.fixture
async def b(pods: TwoPods) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pods.b.url, timeout=30) as http:
        yield http


async def history(http: httpx.AsyncClient, user: dict[str, str], chat_id: int) -> list[dict]:
    return (await http.get(f"/assistant/chat/{chat_id}", headers=user)).json()["messages"]


async def resume(http: httpx.AsyncClient, user: dict[str, str], chat_id: int, last_id: str | None = None) -> Stream:
    headers = {**user, "Last-Event-ID": last_id} if last_id else user
    async with http.stream("GET", f"/assistant/chat/{chat_id}/stream", headers=headers) as response:
        assert response.status_code == 200
        return await read(response)


async def test_resume_on_other_pod_mid_reply(a: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
    user = auth(await dev_login(a))
    chat_id = await new_chat(a, user)
    head = await send(a, user, chat_id, "long answer please", max_events=25)  # then the client drops
    assert not head.finished
    tail = await resume(b, user, chat_id, head.last.id)
    assert tail.finished and tail.last.event == "done"
    assert_consecutive(tail, first_seq=26)
    joined = head.text + tail.text
    assert joined == (await history(a, user, chat_id))[-1]["content"]
    assert len(joined.split()) > 120


async def test_two_readers_on_two_pods_see_the_same_reply(a: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
    user = auth(await dev_login(a))
    chat_id = await new_chat(a, user)
    sender = asyncio.create_task(send(a, user, chat_id, "shared"))
    await eventually(lambda: _in_flight(a, user, chat_id))
    follower = await resume(b, user, chat_id)
    original = await sender
    assert [e.id for e in follower.events] == [e.id for e in original.events]
    assert follower.text == original.text


async def test_second_prompt_while_replying_is_409(a: httpx.AsyncClient) -> None:
    user = auth(await dev_login(a))
    chat_id = await new_chat(a, user)
    first = asyncio.create_task(send(a, user, chat_id, "first"))
    await eventually(lambda: _in_flight(a, user, chat_id))
    second = await a.post(f"/assistant/chat/{chat_id}/", headers=user, json={"prompt": "second"})
    assert second.status_code == 409 and second.json()["message"]
    assert (await first).finished
    assert (await send(a, user, chat_id, "third")).finished  # the chat takes prompts again


async def _in_flight(http: httpx.AsyncClient, user: dict[str, str], chat_id: int) -> bool:
    messages = await history(http, user, chat_id)
    return bool(messages) and messages[-1]["role"] == "user"


async def test_disconnect_does_not_stop_the_reply(a: httpx.AsyncClient) -> None:
    user = auth(await dev_login(a))
    chat_id = await new_chat(a, user)
    head = await send(a, user, chat_id, "I will hang up", max_events=3)
    assert not head.finished

    async def saved() -> list[dict] | None:
        messages = await history(a, user, chat_id)
        return messages if messages[-1]["role"] == "assistant" else None

    messages = await eventually(saved)
    assert messages[-1]["content"].startswith(head.text) and len(messages[-1]["content"].split()) > 120


async def test_stop_from_another_pod(a: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
    user = auth(await dev_login(a))
    chat_id = await new_chat(a, user)
    reader = asyncio.create_task(send(a, user, chat_id, "stop me"))
    await eventually(lambda: _in_flight(a, user, chat_id))
    await asyncio.sleep(0.3)
    follower_task = asyncio.create_task(resume(b, user, chat_id))
    await asyncio.sleep(0.2)
    stopped = await b.post(f"/assistant/chat/{chat_id}/stop", headers=user)
    assert stopped.status_code == 200 and stopped.json()["message"]
    stream, follower = await reader, await follower_task
    for s in (stream, follower):
        assert s.last.event == "done" and s.last.data == {"content": "", "stopped": True, "finishReason": "stopped"}
    saved = (await history(a, user, chat_id))[-1]
    assert saved["role"] == "assistant" and saved["content"] == stream.text
    assert 0 < len(saved["content"].split()) < 120
    await asyncio.sleep(0.3)  # the worker has cancelled: nothing more is written
    assert (await history(a, user, chat_id))[-1]["content"] == stream.text
    assert (await b.post(f"/assistant/chat/{chat_id}/stop", headers=user)).status_code == 409
    assert (await send(b, user, chat_id, "again")).finished


async def test_delete_mid_reply_ends_streams(a: httpx.AsyncClient) -> None:
    user = auth(await dev_login(a))
    chat_id = await new_chat(a, user)
    reader = asyncio.create_task(send(a, user, chat_id, "delete me"))
    await eventually(lambda: _in_flight(a, user, chat_id))
    await asyncio.sleep(0.2)
    assert (await a.delete(f"/assistant/chat/{chat_id}", headers=user)).status_code == 200
    stream = await asyncio.wait_for(reader, 5)
    assert stream.last.event == "error" and stream.last.data["content"] == ""


async def test_hub_reconnects_after_redis_drops_subscribers(a: httpx.AsyncClient, pods: TwoPods) -> None:
    """Redis closes the API's pub/sub connection mid-reply; the stream fills the gap from the log."""
    user = auth(await dev_login(a))
    chat_id = await new_chat(a, user)
    reader = asyncio.create_task(send(a, user, chat_id, "survive a subscriber kill"))
    await eventually(lambda: _in_flight(a, user, chat_id))
    await asyncio.sleep(0.4)
    admin = sync_redis.Redis.from_url(pods.redis_url)
    killed = admin.client_kill_filter(_type="pubsub")
    admin.close()
    assert killed >= 1
    stream = await asyncio.wait_for(reader, 15)
    assert stream.finished and stream.last.event == "done"
    assert_consecutive(stream)
    assert stream.text == (await history(a, user, chat_id))[-1]["content"]


async def test_pings_while_waiting_for_a_worker(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url, SSE_PING_SECONDS="0.5")
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        reader = asyncio.create_task(send(http, user, chat_id, "anyone there?"))
        await asyncio.sleep(1.6)  # no worker yet: the job waits in the stream, the client gets pings
        processes.worker(url)
        stream = await reader
    assert len(stream.comments) >= 2 and set(stream.comments) == {": ping"}
    assert stream.finished and stream.last.event == "done"


async def test_worker_killed_mid_reply_ends_streams_with_error(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    lease = {"JOB_LEASE_SECONDS": "2"}
    api = processes.api(url, **lease)
    worker = processes.worker(url, **lease, FAKE_LLM_TOKEN_DELAY_MS="50", FAKE_LLM_REPLY_WORDS="400")
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        head = await send(http, user, chat_id, "die halfway", max_events=10)
        reader = asyncio.create_task(resume(http, user, chat_id, head.last.id))
        await asyncio.sleep(0.2)
        worker.kill()
        killed_at = time.monotonic()
        tail = await asyncio.wait_for(reader, 10)
        assert time.monotonic() - killed_at <= 2.0 + 0.5  # JOB_LEASE_SECONDS, plus one check interval
        assert tail.last.event == "error" and tail.last.data["content"] == ""
        assert "message" in tail.last.data
        partial = (await history(http, user, chat_id))[-1]
        assert partial["role"] == "assistant" and partial["content"] == head.text + tail.text
        processes.worker(url, **lease)  # the chat takes new prompts
        assert (await send(http, user, chat_id, "again")).last.event == "done"


@pytest.fixture
def openai_pod(processes: Processes, redis_url: str, stub: LlmStub) -> Api:
    url = isolated_url(redis_url)
    api = processes.api(url)
    processes.worker(url, JOB_RETRY_BASE_SECONDS="0.05", **openai_env(stub))
    return api


async def test_openai_streaming_with_conversation_context(openai_pod: Api, stub: LlmStub) -> None:
    async with httpx.AsyncClient(base_url=openai_pod.url, timeout=30) as http:
        user = auth(await dev_login(http))
        await http.post("/user/skill-description", headers=user, json={"description": "Elixir and OTP"})
        chat_id = await new_chat(http, user)
        first = await send(http, user, chat_id, "What is a GenServer?")
        assert first.events[0].data["content"] == "[history=1]" and first.last.event == "done"
        assert first.last.data["finishReason"] == "stop"  # the usage chunk the openai client asked for:
        assert first.last.data["usage"]["completionTokens"] == len(first.events) - 1
        second = await send(http, user, chat_id, "And a supervisor?")
        assert second.text.startswith("[history=3]")
    chat_requests = [r["body"] for r in stub.requests() if r["body"].get("stream")]
    body = chat_requests[-1]
    assert body["model"] == "stub-model-1" and body["stream"] is True
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert "Elixir and OTP" in body["messages"][0]["content"]
    assert [m["content"] for m in body["messages"][1:]] == ["What is a GenServer?", first.text, "And a supervisor?"]


async def test_llm_failure_mid_reply(openai_pod: Api, stub: LlmStub) -> None:
    stub.control(chat="fail_mid", fail_after=5)
    async with httpx.AsyncClient(base_url=openai_pod.url, timeout=30) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        stream = await send(http, user, chat_id, "break please")
        assert [e.event for e in stream.events] == ["message"] * 5 + ["error"]
        assert stream.last.data["content"] == "" and stream.last.data["message"]
        assert (await history(http, user, chat_id))[-1]["content"] == stream.text
        stub.control()
        assert (await send(http, user, chat_id, "works again")).last.event == "done"


async def test_llm_down_before_first_chunk_retries_then_errors(openai_pod: Api, stub: LlmStub) -> None:
    stub.control(chat="error500")
    async with httpx.AsyncClient(base_url=openai_pod.url, timeout=30) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        stream = await send(http, user, chat_id, "nobody home")
        assert [e.event for e in stream.events] == ["error"]
        assert stream.last.data["message"]
    assert len([r for r in stub.requests() if r["body"].get("stream")]) == 3
