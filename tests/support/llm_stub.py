"""A small OpenAI-compatible server for tests: Chat Completions, structured and streamed, at
OpenAI's path (/v1/chat/completions) and Azure OpenAI's (/openai/deployments/<d>/chat/completions
?api-version=..., `api-key` header).

Run: python tests/support/llm_stub.py PORT. Tests steer it with POST /_control (a `profile`
below, and any single setting) and read what the workers sent with GET /_requests.

Its refusals are the real servers' answers: status codes and error bodies as OpenAI, Azure,
vLLM and llama.cpp write them (see ENGINEERING.md and the README's table of servers).
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
import time

import orjson
from sanic import Request, Sanic
from sanic.response import HTTPResponse, json, text

app = Sanic("llm_stub")
app.config.update(AUTO_EXTEND=False, NOISY_EXCEPTIONS=False)
state: dict = {"requests": [], "control": {}}
DEFAULTS = {
    "questions": "ok",
    "questions_delay": 0.0,
    "chat": "ok",
    "chat_chunks": 20,
    "chat_delay": 0.0,
    "fail_after": 5,
    "first_chunk_delay": 0.0,
    "status": 500,
    "retry_after": None,
    # How the server differs from the one that takes everything (the profiles below set these).
    "refuse_max_tokens": False,  # OpenAI's gpt-5.x and o-series
    "json_schema": True,  # False: response_format json_schema refused
    "json_object": True,  # False: response_format refused altogether (JSON mode too)
    "text_fenced": True,  # a plain-text structured answer in a ```json fence, else inside prose
    "context_tokens": None,  # the model's context window, counted as count_tokens() does
    "overflow_style": "openai",  # "openai", "vllm" or "llamacpp": how a request over it is refused
    # Azure OpenAI
    "azure_key": "azure-key",
    "azure_deployment": "stub-deployment",
}
PROFILES: dict[str, dict[str, object]] = {
    "default": {},
    "openai-gpt5": {"refuse_max_tokens": True},
    "no-json-schema": {"json_schema": False},
    "no-response-format": {"json_schema": False, "json_object": False},
    "small-context": {"context_tokens": 2000},
}
# Azure API versions from which a parameter is known (older ones answer "Unrecognized request
# argument supplied: ..."); versions compare as strings (YYYY-MM-DD[-preview]).
AZURE_SINCE = {"max_completion_tokens": "2024-09-01-preview", "json_schema": "2024-08-01-preview"}


def status_error() -> HTTPResponse:
    """mode "status": the error answer of a provider (`status`, and `retry_after` as Retry-After)."""
    headers = {} if setting("retry_after") is None else {"Retry-After": str(setting("retry_after"))}
    return json(
        {"error": {"message": f"stub says {setting('status')}", "type": "stub_error"}},
        status=setting("status"),
        headers=headers,
    )


def setting(name: str):
    return state["control"].get(name, DEFAULTS[name])


@app.post("/_control")
async def control(request: Request) -> HTTPResponse:
    settings = dict(request.json or {})
    state["control"] = {**PROFILES[settings.pop("profile", "default")], **settings}
    return json({"ok": True})


@app.get("/_requests")
async def requests(request: Request) -> HTTPResponse:
    return json(state["requests"])


@app.delete("/_requests")
async def clear(request: Request) -> HTTPResponse:
    state["requests"].clear()
    return json({"ok": True})


def completion(content: str) -> dict:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "stub",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content, "refusal": None}}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def question_set(prompt: str) -> dict:
    count = int(re.search(r"Write exactly (\d+)", prompt).group(1))
    description = prompt.split('"""')[1].strip()
    return {
        "questions": [
            {
                "content": f"Question {i + 1} about: {description}",
                "choices": ["alpha", "beta", "gamma"],
                "correct_index": i % 3,
                "explanation": "Because it is.",
            }
            for i in range(count)
        ]
    }


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> HTTPResponse:
    """OpenAI's (and Azure's) 400."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return json({"error": error}, status=400)


def count_tokens(body: dict) -> tuple[int, int]:
    """(prompt, completion) tokens of a request as this server counts them: a quarter of each
    message's UTF-8 bytes plus 4 (roughly what a BPE tokenizer makes of English), and the cap."""
    prompt = 3 + sum(4 + math.ceil(len(m["content"].encode()) / 4) for m in body["messages"])
    return prompt, body.get("max_tokens") or body.get("max_completion_tokens") or 0


def over_context(body: dict) -> HTTPResponse | None:
    limit = setting("context_tokens")
    if limit is None:
        return None
    prompt, completion = count_tokens(body)
    if prompt + completion <= limit:
        return None
    style = setting("overflow_style")
    if style == "vllm":  # at the top level, `code` the HTTP status
        message = (
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
            "Please reduce the length of the messages or completion."
        )
        return json({"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": 400}, 400)
    if style == "llamacpp":
        error = {
            "code": 400,
            "message": "the request exceeds the available context size, try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": prompt,
            "n_ctx": limit,
        }
        return json({"error": error}, status=400)
    return invalid_request(
        f"This model's maximum context length is {limit} tokens. However, you requested {prompt + completion} "
        f"tokens ({prompt} in the messages, {completion} in the completion). Please reduce the length of the "
        "messages or completion.",
        param="messages",
        code="context_length_exceeded",
    )


