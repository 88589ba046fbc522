"""A small OpenAI-compatible server for tests: Chat Completions, structured and streamed.

Run: python tests/support/llm_stub.py PORT. Tests steer it with POST /_control and read what
the workers sent with GET /_requests.
"""

from __future__ import annotations

import asyncio
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
}


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
    state["control"] = request.json or {}
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


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> HTTPResponse | None:
    body = request.json
    state["requests"].append(
        {"body": body, "authorization": request.headers.get("authorization", ""), "at": time.time()}
    )
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
    return json(completion(orjson.dumps(question_set(body["messages"][-1]["content"])).decode()))


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
