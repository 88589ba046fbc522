"""The store's own errors: what callers above it (routes, relay, workers) may catch.

Every way Redis can fail to serve a call (unreachable, stalled past REDIS_TIMEOUT_SECONDS, or
answering LOADING, READONLY, NOAUTH, WRONGPASS, OOM, MASTERDOWN, CLUSTERDOWN, TRYAGAIN...) is
raised as `StoreUnavailable`; backend/errors.py turns it into a 503.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisClusterException, RedisError

from backend.backoff import Backoff

log = logging.getLogger("backend.store")

# What redis-py, the wire connections and the socket layer raise when Redis cannot serve a call.
REDIS_FAILURES = (RedisError, RedisClusterException, ConnectionError, OSError, TimeoutError)


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """Redis could not serve the call; retrying later may succeed."""


Cls = TypeVar("Cls", bound=type)
T = TypeVar("T")


def unavailable(error: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"{type(error).__name__}: {error}")


def cancelling() -> bool:
    """Whether the running task is being cancelled. Python 3.11's asyncio.timeout() turns a
    cancellation that meets its deadline into TimeoutError: such a task must still end, not see a
    Redis failure that its loop would catch and carry on from (a shutdown that never finishes)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def retried(call: Callable[[], Awaitable[T]], seconds: float) -> T:
    """`call()`, tried again with backoff and jitter while Redis cannot serve it (a stall, a
    failover), for up to `seconds`; then StoreUnavailable. Only for calls that are safe to repeat."""
    deadline = time.monotonic() + seconds
    backoff = Backoff(0.05, cap=1.0)
    while True:
        try:
            return await call()
        except (StoreUnavailable, *REDIS_FAILURES) as error:
            if cancelling():
                raise asyncio.CancelledError from error
            wait = backoff.next()
            if time.monotonic() + wait > deadline:
                raise error if isinstance(error, StoreUnavailable) else unavailable(error) from error
            await asyncio.sleep(wait)


def _translate(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except REDIS_FAILURES as error:
            if cancelling():
                raise asyncio.CancelledError from error
            raise unavailable(error) from error

    return wrapper


def translate_errors(cls: Cls) -> Cls:
    """Class decorator: the public coroutine methods of a store class raise StoreUnavailable
    instead of the Redis client's exceptions."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, _translate(member))
    return cls
