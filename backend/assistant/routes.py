"""/assistant/chat routes: chats, sending a prompt (SSE), resuming, stopping."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Annotated, cast

from pydantic import BaseModel, Field, StringConstraints
from sanic import Blueprint
from sanic.response import HTTPResponse, json

from backend.admission import admitted, limit_rate
from backend.apidoc import INT64, EventStream, Json, MessageResponse, Param, operation, trimmed
from backend.assistant.models import (
    CURSOR_PATTERN,
    ChatListResponse,
    ChatResponse,
    CreateChatResponse,
    ReplyEvent,
    ReplyEventData,
    StreamTicketResponse,
)
from backend.assistant.relay import SSE_CONTENT_TYPE, SSE_HEADERS
from backend.auth.guard import authenticated, authenticated_or_ticket
from backend.context import ApiRequest
from backend.errors import ApiError, BadRequest, Conflict, Gone, NotFound, Unauthorized
from backend.parsing import parse_body
from backend.sse import EVENT_ID_PATTERN, parse_event_id
from backend.store import StoreUnavailable
from backend.store.chats import NoSuchUser, ReplyInFlight, StorageFull, TooManyChats
from backend.store.replies import ReplyStatus

bp = Blueprint("assistant", url_prefix="/assistant")

NO_CHAT = "No such chat."
LOG_EXPIRED = (
    "This reply can no longer be replayed (its stream expired); its text is in the chat's history: "
    "GET /assistant/chat/{chatId}."
)
QUEUE_FAILED = "The assistant could not take this message. Please send it again."

# GET /assistant/chat pages: `limit` 1..100; `before` is the `next` of an earlier page,
# "<updatedAt>-<chatId>" in ASCII digits with no leading zero, as the server writes it.
PAGE_DEFAULT = 50
PAGE_MAX = 100
LIMIT = re.compile(r"[1-9][0-9]{0,2}", re.ASCII)
CURSOR = re.compile(r"(0|[1-9][0-9]{0,15})-([1-9][0-9]{0,17})", re.ASCII)
STREAMS_RETRY_SECONDS = 5


class TooManyStreams(ApiError):
    status_code = 429

    def __init__(self) -> None:
        super().__init__(
            "Too many streams are open for this account. Close one and try again.",
            headers={"Retry-After": str(STREAMS_RETRY_SECONDS)},
        )


@contextlib.asynccontextmanager
async def open_stream(request: ApiRequest) -> AsyncIterator[None]:
    """Count one SSE stream of the caller (on every pod) while it is open; 429 over the cap.
    Enter it before the response starts."""
    streams = request.app.ctx.store.open_streams
    user_id = request.ctx.user_id
    stream_id = await streams.open(user_id)
    if stream_id is None:
        raise TooManyStreams
    try:
        yield
    finally:
        with contextlib.suppress(StoreUnavailable):  # not extended any more: it expires by itself
            await streams.close(user_id, stream_id)


def connection(request: ApiRequest) -> asyncio.Transport:
    """The client's connection, which the relay writes frames to: on Sanic's own server the
    asyncio transport (Sanic types it as a protocol that also covers ASGI, which is not used)."""
    return cast(asyncio.Transport, request.transport)


class SendMessageRequest(BaseModel):
    prompt: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=8000, strict=True),
        Field(**trimmed(1, 8000)),
    ]


# How the routes below are documented (backend/apidoc.py): the path parameter as the spec names it.
CHAT_ID = {"chat_id": Param("chatId", "The chat's id (`chatId` from POST /assistant/chat).")}
NO_SUCH_CHAT = "No such chat (or another user's)."
RESUME_FROM = Annotated[str, Field(pattern=f"^({EVENT_ID_PATTERN[1:-1]})?$")]  # an event id, or empty
REPLY_STREAM = EventStream(
    ReplyEvent,
    "The reply as Server-Sent Events (`text/event-stream; charset=utf-8`): one "
    "event per chunk, then `event: done` or `event: error`, then the stream closes.",
    also=(ReplyEventData,),
)


@bp.post("/chat")
@operation(
    "createChat",
    "Create a chat",
    responses={
        200: Json(
            CreateChatResponse,
            "The new chat.",
            links={
                operation_id: {"chatId": "$response.body#/chatId"}
                for operation_id in (
                    "getChat",
                    "sendMessage",
                    "streamReply",
                    "createStreamTicket",
                    "stopReply",
                    "deleteChat",
                )
            },
        ),
        409: "The user holds `CHATS_PER_USER_MAX` chats already: delete one first.",
    },
)
@authenticated
async def create_chat(request: ApiRequest) -> HTTPResponse:
    try:
        chat_id = await request.app.ctx.store.chats.create(request.ctx.user_id)
    except NoSuchUser:
        raise Unauthorized("Invalid or expired token. Please log in again.") from None
    except TooManyChats:
        limit = request.app.ctx.settings.CHATS_PER_USER_MAX
        raise Conflict(f"You have reached the limit of {limit} chats. Delete one to start another.") from None
    return json({"chatId": chat_id})


def _page(request: ApiRequest) -> tuple[int, tuple[int, int] | None]:
    """`limit` and the position of `before`, strictly parsed."""
    args = request.get_args(keep_blank_values=True)
    limit, before = args.get("limit"), args.get("before")
    if limit is not None and (not LIMIT.fullmatch(limit) or int(limit) > PAGE_MAX):
        raise BadRequest(f"Invalid query parameter 'limit': an integer from 1 to {PAGE_MAX}.")
    position = None
    if before is not None:
        match = CURSOR.fullmatch(before)
        if match is None:
            raise BadRequest("Invalid query parameter 'before': use the 'next' value of an earlier page.")
        position = (int(match[1]), int(match[2]))
    return (int(limit) if limit is not None else PAGE_DEFAULT), position


@bp.get("/chat")
@operation(
    "listChats",
    "The user's chats, most recently updated first, a page at a time",
    query=[
        Param(
            "limit",
            "Chats per page.",
            Annotated[int, Field(ge=1, le=PAGE_MAX, json_schema_extra=INT64)],
            default=PAGE_DEFAULT,
        ),
        Param("before", "The `next` of the previous page.", Annotated[str, Field(pattern=CURSOR_PATTERN)]),
    ],
    responses={200: ChatListResponse, 400: "`limit` is not an integer from 1 to 100, or `before` is not a `next`."},
)
@authenticated
async def list_chats(request: ApiRequest) -> HTTPResponse:
    limit, before = _page(request)
    store = request.app.ctx.store
    await store.retention.sweep_user(request.ctx.user_id)  # CHAT_RETENTION_DAYS: never list a chat past it
    chats, after = await store.chats.list(request.ctx.user_id, limit, before)
    if after is None:
        return json({"chats": chats})
    return json({"chats": chats, "next": f"{after[0]}-{after[1]}"})


@bp.get("/chat/<chat_id:int>")
@operation(
    "getChat",
    "A chat: its messages, and whether a reply is in flight (to resume after a reload)",
    path=CHAT_ID,
    responses={200: ChatResponse, 404: NO_SUCH_CHAT},
)
@authenticated
async def get_chat(request: ApiRequest, chat_id: int) -> HTTPResponse:
    chat = await request.app.ctx.store.chats.get(request.ctx.user_id, chat_id)
    if chat is None:
        raise NotFound(NO_CHAT)
    return json(chat)


@bp.delete("/chat/<chat_id:int>")
@operation(
    "deleteChat", "Delete a chat and its messages", path=CHAT_ID, responses={200: MessageResponse, 404: NO_SUCH_CHAT}
)
@authenticated
async def delete_chat(request: ApiRequest, chat_id: int) -> HTTPResponse:
    if not await request.app.ctx.store.chats.delete(request.ctx.user_id, chat_id):
        raise NotFound(NO_CHAT)
    return json({"message": "Chat deleted."})


@bp.post("/chat/<chat_id:int>", strict_slashes=False)
@operation(
    "sendMessage",
    "Send a prompt; the reply streams back as Server-Sent Events",
    description="The prompt is stored and the reply streams as it is written (the trailing slash is optional). "
    "A client that disconnects does not stop the reply: resume it with GET .../stream.",
    path=CHAT_ID,
    body=SendMessageRequest,
    responses={
        200: REPLY_STREAM,
        404: NO_SUCH_CHAT,
        409: "A reply is still being written in this chat: wait for it, or stop it; or the user's chats hold "
        "`USER_STORAGE_MAX_BYTES` of text already: delete chats first.",
        429: "Too many prompts this minute, or too many streams open (`STREAMS_PER_USER_MAX`).",
        503: "Redis is unavailable, or the assistant is far behind: nothing was stored; try again after "
        "`Retry-After` seconds.",
    },
)
@admitted("chat")  # shed from memory before the session's Redis call: a refusal stays fast when saturated
@authenticated
async def send_message(request: ApiRequest, chat_id: int) -> HTTPResponse | None:
    ctx = request.app.ctx
    user_id = request.ctx.user_id
    body = parse_body(request, SendMessageRequest)
    await limit_rate(ctx.store.limiter, "chat", str(user_id), ctx.settings.RATE_LIMIT_CHAT_PER_MINUTE)
    async with open_stream(request):  # before the prompt is stored: a 429 changes nothing
        try:
            gen = await ctx.store.chats.start_reply(user_id, chat_id, body.prompt)
        except ReplyInFlight:
            raise Conflict("A reply is still being written in this chat. Wait for it or stop it first.") from None
        except StorageFull:
            limit = ctx.settings.USER_STORAGE_MAX_BYTES
            raise Conflict(
                f"Your chats hold the most text allowed ({limit:,} bytes). Delete chats you no longer "
                "need to send more messages."
            ) from None
        if gen is None:
            raise NotFound(NO_CHAT)

        async def end_reply() -> None:  # the prompt is stored but no worker will see it: the chat takes prompts
            await ctx.store.replies.finish(user_id, chat_id, gen, "fail", message=QUEUE_FAILED)

        await request.ctx.admission.enqueue(
            ctx.store.queue, request.ctx.request_id, end_reply, userId=user_id, chatId=chat_id, gen=gen
        )
        response = await request.respond(content_type=SSE_CONTENT_TYPE, headers=SSE_HEADERS)
        await ctx.relay.stream(response, connection(request), user_id, chat_id, gen, 0)
    return None


async def reply_state(request: ApiRequest, chat_id: int) -> tuple[int, str, int]:
    """(generation, status, last seq) of the caller's chat's newest reply; 404 for no such chat."""
    gen, status, seq = await request.app.ctx.store.replies.state(request.ctx.user_id, chat_id)
    if gen is None:
        raise NotFound(NO_CHAT)
    return gen, status, seq


def _last_event_id(request: ApiRequest) -> str:
    return (request.headers.get("last-event-id") or request.args.get("lastEventId") or "").strip()


@bp.get("/chat/<chat_id:int>/stream")
@operation(
    "streamReply",
    "Follow the chat's newest reply: replay it after an event id, then live until it ends",
    description="Replays the newest reply after `Last-Event-ID` (the whole reply without one), then follows it "
    "live, on any pod, with no gap and no duplicate. A finished reply is replayed and the stream "
    "closed, for `REPLY_LOG_TTL_SECONDS` after it ended (then 410: the text is in the chat's history). "
    "A browser's EventSource passes a stream ticket as `?ticket=` instead of the header, and "
    "sends `Last-Event-ID` by itself when it reconnects.",
    path=CHAT_ID,
    security=("ticket",),
    headers=[
        Param(
            "Last-Event-ID",
            "Resume after this event (the `id` of the last event received); absent or empty: the whole reply.",
            RESUME_FROM,
            example="1-42",
        )
    ],
    query=[
        Param("lastEventId", "The same as the `Last-Event-ID` header, for clients that cannot set it.", RESUME_FROM),
        Param(
            "ticket", "A stream ticket of this chat (POST .../stream-ticket), instead of the `Authentication` header."
        ),
    ],
    responses={
        200: REPLY_STREAM,
        400: "The event id is not one of this chat's newest reply.",
        401: "No valid token, or the ticket is unknown, expired, or for another chat.",
        404: "No such chat (or another user's), or the chat has no reply yet.",
        410: "The reply is finished and its replay log expired (`REPLY_LOG_TTL_SECONDS`): its text is in the "
        "chat's history (GET /assistant/chat/{chatId}).",
        429: "Too many stream opens this minute, or too many streams open (`STREAMS_PER_USER_MAX`).",
    },
)
@authenticated_or_ticket  # `?ticket=` for a browser's EventSource, which can send no header
async def resume(request: ApiRequest, chat_id: int) -> HTTPResponse | None:
    ctx = request.app.ctx
    user_id = request.ctx.user_id
    gen, status, seq = await reply_state(request, chat_id)
    if gen == 0:
        raise NotFound("This chat has no reply yet.")
    if status == ReplyStatus.IDLE and not await ctx.store.replies.log_exists(user_id, chat_id, gen):
        raise Gone(LOG_EXPIRED.format(chatId=chat_id))
    after = 0
    last_event_id = _last_event_id(request)
    if last_event_id:
        event = parse_event_id(last_event_id)
        if event is None or event[0] != gen or event[1] > seq:
            raise BadRequest("Last-Event-ID is not an event of this chat's newest reply.")
        after = event[1]
    await limit_rate(ctx.store.limiter, "stream", str(user_id), ctx.settings.RATE_LIMIT_STREAM_PER_MINUTE)
    async with open_stream(request):
        response = await request.respond(content_type=SSE_CONTENT_TYPE, headers=SSE_HEADERS)
        await ctx.relay.stream(response, connection(request), user_id, chat_id, gen, after)
    return None


@bp.post("/chat/<chat_id:int>/stream-ticket")
@operation(
    "createStreamTicket",
    "A short-lived ticket for this chat's stream, for a browser's EventSource",
    description="`GET /assistant/chat/{chatId}/stream?ticket=<ticket>` then needs no header. The ticket is good "
    "for that chat's stream only (no login anywhere else), for `expiresIn` seconds, and ends with the "
    "session.",
    path=CHAT_ID,
    responses={200: StreamTicketResponse, 404: NO_SUCH_CHAT, 429: "Too many tickets this minute."},
)
@authenticated
async def stream_ticket(request: ApiRequest, chat_id: int) -> HTTPResponse:
    """A short-lived credential for this chat's stream only: `GET .../stream?ticket=` (EventSource)."""
    ctx = request.app.ctx
    user_id = request.ctx.user_id
    # Tickets count against the stream-open budget's rate (their own bucket): each lives in Redis a while.
    await limit_rate(ctx.store.limiter, "ticket", str(user_id), ctx.settings.RATE_LIMIT_STREAM_PER_MINUTE)
    await reply_state(request, chat_id)  # 404 for a chat that is not the caller's
    ticket = await ctx.store.tickets.issue(user_id, chat_id, request.ctx.token)
    return json({"ticket": ticket, "expiresIn": ctx.store.tickets.ttl})


@bp.post("/chat/<chat_id:int>/stop")
@operation(
    "stopReply",
    "Stop the reply being written; the text so far is saved",
    path=CHAT_ID,
    responses={200: MessageResponse, 404: NO_SUCH_CHAT, 409: "No reply is being written in this chat."},
)
@authenticated
async def stop(request: ApiRequest, chat_id: int) -> HTTPResponse:
    ctx = request.app.ctx
    user_id = request.ctx.user_id
    gen, status, _ = await reply_state(request, chat_id)
    if status == ReplyStatus.IDLE or not await ctx.store.replies.finish(user_id, chat_id, gen, "stopped"):
        raise Conflict("No reply is being written in this chat.")
    await ctx.store.control.stop_reply(user_id, chat_id, gen)
    return json({"message": "Reply stopped."})
