"""Session tokens: opaque to clients, only their SHA-256 is stored.

A token is ``<userId>.<43 url-safe chars>`` (256 random bits). The user id prefix lets the
session key share the user's hash tag, so checking a token and loading the user is one Lua
call on one Cluster slot. It reveals nothing the token's owner cannot already see.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from backend.store import keys


def new_token(user_id: int) -> str:
    return f"{user_id}.{secrets.token_urlsafe(32)}"


# ASCII only, bounded, no leading zero (one user id, one spelling, one hash slot).
TOKEN = re.compile(r"([1-9][0-9]{0,17})\.[A-Za-z0-9_-]{43}", re.ASCII)


def parse_token(token: str) -> tuple[int, str] | None:
    """(user id, session key) of a well-formed token, else None."""
    match = TOKEN.fullmatch(token)
    if match is None:
        return None
    digest = hashlib.sha256(token.encode()).hexdigest()
    return int(match[1]), keys.session(match[1], digest)
