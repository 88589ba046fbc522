"""The store's clock: wall-clock milliseconds, as the records (users, chats, replies) keep them."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
