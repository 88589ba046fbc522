"""Session tokens: opaque to clients, only their SHA-256 is stored.

A token is ``<userId>.<43 url-safe chars>`` (256 random bits). The user id prefix lets the
session key share the user's hash tag, so checking a token and loading the user is one Lua
call on one Cluster slot. It reveals nothing the token's owner cannot already see.
"""

from __future__ import annotations

import hashlib
import secrets

from backend.store import keys


def new_token(user_id: int) -> str:
    return f"{user_id}.{secrets.token_urlsafe(32)}"


def parse_token(token: str) -> tuple[int, str] | None:
    """(user id, session key) of a well-formed token, else None."""
    user_part, dot, secret = token.partition(".")
    if not dot or not user_part.isdigit() or len(secret) < 43 or len(user_part) > 18:
        return None
    digest = hashlib.sha256(token.encode()).hexdigest()
    return int(user_part), keys.session(user_part, digest)
