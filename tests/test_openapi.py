"""The OpenAPI document and the docs page (PRODUCT.md, Operations), used as front-end developers
use them: every route documented from its own code; the document says what a typed client
needs; TypeScript generated from it (openapi-typescript) type-checks a client of every route
(tsc, strict); Schemathesis finds nothing the server does that the document does not say; real
answers of every route match the models the document is built from; /docs works offline."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis as sync_redis
from pydantic import BaseModel

from backend.apidoc import ErrorResponse, MessageResponse
from backend.app import create_app
from backend.assistant.models import (
    ChatListResponse,
    ChatResponse,
    CreateChatResponse,
    FinishReason,
    ReplyEvent,
    ReplyEventData,
    ReplyStatus,
    StreamTicketResponse,
)
from backend.auth.models import AuthResponse, UserExport, UserInfoResponse
from backend.interview.models import InterviewQuestionStatus, UserQuestionsResponse
from backend.ops.openapi import build_document
from backend.store import interview as stored_interview
from backend.store import keys
from backend.store.replies import ReplyStatus as StoredReplyStatus
from config.settings import Settings
from devstack.login import auth, dev_login
from tests.conftest import Processes, eventually, isolated_url
from tests.support.browser import offline_chromium
from tests.support.sse import read

SUPPORT = Path(__file__).parent / "support"
NODE_BIN = SUPPORT / "node_modules" / ".bin"
CLIENT = SUPPORT / "client"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
SEED = 20251201

# What the spec's routes are called in the document (readable ids, the spec's parameter names).
SPEC_OPERATIONS = {
    ("/user/auth-code", "get"): "getAuthCode",
    ("/user/auth-callback", "get"): "authCallback",
    ("/user/logout", "post"): "logout",
    ("/user/info", "get"): "getUserInfo",
    ("/user/questions", "get"): "getQuestions",
    ("/user/questions/{id}/answer", "post"): "answerQuestion",
    ("/user/skill-description", "post"): "setSkillDescription",
    ("/assistant/chat", "post"): "createChat",
    ("/assistant/chat", "get"): "listChats",
    ("/assistant/chat/{chatId}", "get"): "getChat",
    ("/assistant/chat/{chatId}", "delete"): "deleteChat",
    ("/assistant/chat/{chatId}", "post"): "sendMessage",
    ("/assistant/chat/{chatId}/stream", "get"): "streamReply",
    ("/assistant/chat/{chatId}/stream-ticket", "post"): "createStreamTicket",
    ("/assistant/chat/{chatId}/stop", "post"): "stopReply",
    ("/health", "get"): "getHealth",
    ("/ready", "get"): "getReady",
    ("/metrics", "get"): "getMetrics",
}


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        parts = node["$ref"].removeprefix("#/").split("/")
        node = spec
        for part in parts:
            node = node[part]
    return node


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/docs/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    return response.json()


# ---- every route is documented, from its code ------------------------------------------------


def test_every_route_is_documented() -> None:
    """Each route of the app (dev login and playground mounted too) has `@operation` or `@hidden`
    (backend/apidoc.py) and appears in the document with each of its methods."""
    settings = Settings(ENVIRONMENT="test", AUTH_PROVIDER="dev", PLAYGROUND=True, OPENAPI_DOCS=True)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        app = create_app(settings, name="openapi_every_route")  # builds it only; nothing connects
    finally:
        root.handlers[:] = handlers  # create_app configures logging for a server process
        root.setLevel(level)
    app.router.finalize()
    spec, undocumented = build_document(app)
    assert undocumented == [], (
        "routes with no documentation: add @operation(...) (or @hidden) from backend/apidoc.py under the route "
        f"decorator: {undocumented}"
    )
    documented = {(op["operationId"]) for _, _, op in operations(spec)}
    for route in app.router.routes:
        found = getattr(route.handler, "__openapi__", None)
        if found == "hidden":
            continue
        assert found is not None and found.operation_id in documented, route.name
    assert set(SPEC_OPERATIONS.values()) <= documented
    assert {(path, method) for path, method, _ in operations(spec)} >= set(SPEC_OPERATIONS)


# ---- what the document says ------------------------------------------------------------------


async def test_document_says_what_a_typed_client_needs(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z]+[A-Za-z]*", i) for i in ids), ids
    assert {(p, m): op["operationId"] for p, m, op in operations(spec) if (p, m) in SPEC_OPERATIONS} == SPEC_OPERATIONS
    text = json.dumps(spec)
    assert "chat_id" not in text and "question_id" not in text and "~" not in "".join(ids)

    schemas = spec["components"]["schemas"]
    for node in walk(spec):  # every reference resolves; every integer is 64-bit
        if "$ref" in node:
            resolve(spec, node)
        if node.get("type") == "integer" and node is not spec:
            assert node.get("format") == "int64", node
    assert set(schemas["InterviewQuestionStatus"]["enum"]) == {
        stored_interview.NOT_STARTED,
        stored_interview.IN_PROGRESS,
        stored_interview.QUESTION_NOT_READY,
        stored_interview.SUCCESS,
    }
    assert schemas["MessageRole"]["enum"] == ["user", "assistant"]
    assert set(schemas["ReplyStatus"]["enum"]) == {s.value for s in StoredReplyStatus}
    assert set(schemas["ReplyEventType"]["enum"]) == {"message", "done", "error"}
    assert set(schemas["FinishReason"]["enum"]) == {"stop", "length", "stopped"}
    assert schemas["UserInfoResponse"]["properties"]["interviewQuestionStatus"] == {
        "$ref": "#/components/schemas/InterviewQuestionStatus"
    }
    assert schemas["ChatMessage"]["properties"]["role"] == {"$ref": "#/components/schemas/MessageRole"}
    assert schemas["ErrorResponse"]["required"] == ["message"]

    for path, method, op in operations(spec):
        responses = op["responses"]
        assert "405" in responses, (path, method)
        for status, response in responses.items():
            response = resolve(spec, response)
            if status not in ("405", "431"):
                assert "X-Request-ID" in response["headers"], (path, method, status)
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"
                }
            if status in ("429", "503"):
                retry_after = resolve(spec, response["headers"]["Retry-After"])
                assert retry_after["required"] is True and retry_after["schema"]["type"] == "integer"
            if status == "405":
                assert "Allow" in response["headers"]
        if op["security"]:  # authenticated: the token header, or a Bearer token; 401 without
            assert {"token": []} in op["security"] and "401" in responses, (path, method)
        if "requestBody" in op:
            assert {"400", "413"} <= set(responses), (path, method)

    paths = spec["paths"]
    questions = paths["/user/questions"]["get"]["responses"]
    assert {"200", "202", "409"} <= set(questions)
    assert resolve(spec, questions["202"]["content"]["application/json"]["schema"]) is schemas["UserQuestionsResponse"]
    for limited, method in (
        ("/user/auth-code", "get"),
        ("/user/skill-description", "post"),
        ("/assistant/chat/{chatId}", "post"),
        ("/assistant/chat/{chatId}/stream", "get"),
    ):
        op = paths[limited][method]
        assert "429" in op["responses"] and "503" in op["responses"], limited
    answer = paths["/user/questions/{id}/answer"]["post"]
    assert {"400", "404", "409"} <= set(answer["responses"])
    assert [p["name"] for p in answer["parameters"] if p["in"] == "path"] == ["id"]
    assert answer["parameters"][0]["schema"] == {"type": "integer", "format": "int64", "minimum": 1}
    answer_schema = schemas["UserAnswerRequest"]["properties"]["answer"]
    assert (answer_schema["minimum"], answer_schema["maximum"]) == (0, 5)  # at most 6 choices
    # One resource to the server, one path item in the document (the trailing slash is optional):
    # OPTIONS' Allow and a POST without the slash agree with it.
    assert set(paths["/assistant/chat/{chatId}"]) >= {"get", "post", "delete"}
    assert not any(path.endswith("/") for path in paths), sorted(paths)

    callback = paths["/user/auth-callback"]["get"]["parameters"]
    assert {(p["name"], p["in"], p["required"], p["schema"]["type"]) for p in callback} == {
        ("code", "query", True, "string"),
        ("state", "query", True, "string"),
    }
    listing = {p["name"]: p for p in paths["/assistant/chat"]["get"]["parameters"]}
    assert listing["limit"]["schema"] == {
        "type": "integer",
        "format": "int64",
        "minimum": 1,
        "maximum": 100,
        "default": 50,
    }
    assert listing["before"]["schema"]["type"] == "string"
    assert "next" in schemas["ChatListResponse"]["properties"] and schemas["ChatListResponse"]["required"] == ["chats"]
    assert schemas["ChatResponse"]["properties"]["reply"] == {"$ref": "#/components/schemas/ReplyState"}
    assert set(schemas["StreamTicketResponse"]["required"]) == {"ticket", "expiresIn"}

    stream = paths["/assistant/chat/{chatId}/stream"]["get"]
    where = {p["name"]: p["in"] for p in stream["parameters"]}
    assert where == {"chatId": "path", "Last-Event-ID": "header", "lastEventId": "query", "ticket": "query"}
    assert {"ticket": []} in stream["security"]
    for sse in (stream, paths["/assistant/chat/{chatId}"]["post"]):
        content = sse["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream; charset=utf-8"]
        event = resolve(spec, content["text/event-stream; charset=utf-8"]["schema"])
        assert set(event["properties"]) == {"id", "event", "data"}
        assert event["properties"]["data"]["contentSchema"] == {"$ref": "#/components/schemas/ReplyEventData"}
    assert set(schemas["ReplyEventData"]["properties"]) == {"content", "finishReason", "usage", "message", "stopped"}

    for model, field, maximum in (
        ("SkillDescriptionRequest", "description", 4000),
        ("SendMessageRequest", "prompt", 8000),
    ):
        text_field = schemas[model]["properties"][field]
        assert text_field["maxLength"] == maximum and text_field["minLength"] == 1
        assert "trimmed" in text_field["description"]
    assert "after its leading and trailing whitespace is trimmed" in spec["info"]["description"]


# ---- a typed client from the document ----------------------------------------------------------


def typescript(spec: dict[str, Any], workdir: Path) -> subprocess.CompletedProcess[str]:
    """openapi-typescript on the document, then `tsc --noEmit` (strict) on tests/support/client."""
    (workdir / "openapi.json").write_text(json.dumps(spec))
    subprocess.run(
        [str(NODE_BIN / "openapi-typescript"), str(workdir / "openapi.json"), "-o", str(workdir / "api.ts")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    (workdir / "tsconfig.json").write_text(
        json.dumps(
            {
                "extends": str(CLIENT / "tsconfig.json"),
                "compilerOptions": {"paths": {"api-schema": [str(workdir / "api.ts")]}},
                "files": [str(CLIENT / "client.ts")],
            }
        )
    )
    return subprocess.run(
        [str(NODE_BIN / "tsc"), "-p", str(workdir / "tsconfig.json")], capture_output=True, text=True, timeout=120
    )


async def test_typescript_client_of_every_route_type_checks(spec: dict[str, Any], tmp_path: Path) -> None:
    checked = await asyncio.to_thread(typescript, spec, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_typescript_check_fails_on_a_wrong_document(spec: dict[str, Any], tmp_path: Path) -> None:
    """The check bites: a document with a snake_case path parameter, a lost enum value, a
    missing route or a header parameter sent as a query parameter does not type-check."""
    wrong = json.loads(json.dumps(spec))
    wrong["paths"]["/assistant/chat/{chat_id}"] = wrong["paths"].pop("/assistant/chat/{chatId}")
    for op in wrong["paths"]["/assistant/chat/{chat_id}"].values():
        op["parameters"][0]["name"] = "chat_id"
    wrong["components"]["schemas"]["InterviewQuestionStatus"]["enum"].remove("QUESTION_NOT_READY")
    del wrong["paths"]["/assistant/chat/{chatId}/stop"]
    for parameter in wrong["paths"]["/assistant/chat/{chatId}/stream"]["get"]["parameters"]:
        if parameter["name"] == "Last-Event-ID":
            parameter["in"] = "query"
    checked = await asyncio.to_thread(typescript, wrong, tmp_path)
    assert checked.returncode != 0
    source = (CLIENT / "client.ts").read_text().splitlines()
    flagged = "\n".join(source[int(n) - 1] for n in re.findall(r"client\.ts\((\d+),", checked.stdout))
    for mistake in ("/assistant/chat/{chatId}", "stopReply", "InterviewQuestionStatus", "Last-Event-ID"):
        assert mistake in flagged, (mistake, checked.stdout)


# ---- Schemathesis ------------------------------------------------------------------------------


async def test_schemathesis_finds_nothing(processes: Processes, redis_url: str, tmp_path: Path) -> None:
    """Every check of Schemathesis (tests/support/schemathesis.toml: `checks.enabled = true`), seeded
    and bounded, as a logged-in user, against an API and a worker of its own. `logout` is left
    out: it would end the session the run uses (tests/test_auth_dev.py covers it)."""
    url = isolated_url(redis_url)
    api = processes.api(url, FAKE_LLM_TOKEN_DELAY_MS="0")
    processes.worker(url, FAKE_LLM_TOKEN_DELAY_MS="0", WORKER_CONCURRENCY="16")
    async with httpx.AsyncClient(base_url=api.url) as http:
        token = await dev_login(http)
    run = await asyncio.to_thread(
        subprocess.run,
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(SUPPORT / "schemathesis.toml"),
            "--no-color",
            "run",
            f"{api.url}/docs/openapi.json",
            "--header",
            f"Authentication: Basic {token}",
            "--max-examples",
            "20",
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--exclude-operation-id",
            "logout",
            "--exclude-operation-id",
            "deleteUser",
            "--output-truncate",
            "true",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,  # about 20-40 s; a busy machine is slow, not wrong
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    summary = run.stdout[run.stdout.find("=== SUMMARY") :] if "=== SUMMARY" in run.stdout else run.stdout[-3000:]
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
    assert "Tested: 20" in summary or "Tested:" in summary


# ---- real answers match the models ----------------------------------------------------------------


class Checker:
    """Each answer: a status its operation documents, and a body its model accepts."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.by_id = {op["operationId"]: op for _, _, op in operations(spec)}
        self.seen: set[str] = set()

    def __call__(self, operation_id: str, response: httpx.Response, model: type[BaseModel] | None = None) -> Any:
        self.seen.add(operation_id)
        responses = self.by_id[operation_id]["responses"]
        assert str(response.status_code) in responses, (operation_id, response.status_code, response.text)
        assert response.headers["x-request-id"]
        if response.status_code >= 400:
            ErrorResponse.model_validate_json(response.content)
            return response.json()
        if model is not None:
            model.model_validate_json(response.content)  # extra="forbid": no field the model lacks
        return response.json() if response.headers["content-type"] == "application/json" else response.text


