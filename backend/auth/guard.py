"""`@authenticated`: the route needs a live session; the user is on `request.ctx.user`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from backend.context import ApiRequest
from backend.errors import Unauthorized

Handler = Callable[..., Awaitable[Any]]


def bearer_token(request: ApiRequest) -> str:
    """The token of `Authentication: Basic <token>` (the spec) or `Authorization: Bearer <token>`."""
    header: str | None = request.headers.get("authentication") or request.headers.get("authorization")
    if not header:
        raise Unauthorized("Authentication required: send 'Authentication: Basic <token>'.")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() not in ("basic", "bearer") or not token or " " in token:
        raise Unauthorized("Malformed authentication header: expected 'Basic <token>'.")
    return token


def authenticated(handler: Handler) -> Handler:
    @wraps(handler)
    async def wrapper(request: ApiRequest, *args: Any, **kwargs: Any) -> Any:
        token = bearer_token(request)
        user = await request.app.ctx.store.users.authenticate(token)
        if user is None:
            raise Unauthorized("Invalid or expired token. Please log in again.")
        request.ctx.token = token
        request.ctx.user = user
        request.ctx.user_id = int(user["userId"])
        return await handler(request, *args, **kwargs)

    wrapper.authenticated = True  # type: ignore[attr-defined]  # backend/headers.py: no-store, Vary
    return wrapper


def authenticated_or_ticket(handler: Handler) -> Handler:
    """`@authenticated`, or instead a stream ticket of the route's chat in `?ticket=`
    (backend/store/tickets.py): a browser's EventSource can send no header. The ticket counts
    for that one chat's route and nowhere else; a ticket for another chat is no credential (401)."""
    by_session = authenticated(handler)

    @wraps(handler)
    async def wrapper(request: ApiRequest, *args: Any, **kwargs: Any) -> Any:
        tickets = request.get_args(keep_blank_values=True).getlist("ticket")
        if not tickets:
            return await by_session(request, *args, **kwargs)
        user_id = None
        if len(tickets) == 1:
            user_id = await request.app.ctx.store.tickets.redeem(tickets[0], kwargs["chat_id"])
        if user_id is None:
            raise Unauthorized("Invalid or expired stream ticket. Ask for a new one and reconnect.")
        request.ctx.user_id = user_id
        return await handler(request, *args, **kwargs)

    wrapper.authenticated = True  # type: ignore[attr-defined]  # backend/headers.py: no-store, Vary
    return wrapper
