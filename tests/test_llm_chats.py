"""Whole chats and interviews, API and worker processes, through the servers users run: a long
chat against a small context (set right, and left at the default), a prompt alone over the
context, OpenAI's gpt-5 (max_completion_tokens) and Azure OpenAI."""

from __future__ import annotations

import itertools

import httpx
import pytest

from devstack.login import auth, dev_login
from devstack.services import Api
from tests.conftest import LlmStub, Processes, isolated_url, openai_env
from tests.test_chat import new_chat, send
from tests.test_interview import describe, ready_questions
from workers.llm.context import request_tokens

CONTEXT, REPLY = 2000, 100  # the stub's small-context profile: 2,000 tokens
TOO_LONG = "Please review this. " + "lorem ipsum " * 665  # about 8,000 bytes: over 2,000 tokens alone


def prompt(turn: int, words: int = 50) -> str:
    return f"Turn {turn}: " + " ".join(f"word{turn}-{i}" for i in range(words))  # about 10 bytes a word


def chat_requests(stub: LlmStub) -> list[dict]:
    return [r for r in stub.requests() if r["body"].get("stream")]


def start(processes: Processes, redis_url: str, **env: str) -> Api:
    url = isolated_url(redis_url)
    api = processes.api(url)
    processes.worker(url, JOB_RETRY_BASE_SECONDS="0.05", **env)
    return api


async def long_chat(api: Api, turns: int) -> tuple[dict[str, str], int, list[dict[str, str]]]:
    """A chat of `turns` long prompts, every reply done; the conversation as the user saw it."""
    conversation: list[dict[str, str]] = []
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        for turn in range(1, turns + 1):
            stream = await send(http, user, chat_id, prompt(turn))
            assert stream.last.event == "done", stream.last
            conversation += [{"role": "user", "content": prompt(turn)}, {"role": "assistant", "content": stream.text}]
    return user, chat_id, conversation


async def test_long_chat_fits_a_small_context(processes: Processes, redis_url: str, stub: LlmStub) -> None:
    """LLM_CONTEXT_TOKENS set to the server's: never a refusal, the newest history that fits."""
    api = start(processes, redis_url, LLM_CONTEXT_TOKENS=str(CONTEXT), LLM_MAX_TOKENS=str(REPLY), **openai_env(stub))
    stub.control(profile="small-context")
    _, _, conversation = await long_chat(api, 12)
    sent = chat_requests(stub)
    assert [r["status"] for r in sent] == [200] * 12
    kept = []
    for turn, request in enumerate(sent):
        messages = request["body"]["messages"]
        assert messages[0]["role"] == "system" and messages[-1] == conversation[2 * turn]
        history = messages[1:]
        assert history == conversation[2 * turn + 1 - len(history) : 2 * turn + 1]  # the newest, in order
        assert history[0]["role"] == "user"
        assert request_tokens(messages) + REPLY <= CONTEXT
        kept.append(len(history))
    assert kept[:2] == [1, 3]  # all of it while it fits
    assert 3 <= kept[-1] < 23  # later: trimmed, yet more than the prompt alone


