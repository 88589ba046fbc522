"""The openai client (its OpenAI and its Azure path) against a loopback server that answers as
each real server does: OpenAI's current models, Azure OpenAI on old and new API versions,
servers without JSON schema or without response_format, and servers over their context.

In-process: one OpenAILLM (the worker's provider) per test, real HTTP to tests/support/llm_stub.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from config.settings import Settings
from tests.conftest import LlmStub
from workers.llm import ContextOverflow, LLMError, ReplyEnd
from workers.llm.openai import Learned, OpenAILLM

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}]


def settings(stub: LlmStub, **env: object) -> Settings:
    base: dict[str, object] = {
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": stub.url + "/v1",
        "LLM_MODEL": "gpt-5-mini",
        "LLM_MAX_TOKENS": 321,
    }
    return Settings(_env_file=None, **{**base, **env})  # type: ignore[arg-type]


def azure(stub: LlmStub, version: str, **env: object) -> Settings:
    return settings(
        stub,
        LLM_PROVIDER="azure",
        AZURE_OPENAI_ENDPOINT=stub.url,
        AZURE_OPENAI_API_KEY="azure-key",
        OPENAI_API_VERSION=version,
        LLM_MODEL="stub-deployment",
        **env,
    )


@pytest.fixture
async def llms() -> AsyncIterator[list[OpenAILLM]]:
    made: list[OpenAILLM] = []
    yield made
    for llm in made:
        await llm.aclose()


def make(made: list[OpenAILLM], config: Settings) -> OpenAILLM:
    made.append(OpenAILLM(config))
    return made[-1]


async def reply(llm: OpenAILLM) -> tuple[str, ReplyEnd]:
    pieces = [piece async for piece in llm.stream_reply(MESSAGES)]
    end = pieces.pop()
    assert isinstance(end, ReplyEnd)
    return "".join(str(p) for p in pieces), end


def caps(stub: LlmStub) -> list[tuple[str, int, int]]:
    """(cap parameter sent, its value, the answer's status) of each request."""
    found = []
    for sent in stub.requests():
        body = sent["body"]
        name = "max_tokens" if "max_tokens" in body else "max_completion_tokens"
        assert not {"max_tokens", "max_completion_tokens"} <= body.keys()
        found.append((name, body[name], sent["status"]))
    return found


async def test_openai_gpt5_refuses_max_tokens_once_per_model(stub: LlmStub, llms: list[OpenAILLM]) -> None:
    stub.control(profile="openai-gpt5")
    llm = make(llms, settings(stub))
    text, end = await reply(llm)
    assert text.startswith("[history=1]") and end.finish_reason == "stop"
    [refused, _] = stub.requests()
    assert refused["error"]["error"]["code"] == "unsupported_parameter"
    assert caps(stub) == [("max_tokens", 321, 400), ("max_completion_tokens", 321, 200)]
    stub.clear()
    stub.control(profile="openai-gpt5")
    await reply(llm)  # remembered: right the first time
    assert caps(stub) == [("max_completion_tokens", 321, 200)]
    assert llm.learned == {"gpt-5-mini": Learned(cap="max_completion_tokens")}


async def test_servers_that_take_max_tokens_get_it(stub: LlmStub, llms: list[OpenAILLM]) -> None:
    llm = make(llms, settings(stub, LLM_MODEL="llama-3.1-8b"))  # vLLM, Ollama, llama.cpp
    await reply(llm)
    await reply(llm)
    assert caps(stub) == [("max_tokens", 321, 200)] * 2


async def test_azure_path_key_and_version(stub: LlmStub, llms: list[OpenAILLM]) -> None:
    llm = make(llms, azure(stub, "2024-10-21"))
    text, _ = await reply(llm)
    assert text.startswith("[history=1]")
    [sent] = stub.requests()
    assert sent["path"] == "/openai/deployments/stub-deployment/chat/completions"
    assert sent["query"] == {"api-version": "2024-10-21"}
    assert sent["api_key"] == "azure-key" and sent["authorization"] == ""
    assert sent["body"]["max_tokens"] == 321


async def test_azure_old_version_refuses_max_completion_tokens(stub: LlmStub, llms: list[OpenAILLM]) -> None:
    """Whichever cap is sent first, its refusal is answered with the other: here a process that
    learned max_completion_tokens (from a gpt-5 deployment) meets an older API version."""
    llm = make(llms, azure(stub, "2024-06-01"))
    llm.learned["stub-deployment"] = Learned(cap="max_completion_tokens")
    await reply(llm)
    assert caps(stub) == [("max_completion_tokens", 321, 400), ("max_tokens", 321, 200)]
    assert stub.requests()[0]["error"]["error"]["message"] == (
        "Unrecognized request argument supplied: max_completion_tokens"
    )
    assert llm.learned["stub-deployment"].cap == "max_tokens"


async def test_azure_gpt5_deployment_refuses_max_tokens(stub: LlmStub, llms: list[OpenAILLM]) -> None:
    stub.control(refuse_max_tokens=True)
    llm = make(llms, azure(stub, "2025-04-01-preview"))
    await reply(llm)
    assert caps(stub) == [("max_tokens", 321, 400), ("max_completion_tokens", 321, 200)]


@pytest.mark.parametrize(
    ("change", "status", "retryable"),
    [({"AZURE_OPENAI_API_KEY": "wrong"}, 401, False), ({"LLM_MODEL": "no-such-deployment"}, 404, False)],
)
async def test_azure_refusals_are_final(
    stub: LlmStub, llms: list[OpenAILLM], change: dict[str, str], status: int, retryable: bool
) -> None:
    config = azure(stub, "2024-10-21").model_copy(update=change)
    llm = make(llms, config)
    with pytest.raises(LLMError) as raised:
        await reply(llm)
    assert raised.value.retryable is retryable and raised.value.user_message
    assert [r["status"] for r in stub.requests()] == [status]  # no cap switch on these


async def questions_asked(stub: LlmStub) -> list[tuple[str | None, int]]:
    """(response_format type sent, the answer's status) of each question request."""
    return [((r["body"].get("response_format") or {}).get("type"), r["status"]) for r in stub.requests()]


async def test_no_json_schema_falls_back_to_json_mode(stub: LlmStub, llms: list[OpenAILLM]) -> None:
    stub.control(profile="no-json-schema")
    llm = make(llms, settings(stub))
    questions = await llm.generate_questions("Rust lifetimes", 3)
    assert [q.content for q in questions] == [f"Question {i} about: Rust lifetimes" for i in (1, 2, 3)]
    assert await questions_asked(stub) == [("json_schema", 400), ("json_object", 200)]
    fallback = stub.requests()[1]["body"]["messages"][-1]["content"]
    assert '"GeneratedQuestion"' in fallback and "correct_index" in fallback  # the schema, in the prompt
    stub.clear()
    stub.control(profile="no-json-schema")
    await llm.generate_questions("Rust lifetimes", 3)
    assert await questions_asked(stub) == [("json_object", 200)]  # remembered


@pytest.mark.parametrize("fenced", [True, False])
async def test_no_response_format_reads_json_from_text(stub: LlmStub, llms: list[OpenAILLM], fenced: bool) -> None:
    stub.control(profile="no-response-format", text_fenced=fenced)
    llm = make(llms, settings(stub))
    questions = await llm.generate_questions("Go channels", 4)
    assert [q.correct_index for q in questions] == [0, 1, 2, 0]
    assert await questions_asked(stub) == [("json_schema", 400), ("json_object", 400), (None, 200)]
    assert "JSON schema" in stub.requests()[2]["body"]["messages"][-1]["content"]
    assert llm.learned["gpt-5-mini"].output == "text"


async def test_azure_old_version_questions_use_json_mode(stub: LlmStub, llms: list[OpenAILLM]) -> None:
    llm = make(llms, azure(stub, "2024-06-01"))
    assert len(await llm.generate_questions("Kotlin", 2)) == 2
    assert await questions_asked(stub) == [("json_schema", 400), ("json_object", 200)]


async def test_text_answer_of_the_wrong_shape_is_retryable(stub: LlmStub, llms: list[OpenAILLM]) -> None:
    stub.control(profile="no-response-format", questions="wrong_schema")
    llm = make(llms, settings(stub))
    with pytest.raises(LLMError) as raised:
        await llm.generate_questions("Go", 2)
    assert raised.value.retryable and "ValidationError" in str(raised.value)


@pytest.mark.parametrize("style", ["openai", "vllm", "llamacpp"])
async def test_over_the_context_is_context_overflow(stub: LlmStub, llms: list[OpenAILLM], style: str) -> None:
    stub.control(context_tokens=300, overflow_style=style)
    llm = make(llms, settings(stub, LLM_MAX_TOKENS=250))
    long = [MESSAGES[0], {"role": "user", "content": "word " * 100}]
    with pytest.raises(ContextOverflow) as raised:
        [piece async for piece in llm.stream_reply(long)]
    assert raised.value.retryable is False and "too long" in (raised.value.user_message or "")
    assert [r["status"] for r in stub.requests()] == [400]  # not taken for a refused max_tokens
    await reply(llm)  # a short one fits
