"""A Redis failure seen by a task that is being cancelled ends the task (CancelledError), never a
StoreUnavailable its loop would catch and carry on from."""

from __future__ import annotations

import asyncio

import pytest

from backend.redis.errors import StoreUnavailable, translate_errors


@translate_errors
class Calls:
    async def stall(self, started: asyncio.Event) -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:  # as asyncio.timeout() may do in 3.11: the cancel as a timeout
            raise TimeoutError("deadline") from None

    async def fail(self) -> None:
        raise TimeoutError("deadline")


async def test_a_failure_while_cancelled_is_a_cancellation() -> None:
    started = asyncio.Event()
    task = asyncio.create_task(Calls().stall(started))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_failure_otherwise_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        await Calls().fail()
