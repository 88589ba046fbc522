"""Admission: whether the API takes a new job (a prompt, a skill description), and taking it.

Both job routes go through here, in this order:

1. `@admitted(job_type)`: load shedding, decided from memory before the session is looked up
   (no Redis call), so a refusal stays fast while the box is saturated. A request with no
   credentials at all is still 401 first; a refusal says only that the service is busy, which
   `/metrics` (`ai_api_shedding`) tells anyone anyway.
2. `limit_rate()`: the caller's rate limit (Redis, GCRA), after the session check: it is per user.
3. `Admission.enqueue()`: the job into the queue; when that fails, the state change the route
   made is undone (a prompt's reply ended, an interview marked failed), so nothing waits for a
   job no worker will see.

Load shedding (README, Load shedding). Every REFRESH_SECONDS each API process reads what waits
for the workers (the oldest waiting job's age, how many jobs wait) and the workers' own reports
of their slots (lua/read_capacity.lua). New jobs get 503 with Retry-After while

- the oldest job not yet taken has waited past QUEUE_MAX_WAIT_SECONDS (the workers are behind), or
- for a prompt: no worker slot is free for it (the slots the workers report, less the jobs
  they run and the prompts waiting or admitted by this process since the last refresh), and
  the first running job should end later than QUEUE_MAX_WAIT_SECONDS from now, counting the
  jobs queued ahead at the workers' pace (from the jobs' average length). Such a prompt would
  wait longer than the setting allows: it is refused now, not after it has waited. With no
  reports (no worker, or none has finished a job yet) only the first rule applies.

Requests already admitted go on. One API process at a time (a lease in Redis) also exports the
cluster-wide job series (backend/ops/metrics.py), so a sum over pods does not count them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from functools import wraps
from typing import Any, NoReturn

from backend.auth.guard import Handler, bearer_token
from backend.context import ApiRequest
from backend.errors import ServiceUnavailable, TooManyRequests
from backend.store import StoreUnavailable
from backend.store.queue import Backlog, Capacity, JobQueue, JobType
from backend.store.ratelimit import RateLimiter

log = logging.getLogger("backend.admission")

REFRESH_SECONDS = 0.25
LEADER_LEASE_SECONDS = 10.0
SHED_MESSAGE = "The assistant is busy right now. Please try again in a few seconds."

IDLE = Backlog(0.0, {}, 0, Capacity(0, None, None))
COUNTED = frozenset({"chat"})  # only prompts count against the free worker slots


def refuse(beyond: float) -> NoReturn:
    """503: the job would wait `beyond` seconds more than allowed; try again about then."""
    raise ServiceUnavailable(SHED_MESSAGE, headers={"Retry-After": str(max(1, math.ceil(beyond)))})


async def limit_rate(limiter: RateLimiter, name: str, who: str, per_minute: int) -> None:
    """429 with Retry-After when `who` is past `per_minute` calls of `name` (the store's limiter)."""
    wait = await limiter.retry_after(name, who, per_minute)
    if wait:
        raise TooManyRequests(wait)


class Admission:
    """One admitted job, from admission until its job is queued (or the request ends)."""

    __slots__ = ("job_type", "open", "watch")

    def __init__(self, watch: QueueWatch, job_type: JobType) -> None:
        self.watch = watch
        self.job_type = job_type
        self.open = job_type in COUNTED
        if self.open:
            watch.in_flight += 1

    async def enqueue(
        self, queue: JobQueue, request_id: str, undo: Callable[[], Awaitable[object]], **fields: int
    ) -> None:
        """Queue the job; when Redis cannot take it, `undo()` the route's state change (best
        effort: Redis may be down for that too) and let the 503 through."""
        try:
            await queue.enqueue(self.job_type, request_id, **fields)
        except StoreUnavailable:
            with contextlib.suppress(StoreUnavailable):
                await undo()
            raise
        self.enqueued()

    def enqueued(self) -> None:
        """Its job is in the stream: the next refresh sees it."""
        if self.open:
            self.close()
            self.watch.recent.append(asyncio.get_running_loop().time())

    def close(self) -> None:
        if self.open:
            self.open = False
            self.watch.in_flight -= 1


class QueueWatch:
    """The queue as this API process last read it (in the background), and the shedding rules."""

    def __init__(self, queue: JobQueue, max_wait_seconds: float) -> None:
        self.queue = queue
        self.max_wait = max_wait_seconds
        self.backlog = IDLE  # as of the last refresh
        self.refreshed_at = 0.0  # loop time of the last refresh
        self.in_flight = 0  # prompts this process admitted whose job is not queued yet
        self.recent: list[float] = []  # when this process queued a prompt's job, since the last read
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

    @property
    def oldest_wait(self) -> float:
        return self.backlog.oldest_wait

    @property
    def shedding(self) -> bool:
        """Are new prompts refused now (either rule)?"""
        return self.refusal("chat") is not None

    @property
    def free_slots(self) -> int:
        """Worker slots no job holds or waits for, as of the last refresh (negative: a queue)."""
        backlog = self.backlog
        return backlog.capacity.slots - backlog.running - backlog.waiting.get("chat", 0)

    def prompt_wait(self) -> float | None:
        """Seconds a prompt admitted now should wait for a worker slot (None: cannot tell)."""
        capacity = self.backlog.capacity
        if capacity.slots == 0:
            return None
        queued = self.in_flight + len(self.recent) - self.free_slots  # jobs ahead of this one with no slot
        if queued < 0:
            return 0.0
        job = capacity.job_seconds
        if capacity.next_end_in is not None:
            first = max(0.0, capacity.next_end_in - (asyncio.get_running_loop().time() - self.refreshed_at))
        elif job is not None:
            first = job  # every running job just started
        else:
            return None
        return first + (queued * job / capacity.slots if job else 0.0)

    def refusal(self, job_type: str) -> float | None:
        """Seconds past QUEUE_MAX_WAIT_SECONDS a new job of `job_type` would wait (None: admit it)."""
        if self.oldest_wait > self.max_wait:
            return self.oldest_wait - self.max_wait
        if job_type in COUNTED:
            wait = self.prompt_wait()
            if wait is not None and wait > self.max_wait:
                return wait - self.max_wait
        return None

    @contextlib.contextmanager
    def admission(self, job_type: JobType) -> Iterator[Admission]:
        """Admit a new job (503 with Retry-After when it would wait longer than
        QUEUE_MAX_WAIT_SECONDS); until the refresh after its `enqueued()` sees it in Redis, a
        prompt counts against the free slots here, so a burst between two refreshes is not
        admitted twice over."""
        beyond = self.refusal(job_type)
        if beyond is not None:
            refuse(beyond)
        admission = Admission(self, job_type)
        try:
            yield admission
        finally:
            admission.close()

    async def _run(self) -> None:
        ticks = 0
        while True:
            try:
                read_at = asyncio.get_running_loop().time()
                self.backlog = await self.queue.backlog()
                self.refreshed_at = asyncio.get_running_loop().time()
                self.recent = [at for at in self.recent if at >= read_at]  # older ones are in what was read
                if ticks % round(LEADER_LEASE_SECONDS / (3 * REFRESH_SECONDS)) == 0:
                    self.leader = await self.queue.hold_lease("metrics-leader", self.holder, LEADER_LEASE_SECONDS)
            except StoreUnavailable:
                self.backlog, self.recent = IDLE, []  # a Redis outage answers 503 by itself; do not shed on stale data
            except Exception:
                log.exception("reading the queue failed")
                self.backlog, self.recent = IDLE, []
            ticks += 1
            await asyncio.sleep(REFRESH_SECONDS)


def admitted(job_type: JobType) -> Callable[[Handler], Handler]:
    """Route decorator, above `@authenticated`: shed before the session is looked up, and hold
    the admission (`request.ctx.admission`) while the handler runs."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(request: ApiRequest, *args: Any, **kwargs: Any) -> Any:
            bearer_token(request)  # no credentials at all: 401 comes first, as on every route
            with request.app.ctx.queue_watch.admission(job_type) as admission:
                request.ctx.admission = admission
                return await handler(request, *args, **kwargs)

        return wrapper

    return decorate
