"""Exponential backoff with equal jitter: the one every retry loop of the API, the store's
client and the workers uses.

The n-th wait in a row is drawn from [d/2, d] with d = min(cap, base * 2**(n-1)): it doubles,
never drops below half its nominal value (a Redis that is down is not hammered) and never
lines up across processes (no thundering herd when it is back). The same rule as redis-py's
EqualJitterBackoff, kept here because the workers and the API may not import redis-py.
"""

from __future__ import annotations

import asyncio
import math
import random


def equal_jitter(base: float, failures: int, cap: float = math.inf) -> float:
    """Seconds to wait after `failures` failures in a row (1 for the first)."""
    nominal = min(cap, base * 2 ** max(0, failures - 1))
    return random.uniform(nominal / 2, nominal)


class Backoff:
    """The waits of one retry loop: `next()` after each failure, `reset()` after a success."""

    __slots__ = ("base", "cap", "failures")

    def __init__(self, base: float, cap: float = math.inf) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        return equal_jitter(self.base, self.failures, self.cap)

    def reset(self) -> None:
        self.failures = 0

    async def sleep(self) -> None:
        await asyncio.sleep(self.next())
