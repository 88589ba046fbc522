"""Stream tickets: short-lived credentials for one chat's stream, for a browser's EventSource
(which can send neither a header nor a body).

A ticket is ``st.<userId>.<43 url-safe chars>`` (256 random bits); Redis keeps only its SHA-256,
under the user's hash tag, for `TICKET_TTL_SECONDS`, with the chat it is for and the session it
was issued from. It is good for that chat's stream only, as often as needed within its lifetime
(EventSource reconnects with the same URL), and dies with its session (logout). It never
matches the token pattern (backend/store/tokens.py), so it is no login anywhere else.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import cast

from backend.redis.clients import AnyRedis
from backend.redis.errors import translate_errors
from backend.redis.scripts import Scripts
from backend.store import keys
from backend.store.tokens import parse_token

TICKET_TTL_SECONDS = 60

# ASCII only, bounded, no leading zero (one user id, one spelling, one hash slot).
TICKET = re.compile(r"st\.([1-9][0-9]{0,17})\.[A-Za-z0-9_-]{43}", re.ASCII)


def parse_ticket(ticket: str) -> tuple[int, str] | None:
    """(user id, ticket key) of a well-formed ticket, else None."""
    match = TICKET.fullmatch(ticket)
    if match is None:
        return None
    return int(match[1]), keys.stream_ticket(match[1], hashlib.sha256(ticket.encode()).hexdigest())


@translate_errors
class StreamTickets:
    def __init__(self, redis: AnyRedis, scripts: Scripts, ttl: int = TICKET_TTL_SECONDS) -> None:
        self.redis = redis
        self.scripts = scripts
        self.ttl = ttl

    async def issue(self, user_id: int, chat_id: int, token: str) -> str:
        """A new ticket for the chat's stream, bound to the session of `token`."""
        session = parse_token(token)
        if session is None or session[0] != user_id:
            raise ValueError("a ticket is issued from the user's own session token")
        ticket = f"st.{user_id}.{secrets.token_urlsafe(32)}"
        parsed = parse_ticket(ticket)
        assert parsed is not None  # the ticket was formed just above
        key = parsed[1]
        session_digest = hashlib.sha256(token.encode()).hexdigest()  # as keys.session() of the token has it
        await self.scripts.issue_ticket(
            keys=[key, keys.stream_tickets(user_id)],
            args=[key.rpartition(":")[2], f"{chat_id}:{session_digest}", self.ttl * 1000],
        )
        return ticket

    async def redeem(self, ticket: str, chat_id: int) -> int | None:
        """The user id when `ticket` is a live ticket for this chat whose session is still open,
        else None. The ticket stays valid (a reconnect uses it again) until it expires."""
        parsed = parse_ticket(ticket)
        if parsed is None:
            return None
        user_id, key = parsed
        stored = cast(str | None, await self.redis.get(key))  # the clients decode (decode_responses)
        if stored is None:
            return None
        chat, _, session_digest = stored.partition(":")
        if chat != str(chat_id):
            return None
        if not await self.redis.exists(keys.session(user_id, session_digest)):
            return None  # logged out since: the ticket went with the session
        return user_id