def refusal(body: dict, azure_version: str | None) -> HTTPResponse | None:
    """The server's 400 for what it does not take, or None."""
    kind = (body.get("response_format") or {}).get("type")
    for name in ("max_tokens", "max_completion_tokens", "response_format"):
        if name in body and azure_version is not None and azure_version < AZURE_SINCE.get(name, ""):
            return invalid_request(f"Unrecognized request argument supplied: {name}")
    if "max_tokens" in body and setting("refuse_max_tokens"):
        return invalid_request(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        )
    if kind is not None and not setting("json_object"):
        return invalid_request("Unrecognized request argument supplied: response_format")
    old_azure = azure_version is not None and azure_version < AZURE_SINCE["json_schema"]
    if kind == "json_schema" and (old_azure or not setting("json_schema")):
        return invalid_request(
            "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model. Learn "
            "more about supported models at the Structured Outputs guide: "
            "https://platform.openai.com/docs/guides/structured-outputs",
            param="response_format",
        )
    if kind == "json_object" and not any("json" in m["content"].lower() for m in body["messages"]):
        return invalid_request(
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
            param="messages",
        )
    return over_context(body)


def record(request: Request, body: dict) -> dict:
    """What was sent; `status` is filled in once the answer is known."""
    entry = {
        "body": body,
        "path": request.path,
        "query": dict(request.query_args),
        "authorization": request.headers.get("authorization", ""),
        "api_key": request.headers.get("api-key", ""),
        "at": time.time(),
        "status": 200,
        "error": None,
    }
    state["requests"].append(entry)
    return entry


def azure_refusal(request: Request, deployment: str) -> HTTPResponse | None:
    """Azure's answer to a wrong key, a missing api-version or an unknown deployment."""
    if request.headers.get("api-key") != setting("azure_key"):
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
            "key for an active subscription and use a correct regional API endpoint for your resource."
        )
        return json({"error": {"code": "401", "message": message}}, status=401)
    if not request.args.get("api-version"):
        message = "Missing API version parameter."
        return json({"error": {"code": "MissingApiVersionParameter", "message": message}}, status=400)
    if deployment != setting("azure_deployment"):
        message = (
            "The API deployment for this resource does not exist. If you created the deployment within the "
            "last 5 minutes, please wait a moment and try again."
        )
        return json({"error": {"code": "DeploymentNotFound", "message": message}}, status=404)
    return None


@app.post("/openai/deployments/<deployment>/chat/completions")
async def azure_chat_completions(request: Request, deployment: str) -> HTTPResponse | None:
    body = request.json
    entry = record(request, body)
    if (refused := azure_refusal(request, deployment)) is not None:
        entry.update(status=refused.status, error=orjson.loads(refused.body))
        return refused
    return await answer(request, entry, body, request.args.get("api-version"))


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> HTTPResponse | None:
    body = request.json
    return await answer(request, record(request, body), body, None)


async def answer(request: Request, entry: dict, body: dict, azure_version: str | None) -> HTTPResponse | None:
    if (refused := refusal(body, azure_version)) is not None:
        entry.update(status=refused.status, error=orjson.loads(refused.body))
        return refused
    if body.get("stream"):
        return await stream(request, body)
    await asyncio.sleep(setting("questions_delay"))
    mode = setting("questions")
    if mode == "status":
        return status_error()
    if mode == "error500":
        return json({"error": {"message": "boom", "type": "server_error"}}, status=500)
    if mode == "invalid_json":
        return json(completion("{not json"))
    if mode == "wrong_schema":
        return json(completion(orjson.dumps({"questions": [{"content": "only this"}]}).decode()))
    questions = orjson.dumps(question_set(body["messages"][-1]["content"])).decode()
    if "response_format" in body:
        return json(completion(questions))
    if setting("text_fenced"):  # a model asked for JSON in the prompt answers in its own words
        return json(completion(f"Here are the questions:\n\n```json\n{questions}\n```\n\nGood luck!"))
    return json(completion(f"Sure! {questions} I hope these help."))


async def stream(request: Request, body: dict) -> None:
    mode = setting("chat")
    if mode == "status":
        return status_error()
    if mode == "error500":
        return json({"error": {"message": "boom", "type": "server_error"}}, status=500)
    response = await request.respond(content_type="text/event-stream")
    await asyncio.sleep(setting("first_chunk_delay"))
    history = len([m for m in body["messages"] if m["role"] != "system"])
    words = [f"[history={history}]"] + [f" w{i}" for i in range(1, setting("chat_chunks"))]
    for index, word in enumerate(words):
        if mode == "fail_mid" and index == setting("fail_after"):
            await response.send(b'data: {"error": {"message": "model crashed", "type": "server_error"}}\n\n')
            await response.eof()
            return None
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "stub",
            "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
        }
        await response.send(b"data: " + orjson.dumps(chunk) + b"\n\n")
        if setting("chat_delay"):
            await asyncio.sleep(setting("chat_delay"))
    final = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "stub",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    await response.send(b"data: " + orjson.dumps(final) + b"\n\n")
    if (body.get("stream_options") or {}).get("include_usage"):
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        usage = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "stub",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(words),
                "total_tokens": prompt_tokens + len(words),
            },
        }
        await response.send(b"data: " + orjson.dumps(usage) + b"\n\n")
    await response.send(b"data: [DONE]\n\n")
    await response.eof()
    return None


@app.get("/health")
async def health(request: Request) -> HTTPResponse:
    return text("ok")


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), single_process=True, access_log=False, motd=False)
