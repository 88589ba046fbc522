"""What the /assistant routes answer, and the events of a reply's stream (in the OpenAPI document
as named schemas)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from backend.apidoc import Answer, Count, Id, Millis
from backend.sse import EVENT_ID_PATTERN

# `<updatedAt>-<chatId>`: the `next` of a page of chats (backend/assistant/routes.py, CURSOR).
CURSOR_PATTERN = "^(0|[1-9][0-9]{0,15})-([1-9][0-9]{0,17})$"


class CreateChatResponse(Answer):
    chatId: Id


class ChatSummary(Answer):
    chatId: Id
    title: str = Field(description="The start of the chat's first prompt (empty before one is sent).")
    createdAt: Millis
    updatedAt: Millis = Field(description="Last prompt or reply, Unix time in milliseconds.")


class ChatListResponse(Answer):
    """One page of the user's chats, most recently updated first."""

    chats: list[ChatSummary]
    next: str | None = Field(
        None, pattern=CURSOR_PATTERN, description="There are more: pass this as `before` for the next page."
    )


class MessageRole(StrEnum):
    """Who wrote a message: the user (a prompt) or the assistant (a reply)."""

    USER = "user"
    ASSISTANT = "assistant"


class ChatMessage(Answer):
    role: MessageRole
    content: str
    createdAt: Millis


class ReplyStatus(StrEnum):
    """The chat's newest reply: `queued` (waiting for the assistant), `streaming` (being written),
    `idle` (nothing in flight)."""

    QUEUED = "queued"
    STREAMING = "streaming"
    IDLE = "idle"


class ReplyState(Answer):
    """Whether a reply is in flight, so a client that reloads knows to resume it
    (`GET /assistant/chat/{chatId}/stream` with `Last-Event-ID: <lastEventId>`)."""

    status: ReplyStatus
    lastEventId: str | None = Field(
        None, pattern=EVENT_ID_PATTERN, description="Id of the newest reply's last event so far (left out when none)."
    )


class ChatResponse(Answer):
    chatId: Id
    createdAt: Millis
    messages: list[ChatMessage] = Field(description="Oldest first; a reply is added once it has ended.")
    reply: ReplyState


class StreamTicketResponse(Answer):
    ticket: str = Field(description="Pass as `?ticket=` to this chat's stream route, which then needs no header.")
    expiresIn: Count = Field(description="Seconds the ticket stays valid (EventSource may reconnect with it).")


class FinishReason(StrEnum):
    """Why a reply ended: `stop` (the assistant finished), `length` (it reached the longest reply
    allowed, `LLM_MAX_TOKENS`), `stopped` (the user stopped it)."""

    STOP = "stop"
    LENGTH = "length"
    STOPPED = "stopped"


class Usage(Answer):
    """Tokens the model reported for the reply."""

    promptTokens: Count
    completionTokens: Count


class ReplyEventData(Answer):
    """The JSON in an event's `data`. Every event carries `content` (append it); the final `done`
    event has `content: ""`, `finishReason` and, when the model reports it, `usage` (plus
    `stopped: true` after a stop); an `error` event has `content: ""` and `message`."""

    content: str
    finishReason: FinishReason | None = None
    usage: Usage | None = None
    stopped: bool | None = None
    message: str | None = Field(None, description="Only on `error`: what went wrong, for the user.")


class ReplyEventType(StrEnum):
    """An event's type: `message` for a chunk (no `event:` line is sent; EventSource's default),
    `done` on the last event of a finished reply, `error` on the last event of a failed one."""

    MESSAGE = "message"
    DONE = "done"
    ERROR = "error"


class ReplyEvent(Answer):
    """One Server-Sent Event of a reply, as an SSE parser (or EventSource) reads it: on the wire
    `id: <id>`, then `event: <event>` (on the final event only), then `data: <JSON>`, then a blank
    line. The stream starts with a `retry:` hint and sends `: ping` comments while waiting; after
    `done` or `error` it closes. A stream that closes without either was interrupted: resume it
    with the last `id` seen."""

    id: str = Field(
        pattern=EVENT_ID_PATTERN,
        description="`<generation>-<seq>`; increases within a reply. Send it back as `Last-Event-ID`.",
    )
    event: ReplyEventType = ReplyEventType.MESSAGE
    data: str = Field(
        description="One line of JSON: a `ReplyEventData`.",
        json_schema_extra={
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/ReplyEventData"},
        },
    )