def stream_events(raw: str) -> list[ReplyEvent]:
    """The events of a stream as the document describes them (what EventSource dispatches)."""
    events = []
    for block in raw.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if "data" in fields:
            event = ReplyEvent.model_validate(
                {"event": "message", **{k: fields[k] for k in ("id", "event", "data") if k in fields}}
            )
            ReplyEventData.model_validate_json(event.data)
            events.append(event)
    return events


async def test_answers_of_every_route_match_the_document(
    processes: Processes, redis_url: str, client: httpx.AsyncClient, spec: dict[str, Any]
) -> None:
    """A whole session, interview and chats included, each answer checked against the models the
    document is built from (a field the server sends and the model lacks fails here)."""
    url = isolated_url(redis_url)
    api = processes.api(url, QUESTION_COUNT="2")
    processes.worker(url, QUESTION_COUNT="2")
    check = Checker(spec)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        check("getHealth", await http.get("/health"))
        check("getReady", await http.get("/ready"))
        check("getMetrics", await http.get("/metrics"))
        login = check("getAuthCode", await http.get("/user/auth-code"), AuthResponse)
        check("devLoginPage", await http.get(login["loginUrl"]))
        check("devCallbackPage", await http.get("/dev/callback"))
        check("authCallback", await http.get("/user/auth-callback", params={"code": "x", "state": "y"}))
        token = await dev_login(http)
        check.seen.add("devLogin")  # dev_login posted the form: 303
        user = auth(token)
        assert (
            check("getUserInfo", await http.get("/user/info", headers=user), UserInfoResponse)[
                "interviewQuestionStatus"
            ]
            == InterviewQuestionStatus.NOT_STARTED
        )
        check("getUserInfo", await http.get("/user/info"))
        check("getQuestions", await http.get("/user/questions", headers=user))  # 409
        check(
            "setSkillDescription",
            await http.post("/user/skill-description", headers=user, json={"description": "  Python and Redis  "}),
            MessageResponse,
        )
        check(
            "setSkillDescription",
            await http.post("/user/skill-description", headers=user, json={"description": " \t "}),
        )
        ready = await eventually(lambda: _ready(http, user, check))
        for question in ready["questions"]:
            check(
                "answerQuestion",
                await http.post(f"/user/questions/{question['id']}/answer", headers=user, json={"answer": 99}),
            )  # 400
            check(
                "answerQuestion",
                await http.post(f"/user/questions/{question['id']}/answer", headers=user, json={"answer": 0}),
                MessageResponse,
            )
        check("answerQuestion", await http.post("/user/questions/999999/answer", headers=user, json={"answer": 0}))
        done = check("getQuestions", await http.get("/user/questions", headers=user), UserQuestionsResponse)
        assert all("correctAnswer" in q and "explanation" in q for q in done["questions"])
        info = check("getUserInfo", await http.get("/user/info", headers=user), UserInfoResponse)
        assert info["doneInterview"] and "interviewScore" in info

        chat_ids = [
            check("createChat", await http.post("/assistant/chat", headers=user), CreateChatResponse)["chatId"]
            for _ in range(3)
        ]
        chat_id = chat_ids[0]
        page = check(
            "listChats", await http.get("/assistant/chat", headers=user, params={"limit": 2}), ChatListResponse
        )
        assert "next" in page
        check(
            "listChats",
            await http.get("/assistant/chat", headers=user, params={"before": page["next"]}),
            ChatListResponse,
        )
        check("listChats", await http.get("/assistant/chat", headers=user, params={"limit": 0}))
        idle = check("getChat", await http.get(f"/assistant/chat/{chat_id}", headers=user), ChatResponse)
        assert idle["reply"] == {"status": ReplyStatus.IDLE}
        check("streamReply", await http.get(f"/assistant/chat/{chat_id}/stream", headers=user))  # 404: no reply yet
        check("stopReply", await http.post(f"/assistant/chat/{chat_id}/stop", headers=user))  # 409

        async with http.stream("POST", f"/assistant/chat/{chat_id}/", headers=user, json={"prompt": "Hi"}) as sent:
            check.seen.add("sendMessage")
            assert sent.status_code == 200
            # A reply in flight (or just over): the state a reloaded client resumes from.
            check("getChat", await http.get(f"/assistant/chat/{chat_id}", headers=user), ChatResponse)
            assert sent.headers["content-type"] == "text/event-stream; charset=utf-8"
            raw = (await read(sent)).raw
        events = stream_events(raw)
        assert events[-1].event == "done" and events[0].event == "message"
        final = ReplyEventData.model_validate_json(events[-1].data)
        assert final.content == "" and final.finishReason == FinishReason.STOP
        check("sendMessage", await http.post(f"/assistant/chat/{chat_id}/", headers=user, json={"prompt": ""}))
        after = check("getChat", await http.get(f"/assistant/chat/{chat_id}", headers=user), ChatResponse)
        assert after["reply"] == {"status": "idle", "lastEventId": events[-1].id}
        assert [m["role"] for m in after["messages"]] == ["user", "assistant"]

        async with http.stream(
            "GET", f"/assistant/chat/{chat_id}/stream", headers={**user, "Last-Event-ID": events[0].id}
        ) as resumed:
            assert resumed.status_code == 200
            assert stream_events((await read(resumed)).raw) == events[1:]
        check(
            "streamReply", await http.get(f"/assistant/chat/{chat_id}/stream", headers={**user, "Last-Event-ID": "9-9"})
        )
        ticket = check(
            "createStreamTicket",
            await http.post(f"/assistant/chat/{chat_id}/stream-ticket", headers=user),
            StreamTicketResponse,
        )
        async with http.stream(
            "GET",
            f"/assistant/chat/{chat_id}/stream",
            params={"ticket": ticket["ticket"], "lastEventId": events[-2].id},
        ) as by_ticket:
            assert by_ticket.status_code == 200
            assert stream_events((await read(by_ticket)).raw) == events[-1:]
        check("streamReply", await http.get(f"/assistant/chat/{chat_id}/stream", params={"ticket": "st.1.x"}))

        check("deleteChat", await http.delete(f"/assistant/chat/{chat_ids[1]}", headers=user), MessageResponse)
        check("deleteChat", await http.delete(f"/assistant/chat/{chat_ids[1]}", headers=user))  # 404
        check("getChat", await http.get(f"/assistant/chat/{chat_ids[1]}", headers=user))
        exported = check("exportUser", await http.get("/user/export", headers=user), UserExport)
        assert [c["chatId"] for c in exported["chats"]] == [chat_id, chat_ids[2]]
        with sync_redis.Redis.from_url(url) as store:
            store.delete(keys.reply_log(info["userId"], chat_id, 1))  # what REPLY_LOG_TTL_SECONDS does
        check("streamReply", await http.get(f"/assistant/chat/{chat_id}/stream", headers=user))  # 410
        check("logout", await http.post("/user/logout", headers=user, params={"all": "maybe"}))  # 400
        other = auth(await dev_login(http))
        check("logout", await http.post("/user/logout", headers=user), MessageResponse)
        check("logout", await http.post("/user/logout", headers=user))  # 401
        check("logout", await http.post("/user/logout", headers=other, params={"all": "true"}), MessageResponse)
        last = auth(await dev_login(http))
        check("deleteUser", await http.delete("/user", headers=last), MessageResponse)
        check("deleteUser", await http.delete("/user", headers=last))  # 401
        check("exportUser", await http.get("/user/export", headers=last))  # 401
    missing = set(check.by_id) - check.seen
    assert not missing, f"operations this test does not call yet: {sorted(missing)}"


