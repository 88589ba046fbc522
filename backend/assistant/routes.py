"""/assistant/chat routes: chats, sending a prompt (SSE), resuming, stopping."""

from __future__ import annotations

import contextlib
from typing import Annotated

from pydantic import BaseModel, StringConstraints
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from backend.assistant.relay import SSE_HEADERS, parse_event_id
from backend.auth.guard import authenticated
from backend.errors import BadRequest, Conflict, NotFound, TooManyRequests
from backend.parsing import parse_body
from backend.store.chats import ReplyInFlight
from backend.store.errors import StoreUnavailable

bp = Blueprint("assistant", url_prefix="/assistant")

NO_CHAT = "No such chat."
QUEUE_FAILED = "The assistant could not take this message. Please send it again."


class SendMessageRequest(BaseModel):
    prompt: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=8000, strict=True)]


@bp.post("/chat")
@authenticated
async def create_chat(request: Request) -> HTTPResponse:
    chat_id = await request.app.ctx.store.chats.create(request.ctx.user_id)
    return json({"chatId": chat_id})


@bp.get("/chat")
@authenticated
async def list_chats(request: Request) -> HTTPResponse:
    return json({"chats": await request.app.ctx.store.chats.list(request.ctx.user_id)})


@bp.get("/chat/<chat_id:int>")
@authenticated
async def get_chat(request: Request, chat_id: int) -> HTTPResponse:
    chat = await request.app.ctx.store.chats.get(request.ctx.user_id, chat_id)
    if chat is None:
        raise NotFound(NO_CHAT)
    return json(chat)


@bp.delete("/chat/<chat_id:int>")
@authenticated
async def delete_chat(request: Request, chat_id: int) -> HTTPResponse:
    if not await request.app.ctx.store.chats.delete(request.ctx.user_id, chat_id):
        raise NotFound(NO_CHAT)
    return json({"message": "Chat deleted."})


@bp.post("/chat/<chat_id:int>", strict_slashes=False)
@authenticated
async def send_message(request: Request, chat_id: int) -> HTTPResponse | None:
    ctx = request.app.ctx
    user_id = request.ctx.user_id
    body = parse_body(request, SendMessageRequest)
    wait = await ctx.store.limiter.retry_after("chat", str(user_id), ctx.settings.RATE_LIMIT_CHAT_PER_MINUTE)
    if wait:
        raise TooManyRequests(wait)
    try:
        gen = await ctx.store.chats.start_reply(user_id, chat_id, body.prompt)
    except ReplyInFlight:
        raise Conflict("A reply is still being written in this chat. Wait for it or stop it first.") from None
    if gen is None:
        raise NotFound(NO_CHAT)
    try:
        await ctx.store.queue.enqueue("chat", request.ctx.request_id, userId=user_id, chatId=chat_id, gen=gen)
    except StoreUnavailable:
        # The prompt is stored but no worker will see it: end the reply so the chat takes prompts.
        with contextlib.suppress(StoreUnavailable):
            await ctx.store.replies.finish(user_id, chat_id, gen, "fail", message=QUEUE_FAILED)
        raise
    response = await request.respond(content_type="text/event-stream", headers=SSE_HEADERS)
    await ctx.relay.stream(response, request.transport, user_id, chat_id, gen, 0)
    return None


def _last_event_id(request: Request) -> str:
    return (request.headers.get("last-event-id") or request.args.get("lastEventId") or "").strip()


@bp.get("/chat/<chat_id:int>/stream")
@authenticated
async def resume(request: Request, chat_id: int) -> HTTPResponse | None:
    ctx = request.app.ctx
    user_id = request.ctx.user_id
    gen, _, seq = await ctx.store.replies.state(user_id, chat_id)
    if gen is None:
        raise NotFound(NO_CHAT)
    if gen == 0:
        raise NotFound("This chat has no reply yet.")
    after = 0
    last_event_id = _last_event_id(request)
    if last_event_id:
        event = parse_event_id(last_event_id)
        if event is None or event[0] != gen or event[1] > seq:
            raise BadRequest("Last-Event-ID is not an event of this chat's newest reply.")
        after = event[1]
    response = await request.respond(content_type="text/event-stream", headers=SSE_HEADERS)
    await ctx.relay.stream(response, request.transport, user_id, chat_id, gen, after)
    return None


@bp.post("/chat/<chat_id:int>/stop")
@authenticated
async def stop(request: Request, chat_id: int) -> HTTPResponse:
    ctx = request.app.ctx
    user_id = request.ctx.user_id
    gen, status, _ = await ctx.store.replies.state(user_id, chat_id)
    if gen is None:
        raise NotFound(NO_CHAT)
    if status == "idle" or not await ctx.store.replies.finish(user_id, chat_id, gen, "stopped"):
        raise Conflict("No reply is being written in this chat.")
    await ctx.store.control.stop_reply(user_id, chat_id, gen)
    return json({"message": "Reply stopped."})
