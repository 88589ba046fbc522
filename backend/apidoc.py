"""What the OpenAPI document says about a route, written next to the route.

    @bp.get("/chat/<chat_id:int>")
    @operation("getChat", "A chat with its messages", path={"chat_id": Param("chatId", "The chat's id")},
               responses={200: ChatResponse, 404: "No such chat"})
    @authenticated
    async def get_chat(request, chat_id): ...

`@operation` only records an `Operation` on the handler (no wrapper: nothing runs per request).
`backend/ops/openapi.py` builds the document from `app.router.routes`: the path, the method, the
path parameters' types and whether the route needs a token come from the route itself; a body is
the pydantic model the route parses it with; an answer is a model (`Answer`, extra fields
forbidden) that tests/test_openapi.py holds the route's real answers to, and Schemathesis too,
through the document. What every route of a kind can answer is added there (401 on authenticated
routes, 400 and 413 with a body, 503 where Redis is used, 405 with `Allow`, 431), so a route
states only its own cases. A route with no `@operation` (nor `@hidden`) fails tests/test_openapi.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Handler = TypeVar("Handler", bound=Callable[..., Any])

ATTRIBUTE = "__openapi__"

# Every integer the API sends or takes is 64-bit: ids are positive, times are Unix milliseconds.
INT64: dict[str, Any] = {"format": "int64"}
Id = Annotated[int, Field(ge=1, json_schema_extra=INT64)]
Millis = Annotated[int, Field(ge=0, json_schema_extra=INT64)]
Count = Annotated[int, Field(ge=0, json_schema_extra=INT64)]


class Answer(BaseModel):
    """Base of the JSON bodies the API sends: exactly these fields (the document says
    `additionalProperties: false`, so Schemathesis and the tests catch a field the model lacks);
    an optional field is left out when it has no value, never null."""

    model_config = ConfigDict(extra="forbid")


class ErrorResponse(Answer):
    """Every answer with a status >= 400."""

    message: str = Field(description="What went wrong, in words that can be shown to the user.")


class MessageResponse(Answer):
    """A command that succeeded."""

    message: str = Field(description="What was done, in words that can be shown to the user.")


def trimmed(minimum: int, maximum: int) -> dict[str, Any]:
    """`Field` arguments of a text the server trims before it counts it (PRODUCT.md: length limits
    count the trimmed text, and the document says so). The pattern asks for one character that is
    not whitespace as pydantic's `strip_whitespace` sees it (Unicode White_Space; ECMAScript's `\\s`
    also counts U+FEFF, Python's `str.isspace` also U+001C-U+001F)."""
    return {
        "description": (
            f"Leading and trailing whitespace is trimmed; the trimmed text has {minimum:,} to {maximum:,} "
            "characters (a text of whitespace only is refused)."
        ),
        "json_schema_extra": {"pattern": NOT_ONLY_WHITESPACE},
    }


# One character outside Unicode White_Space (what pydantic-core trims), written for any regex dialect.
NOT_ONLY_WHITESPACE = "[^\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"


@dataclass(frozen=True)
class Param:
    """A parameter. `type` is any annotation pydantic can describe (default: a string).
    For a path parameter the name is what the document calls it (the route's own name and type
    come from the route)."""

    name: str
    description: str
    type: Any = str
    required: bool = False
    default: Any = None
    example: Any = None


@dataclass(frozen=True)
class Json:
    """A JSON answer with a description other than the model's, headers, or links (operationId ->
    {parameter: runtime expression}, e.g. `{"getChat": {"chatId": "$response.body#/chatId"}}`)."""

    model: type[BaseModel]
    description: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> description
    links: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class EventStream:
    """A `text/event-stream` answer. `event` is the model of one event as an SSE parser reads it
    (`id`, `event`, `data` as a string): the media type's schema, as Schemathesis and OpenAPI 3.2's
    `itemSchema` read it. `also`: models it refers to (the JSON in `data`)."""

    event: type[BaseModel]
    description: str
    also: tuple[type[BaseModel], ...] = ()


@dataclass(frozen=True)
class Other:
    """An answer that is not JSON: HTML, text, a redirect."""

    description: str
    media_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


Response = type[BaseModel] | Json | EventStream | Other | str  # str: an error with this description


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    description: str = ""
    tag: str | None = None
    path: Mapping[str, Param] = field(default_factory=dict)  # the route's parameter name -> how it is documented
    query: tuple[Param, ...] = ()
    headers: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    form: type[BaseModel] | None = None
    responses: Mapping[int, Response] = field(default_factory=dict)
    store: bool = True  # uses Redis: may answer 503
    security: tuple[str, ...] | None = None  # schemes beyond the route's own (None: from the route)


def operation(
    operation_id: str,
    summary: str,
    *,
    description: str = "",
    tag: str | None = None,
    path: Mapping[str, Param] | None = None,
    query: tuple[Param, ...] | list[Param] = (),
    headers: tuple[Param, ...] | list[Param] = (),
    body: type[BaseModel] | None = None,
    form: type[BaseModel] | None = None,
    responses: Mapping[int, Response] | None = None,
    store: bool = True,
    security: tuple[str, ...] | None = None,
) -> Callable[[Handler], Handler]:
    """Document the route of the decorated handler (put it right under the route decorator)."""
    documented = Operation(
        operation_id=operation_id,
        summary=summary,
        description=description,
        tag=tag,
        path=dict(path or {}),
        query=tuple(query),
        headers=tuple(headers),
        body=body,
        form=form,
        responses=dict(responses or {}),
        store=store,
        security=security,
    )

    def mark(handler: Handler) -> Handler:
        setattr(handler, ATTRIBUTE, documented)
        return handler

    return mark


HIDDEN = "hidden"


def hidden(handler: Handler) -> Handler:
    """Leave the route out of the document on purpose (the docs page and its assets, static files)."""
    setattr(handler, ATTRIBUTE, HIDDEN)
    return handler


def documentation(handler: Any) -> Operation | Literal["hidden"] | None:
    """The handler's `Operation`, HIDDEN, or None when it has no documentation."""
    found = getattr(handler, ATTRIBUTE, None)
    if found is None and hasattr(handler, "func"):  # functools.partial (Sanic's static files)
        found = getattr(handler.func, ATTRIBUTE, None)
    return found
