"""The queue as the API sees it, refreshed in the background: load shedding and the
cluster-wide job metrics, with no Redis call on the request path.

Every REFRESH_SECONDS each API process reads how long the oldest job not yet taken by any
worker has waited. Past QUEUE_MAX_WAIT_SECONDS the workers are behind: new prompts and skill
descriptions get 503 with Retry-After until they catch up (requests already admitted go on).
One API process at a time (a lease in Redis) also exports the cluster-wide job series, so a
sum over pods does not count them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket

from backend.errors import ServiceUnavailable
from backend.store.errors import StoreUnavailable
from backend.store.queue import JobQueue

log = logging.getLogger("backend.ops.queue")

REFRESH_SECONDS = 0.5
LEADER_LEASE_SECONDS = 10.0
SHED_MESSAGE = "The assistant is busy right now. Please try again in a few seconds."


class QueueWatch:
    def __init__(self, queue: JobQueue, max_wait_seconds: float) -> None:
        self.queue = queue
        self.max_wait = max_wait_seconds
        self.oldest_wait = 0.0  # seconds, as of the last refresh
        self.leader = False  # this process exports the cluster-wide series
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="queue-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def admit(self) -> None:
        """Raise 503 with Retry-After when the workers are too far behind to take new work."""
        if self.oldest_wait > self.max_wait:
            retry_after = max(1, math.ceil(self.oldest_wait - self.max_wait))
            raise ServiceUnavailable(SHED_MESSAGE, headers={"Retry-After": str(retry_after)})

    async def _run(self) -> None:
        ticks = 0
        while True:
            try:
                self.oldest_wait = await self.queue.oldest_wait()
                if ticks % round(LEADER_LEASE_SECONDS / (3 * REFRESH_SECONDS)) == 0:
                    self.leader = await self.queue.hold_lease("metrics-leader", self.holder, LEADER_LEASE_SECONDS)
            except StoreUnavailable:
                self.oldest_wait = 0.0  # a Redis outage answers 503 by itself; do not shed on stale data
            ticks += 1
            await asyncio.sleep(REFRESH_SECONDS)