async def test_long_chat_over_an_unset_context_halves_the_history(
    processes: Processes, redis_url: str, stub: LlmStub
) -> None:
    """LLM_CONTEXT_TOKENS left at 128,000 for a 2,000-token server: each refusal (as OpenAI, vLLM
    or llama.cpp words it) is answered with half the history, and every reply is done."""
    api = start(processes, redis_url, LLM_MAX_TOKENS=str(REPLY), **openai_env(stub))
    styles = ["openai", "vllm", "llamacpp"]
    conversation: list[dict[str, str]] = []
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        for turn in range(1, 13):
            stub.control(profile="small-context", overflow_style=styles[turn % 3])
            stream = await send(http, user, chat_id, prompt(turn, 100))
            assert stream.last.event == "done", stream.last
            conversation += [
                {"role": "user", "content": prompt(turn, 100)},
                {"role": "assistant", "content": stream.text},
            ]
        tries = [(len(r["body"]["messages"]) - 1, r["status"]) for r in chat_requests(stub)]
        refused = [r["error"] for r in chat_requests(stub) if r["status"] == 400]
        # A prompt alone larger than the context: halved down to no history, then a clear error event.
        stub.clear()
        stub.control(profile="small-context")
        stream = await send(http, user, chat_id, TOO_LONG)
        assert [e.event for e in stream.events] == ["error"]
        assert "too long" in stream.last.data["message"]
        alone = [len(r["body"]["messages"]) - 1 for r in chat_requests(stub)]
        stub.clear()
        assert (await send(http, user, chat_id, "short again")).last.event == "done"  # the chat goes on
    assert tries[0] == (1, 200)
    assert {(size, status) for size, status in tries if status == 400}  # it did overflow
    for (size, status), (after, _) in itertools.pairwise(tries):
        if status == 400:  # asked again at once, with the newer half of the history (opening with a user's)
            assert after - 1 in ((size - 1) // 2, (size - 1) // 2 - 1)
    assert any("context_length_exceeded" in str(e) for e in refused)
    assert any("maximum context length" in str(e) and "object" in e for e in refused)  # vLLM's
    assert any("exceed_context_size_error" in str(e) for e in refused)  # llama.cpp's
    assert alone[-1] == 1 and alone == sorted(alone, reverse=True)  # down to the prompt, not retried after
    assert len(conversation) == 24


async def test_prompt_alone_over_the_context_is_an_error_event(
    processes: Processes, redis_url: str, stub: LlmStub
) -> None:
    api = start(processes, redis_url, LLM_CONTEXT_TOKENS=str(CONTEXT), LLM_MAX_TOKENS=str(REPLY), **openai_env(stub))
    stub.control(profile="small-context")
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        assert (await send(http, user, chat_id, "hello")).last.event == "done"
        stream = await send(http, user, chat_id, TOO_LONG)
        assert [e.event for e in stream.events] == ["error"]
        assert stream.last.data["message"] == (
            "Your message is too long for the assistant's model, even without the earlier conversation. "
            "Please send a shorter message."
        )
        # Sent once without history (it did not fit beside the prompt), refused, not retried.
        assert [(len(r["body"]["messages"]), r["status"]) for r in chat_requests(stub)] == [(2, 200), (2, 400)]
        assert (await send(http, user, chat_id, "shorter")).last.event == "done"


async def test_openai_gpt5_chat_and_interview(processes: Processes, redis_url: str, stub: LlmStub) -> None:
    api = start(processes, redis_url, **{**openai_env(stub), "LLM_MODEL": "gpt-5-mini", "LLM_MAX_TOKENS": "333"})
    stub.control(profile="openai-gpt5")
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        user = auth(await dev_login(http))
        await describe(http, user, "Swift concurrency")
        assert len(await ready_questions(http, user)) == 5
        chat_id = await new_chat(http, user)
        for text in ("first", "second"):
            assert (await send(http, user, chat_id, text)).last.event == "done"
    sent = [
        (next(k for k in ("max_tokens", "max_completion_tokens") if k in r["body"]), r["status"])
        for r in chat_requests(stub)
    ]
    assert sent == [("max_tokens", 400), ("max_completion_tokens", 200), ("max_completion_tokens", 200)]
    assert all(r["body"]["max_completion_tokens"] == 333 for r in chat_requests(stub) if r["status"] == 200)


@pytest.mark.parametrize("version", ["2024-06-01", "2025-04-01-preview"])
async def test_azure_openai_chat_and_interview(
    processes: Processes, redis_url: str, stub: LlmStub, version: str
) -> None:
    api = start(
        processes,
        redis_url,
        LLM_PROVIDER="azure",
        AZURE_OPENAI_ENDPOINT=stub.url,
        AZURE_OPENAI_API_KEY="azure-key",
        OPENAI_API_VERSION=version,
        LLM_MODEL="stub-deployment",
    )
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        user = auth(await dev_login(http))
        await describe(http, user, "F# and .NET")
        questions = await ready_questions(http, user)
        assert questions[0]["content"] == "Question 1 about: F# and .NET"
        chat_id = await new_chat(http, user)
        assert (await send(http, user, chat_id, "hi")).last.event == "done"
    requests = stub.requests()
    assert {r["path"] for r in requests} == {"/openai/deployments/stub-deployment/chat/completions"}
    assert {r["query"]["api-version"] for r in requests} == {version}
    assert {(r["api_key"], r["authorization"]) for r in requests} == {("azure-key", "")}
    asked = [
        ((r["body"].get("response_format") or {}).get("type"), r["status"])
        for r in requests
        if not r["body"].get("stream")
    ]
    # json_schema came with API version 2024-08-01-preview: before it, JSON mode.
    assert asked == ([("json_schema", 400), ("json_object", 200)] if version < "2024-08" else [("json_schema", 200)])
    assert [r["status"] for r in chat_requests(stub)] == [200]
