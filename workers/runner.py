"""The job runner: a consumer of the job queue (backend/store/queue.py).

- Blocking reads (no polling sleeps), at most WORKER_CONCURRENCY jobs at once.
- Running jobs are kept claimed every lease/3 (their idle time is the heartbeat); a job idle
  for JOB_LEASE_SECONDS belonged to a dead worker and is taken over.
- Attempts are counted in Redis (so they survive a worker's death); a failed attempt is retried
  with exponential backoff up to JOB_MAX_ATTEMPTS, then the handler's give_up() runs. A job whose
  give_up() itself fails is acknowledged anyway: it is logged, not looped.
- Each loop survives any Redis failure (a stall, a failover, a migration): it logs, backs off
  with jitter and goes on; the store's clients follow the topology.
- SIGTERM: stop reading, let running jobs finish within the grace period, hand back the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from backend.store.errors import StoreUnavailable
from backend.store.queue import Job, JobQueue
from config.settings import Settings
from workers import metrics

log = logging.getLogger("workers.runner")


class JobHandler(Protocol):
    async def run(self, job: Job) -> None:
        """Do the job; raising means the attempt failed and may be retried."""

    async def give_up(self, job: Job, error: BaseException | None) -> None:
        """The last attempt failed: record the failure where the user will see it."""


class Runner:
    def __init__(self, queue: JobQueue, settings: Settings, handlers: Mapping[str, JobHandler], consumer: str) -> None:
        self.queue = queue
        self.handlers = handlers
        self.consumer = consumer
        self.concurrency = settings.WORKER_CONCURRENCY
        self.lease_ms = int(settings.JOB_LEASE_SECONDS * 1000)
        self.max_attempts = settings.JOB_MAX_ATTEMPTS
        self.retry_base = settings.JOB_RETRY_BASE_SECONDS
        self.grace = settings.WORKER_SHUTDOWN_GRACE_SECONDS
        self.block_ms = 5000
        self.running: dict[str, Job] = {}
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        self._stopping.set()
        self._slot_free.set()

    async def run(self) -> None:
        """Take jobs until request_stop(), then drain."""
        await self._wait_for_redis()
        loops = [asyncio.create_task(self._forever(name, step), name=name) for name, step in (
            ("read", self._read), ("reclaim", self._reclaim), ("keep-claimed", self._keep_claimed))]
        await self._stopping.wait()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await self._drain()

    async def _wait_for_redis(self) -> None:
        delay = 0.1
        while not self._stopping.is_set():
            try:
                await self.queue.ensure_group()
                return
            except StoreUnavailable as error:
                log.warning("redis unavailable, waiting", extra={"error": str(error)})
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, 2.0)

    async def _forever(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run one loop step after another; no failure ends the loop."""
        delay = 0.1
        while True:
            try:
                await step()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                level = logging.WARNING if isinstance(error, StoreUnavailable) else logging.ERROR
                log.log(level, "worker loop failed, retrying", exc_info=level == logging.ERROR,
                        extra={"loop": name, "error": repr(error)})
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, 2.0)

    async def _read(self) -> None:
        free = self.concurrency - len(self.running)
        if free <= 0:
            self._slot_free.clear()
            await self._slot_free.wait()
            return
        for job in await self.queue.read(self.consumer, free, self.block_ms):
            self._start(job)

    async def _reclaim(self) -> None:
        await asyncio.sleep(max(0.2, self.lease_ms / 4000))
        free = self.concurrency - len(self.running)
        if free <= 0:
            return
        for job in await self.queue.reclaim(self.consumer, self.lease_ms, free):
            if job.id in self.running:
                continue
            log.info("reclaimed job of a dead worker", extra={"job": job.id, "request_id": job.request_id})
            await self._count(job.type, "reclaimed")
            self._start(job)

    async def _keep_claimed(self) -> None:
        await asyncio.sleep(self.lease_ms / 3000)
        if self.running:
            await self.queue.keep_claimed(self.consumer, list(self.running))

    def _start(self, job: Job) -> None:
        self.running[job.id] = job
        metrics.RUNNING.set(len(self.running))
        job.task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")

    async def _execute(self, job: Job) -> None:
        try:
            await self._attempts(job)
            await self.queue.ack(job)
        except asyncio.CancelledError:
            raise  # shutdown: _drain hands the job back
        except Exception as error:
            log.warning("job bookkeeping failed; the job will be reclaimed",
                        extra={"job": job.id, "error": repr(error), "request_id": job.request_id})
        finally:
            self.running.pop(job.id, None)
            metrics.RUNNING.set(len(self.running))
            self._slot_free.set()

    async def _attempts(self, job: Job) -> None:
        handler = self.handlers.get(job.type)
        if handler is None:
            log.error("unknown job type, dropped", extra={"job": job.id, "type": job.type})
            return
        while True:
            attempt = await self.queue.next_attempt(job)
            if attempt > self.max_attempts:
                await self._give_up(handler, job, None)
                return
            try:
                await handler.run(job)
                await self._count(job.type, "done")
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("job attempt failed", extra={"job": job.id, "type": job.type, "attempt": attempt,
                                                          "error": repr(error), "request_id": job.request_id})
                if attempt >= self.max_attempts:
                    await self._give_up(handler, job, error)
                    return
                await self._count(job.type, "retried")
                await asyncio.sleep(self.retry_base * 2 ** (attempt - 1) * random.uniform(0.8, 1.2))

    async def _give_up(self, handler: JobHandler, job: Job, error: BaseException | None) -> None:
        """Record the failure; when even that fails, the job is still over (acknowledged by the
        caller), or a broken failure handler would have it reclaimed and failed forever."""
        try:
            await handler.give_up(job, error)
        except Exception as failure:
            log.error("recording a failed job failed; the job is dropped",
                      extra={"job": job.id, "error": repr(failure), "request_id": job.request_id})
        await self._count(job.type, "failed")

    async def _count(self, job_type: str, outcome: str) -> None:
        """This process's counter, and the cluster-wide one the API's /metrics reports."""
        metrics.JOBS.labels(job_type, outcome).inc()
        with contextlib.suppress(StoreUnavailable):
            await self.queue.count(f"{job_type}:{outcome}")

    async def _drain(self) -> None:
        jobs = list(self.running.values())
        if not jobs:
            return
        log.info("waiting for running jobs", extra={"count": len(jobs), "grace_seconds": self.grace})
        tasks = [job.task for job in jobs if job.task]
        _, pending = await asyncio.wait(tasks, timeout=self.grace)
        for job in jobs:
            if job.task in pending:
                job.task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for job in jobs:
            if job.task in pending:
                await self._hand_back(job)

    async def _hand_back(self, job: Job) -> None:
        try:
            await self.queue.hand_back(job)
            log.info("job handed back", extra={"job": job.id})
        except StoreUnavailable as error:  # it stays pending: another worker reclaims it after the lease
            log.warning("hand back failed", extra={"job": job.id, "error": str(error)})
