"""The OpenAPI document (/docs/openapi.json) and docs page (/docs), from pydantic models.

Only sanic-ext's OpenAPI extension is loaded: it adds the two routes and builds the document
once at start-up, and puts no middleware on the hot routes (see README, Performance).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sanic import Sanic
from sanic_ext import Extend
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.builders import OperationStore
from sanic_ext.extensions.openapi.definitions import Response
from sanic_ext.extensions.openapi.extension import OpenAPIExtension

from backend.assistant.routes import SendMessageRequest
from backend.interview.routes import SkillDescriptionRequest, UserAnswerRequest


class ErrorResponse(BaseModel):
    message: str


class MessageResponse(BaseModel):
    message: str


class AuthResponse(BaseModel):
    loginUrl: str
    state: str


class AuthCallbackResponse(BaseModel):
    token: str


class UserInfoResponse(BaseModel):
    userId: int
    username: str
    createdAt: int
    skillDescription: str
    doneInterview: bool
    interviewQuestionStatus: str
    interviewScore: int | None = None


class Question(BaseModel):
    id: int
    content: str
    choices: list[str]
    userAnswer: int | None = None
    correctAnswer: int | None = None
    explanation: str | None = None


class UserQuestionsResponse(BaseModel):
    ready: bool
    questions: list[Question] | None = None


class CreateChatResponse(BaseModel):
    chatId: int


class ChatSummary(BaseModel):
    chatId: int
    title: str
    createdAt: int
    updatedAt: int


class ChatListResponse(BaseModel):
    chats: list[ChatSummary]


class ChatMessage(BaseModel):
    role: str
    content: str
    createdAt: int


class ChatResponse(BaseModel):
    chatId: int
    createdAt: int
    messages: list[ChatMessage]


def schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with nested models inlined; optional fields are not nullable
    (the API leaves an absent value out rather than sending null)."""
    raw = model.model_json_schema()
    defs = raw.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            if "anyOf" in node and {"type": "null"} in node["anyOf"]:
                rest = [n for n in node["anyOf"] if n != {"type": "null"}]
                node = {**{k: v for k, v in node.items() if k not in ("anyOf", "default")}, **rest[0]}
            return {k: inline(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [inline(n) for n in node]
        return node

    return inline(raw)


def json_content(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": schema(model)}


SSE_STREAM = {"text/event-stream": {"type": "string", "description": (
    "One event per chunk: `id: <gen>-<seq>` and `data: {\"content\": \"...\"}`. A finished reply ends with "
    "`event: done` (`{\"content\": \"\", \"stopped\": true}` after a stop), a failure with `event: error` "
    "(`{\"content\": \"\", \"message\": \"...\"}`). `: ping` comments while waiting.")}}
AUTH = {"token": []}


def _ok(model: type[BaseModel] | None = None, status: int = 200, description: str = "OK",
        content: dict[str, Any] | None = None) -> Response:
    return Response(content if content is not None else json_content(model), status=status,  # type: ignore[arg-type]
                    description=description)


def _errors(*statuses: int) -> list[Response]:
    return [Response(json_content(ErrorResponse), status=s, description="Error with a message for the user")
            for s in statuses]


OPERATIONS: dict[str, dict[str, Any]] = {
    "auth.auth_code": dict(summary="Start a login: the provider URL to send the user to", tag="user",
                           response=[_ok(AuthResponse), *_errors(429, 503)]),
    "auth.auth_callback": dict(summary="Finish a login: exchange code and state for a token", tag="user",
                               parameter=[{"name": name, "in": "query", "required": True,
                                           "schema": {"type": "string"}} for name in ("code", "state")],
                               response=[_ok(AuthCallbackResponse), *_errors(400, 502, 503)]),
    "auth.logout": dict(summary="Invalidate the token", tag="user", secured=AUTH,
                        response=[_ok(MessageResponse), *_errors(401)]),
    "auth.info": dict(summary="The user's information", tag="user", secured=AUTH,
                      response=[_ok(UserInfoResponse), *_errors(401)]),
    "interview.skill_description": dict(
        summary="Set the skill description and start a new interview", tag="interview", secured=AUTH,
        body=SkillDescriptionRequest,
        response=[_ok(MessageResponse), *_errors(400, 401, 413, 429)]),
    "interview.questions": dict(
        summary="The interview questions (202 while they are generated)", tag="interview", secured=AUTH,
        response=[_ok(UserQuestionsResponse), _ok(UserQuestionsResponse, 202, "Not ready yet"), *_errors(401, 409)]),
    "interview.answer": dict(
        summary="Answer a question", tag="interview", secured=AUTH,
        body=UserAnswerRequest,
        response=[_ok(MessageResponse), *_errors(400, 401, 404, 409)]),
    "assistant.create_chat": dict(summary="Create a chat", tag="assistant", secured=AUTH,
                                  response=[_ok(CreateChatResponse), *_errors(401)]),
    "assistant.list_chats": dict(summary="The user's chats, most recently updated first", tag="assistant",
                                 secured=AUTH, response=[_ok(ChatListResponse), *_errors(401)]),
    "assistant.get_chat": dict(summary="A chat with its messages", tag="assistant", secured=AUTH,
                               response=[_ok(ChatResponse), *_errors(401, 404)]),
    "assistant.delete_chat": dict(summary="Delete a chat", tag="assistant", secured=AUTH,
                                  response=[_ok(MessageResponse), *_errors(401, 404)]),
    "assistant.send_message": dict(
        summary="Send a prompt; the reply streams as Server-Sent Events", tag="assistant", secured=AUTH,
        body=SendMessageRequest,
        response=[_ok(content=SSE_STREAM), *_errors(400, 401, 404, 409, 429)]),
    "assistant.resume": dict(
        summary="Resume the newest reply after Last-Event-ID (header) or lastEventId (query)", tag="assistant",
        secured=AUTH,
        parameter=[{"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}},
                   {"name": "lastEventId", "in": "query", "required": False, "schema": {"type": "string"}}],
        response=[_ok(content=SSE_STREAM), *_errors(400, 401, 404)]),
    "assistant.stop": dict(summary="Stop the reply being written", tag="assistant", secured=AUTH,
                           response=[_ok(MessageResponse), *_errors(401, 404, 409)]),
    "ops.health": dict(summary="The process is alive (200 even while Redis is down)", tag="operations",
                       response=[_ok(content={"application/json": {"type": "object"}})]),
    "dev_login.login_page": dict(summary="Development login page (the dev provider's authorize URL)",
                                 tag="development"),
    "dev_login.login_submit": dict(summary="Development login: redirects to OAUTH_REDIRECT_URI with a code",
                                   tag="development"),
    "dev_login.callback_page": dict(summary="Development callback page: finishes the login and shows the token",
                                    tag="development"),
    "ops.ready": dict(summary="Redis answers (503 otherwise)", tag="operations",
                      response=[_ok(content={"application/json": {"type": "object"}}), *_errors(503)]),
    "ops_metrics.metrics": dict(summary="Prometheus metrics", tag="operations",
                        response=[_ok(content={"text/plain": {"type": "string"}})]),
}


def install(app: Sanic) -> None:
    """Document every route, then load the OpenAPI extension alone (call after the blueprints)."""
    app.config.update(
        OAS_URL_PREFIX="/docs", OAS_UI_DEFAULT="redoc", OAS_UI_SWAGGER=True, OAS_AUTODOC=False,
        OAS_IGNORE_HEAD=True, OAS_IGNORE_OPTIONS=True,
    )
    documented = set()
    for route in app.router.routes:
        name = route.name.split(".", 1)[1]  # "<app>.<blueprint>.<handler>"
        if name in OPERATIONS:
            operation = dict(OPERATIONS[name])
            body = operation.pop("body", None)
            openapi.definition(**operation)(route.handler)
            if body is not None:
                # definition(body=...) would wrap the handler in a new function; the route keeps
                # the original, so the body is recorded on the original's operation directly.
                OperationStore()[route.handler].body(json_content(body), required=True)
            documented.add(name)
        else:
            openapi.exclude()(route.handler)
    missing = {name for name in set(OPERATIONS) - documented if not name.startswith("dev_login.")}
    if missing:
        raise RuntimeError(f"OpenAPI: documented routes do not exist: {sorted(missing)}")
    # AUTO_EXTEND is off (it would load every extension); load this one alone.
    extend = Extend(app, extensions=[OpenAPIExtension], built_in_extensions=False)
    extend.openapi.add_security_scheme("token", "apiKey", location="header", name="Authentication",
                                        description="`Basic <token>` from /user/auth-callback "
                                                    "(`Authorization: Bearer <token>` works too)")