async def _ready(http: httpx.AsyncClient, user: dict[str, str], check: Checker) -> dict[str, Any] | None:
    response = await http.get("/user/questions", headers=user)
    body = check("getQuestions", response, UserQuestionsResponse)
    return body if response.status_code == 200 else None


# ---- the docs page, offline ----------------------------------------------------------------------


def local(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and url.startswith("/")


async def test_docs_page_and_its_assets_are_served_here(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["x-frame-options"] == "DENY"
    policy = page.headers["content-security-policy"]
    for directive in filter(None, (d.strip() for d in policy.split(";"))):
        _, *sources = directive.split()
        # Only keywords, this origin and data: (inline images and fonts): no host, no scheme of its own.
        assert all(s.startswith("'") or s == "data:" for s in sources), directive
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self';" in policy
    assert not re.search(r"https?://", page.text), page.text
    references = re.findall(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)""", page.text)
    assert len(references) >= 4 and all(local(r) for r in references), references
    kinds = {}
    for reference in references:
        asset = await client.get(reference)
        assert asset.status_code == 200, reference
        kinds[reference.rsplit(".", 1)[-1]] = asset.headers["content-type"]
        if reference.endswith((".css", "docs.js")):
            # Our script and the styles load nothing from elsewhere (the styles' images are data: URLs).
            assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", asset.text), reference
            assert all(u.strip("\"'").startswith("data:") for u in re.findall(r"url\(([^)]*)\)", asset.text))
        if reference.endswith("docs.js"):
            assert 'url: "/docs/openapi.json"' in asset.text and "validatorUrl: null" in asset.text
        if reference.endswith("bundle.js"):
            # No CDN or web font host in Swagger UI; its one default host (the validator) docs.js turns off.
            hosts = set(re.findall(r"https?://([a-z0-9.-]+\.[a-z]{2,})", asset.text))
            assert not {h for h in hosts if re.search(r"cdn|fonts|unpkg|jsdelivr|cloudflare", h)}, hosts
    assert kinds == {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8", "png": "image/png"}
    assert (await client.get("/docs/assets/5.31.0/no-such-file.js")).status_code == 404


def test_docs_page_renders_in_a_browser_with_no_network(stack: Any) -> None:
    """Headless Chromium, every host but loopback unresolvable: the page lists every operation,
    and the console shows no failed request and no Content-Security-Policy violation."""
    with offline_chromium() as driver:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(f"{stack.url}/docs")
        WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 18)
        title = driver.find_element(By.CSS_SELECTOR, ".info .title").text
        assert "AI interview and assistant API" in title
        text = driver.find_element(By.TAG_NAME, "body").text
        assert "/assistant/chat/{chatId}/stream" in text and "/user/questions/{id}/answer" in text
        problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert problems == [], problems
