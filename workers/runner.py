"""The job runner: a consumer of the Redis Stream job queue.

- XREADGROUP with BLOCK (no polling sleeps), at most WORKER_CONCURRENCY jobs at once.
- Running jobs' entries are re-claimed every lease/3 (their idle time is the heartbeat); a job
  idle for JOB_LEASE_SECONDS belonged to a dead worker and is taken over with XAUTOCLAIM.
- Attempts are counted in Redis (so they survive a worker's death); a failed attempt is retried
  with exponential backoff up to JOB_MAX_ATTEMPTS, then the handler's give_up() runs.
- SIGTERM: stop reading, let running jobs finish within the grace period, hand back the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from redis.exceptions import ResponseError

from backend.store import keys
from backend.store.redis import UNAVAILABLE, AnyRedis
from backend.store.scripts import Scripts
from config.settings import Settings
from workers import metrics

log = logging.getLogger("workers.runner")


@dataclass
class Job:
    id: str
    fields: dict[str, str]
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def type(self) -> str:
        return self.fields.get("type", "")

    @property
    def request_id(self) -> str:
        return self.fields.get("requestId", "")


class JobHandler(Protocol):
    async def run(self, job: Job) -> None:
        """Do the job; raising means the attempt failed and may be retried."""

    async def give_up(self, job: Job, error: BaseException | None) -> None:
        """The last attempt failed: record the failure where the user will see it."""


class Runner:
    def __init__(self, redis: AnyRedis, scripts: Scripts, settings: Settings, handlers: Mapping[str, JobHandler],
                 consumer: str) -> None:
        self.redis = redis
        self.scripts = scripts
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

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(keys.JOBS, keys.JOB_GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def request_stop(self) -> None:
        self._stopping.set()
        self._slot_free.set()

    async def run(self) -> None:
        """Take jobs until request_stop(), then drain."""
        await self._wait_for_redis()
        loops = [asyncio.create_task(self._read_loop(), name="read"),
                 asyncio.create_task(self._reclaim_loop(), name="reclaim"),
                 asyncio.create_task(self._keep_claimed(), name="keep-claimed")]
        await self._stopping.wait()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await self._drain()

    async def _wait_for_redis(self) -> None:
        delay = 0.1
        while not self._stopping.is_set():
            try:
                await self.ensure_group()
                return
            except UNAVAILABLE:
                log.warning("redis unavailable, waiting")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _read_loop(self) -> None:
        while True:
            free = self.concurrency - len(self.running)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                reply = await self.redis.xreadgroup(keys.JOB_GROUP, self.consumer, {keys.JOBS: ">"},
                                                    count=free, block=self.block_ms)
            except ResponseError as error:
                if "NOGROUP" in str(error):  # the stream was deleted (e.g. FLUSHALL)
                    await self.ensure_group()
                    continue
                raise
            except UNAVAILABLE:
                await asyncio.sleep(0.5)
                continue
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    self._start(entry_id, fields)

    async def _reclaim_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.2, self.lease_ms / 4000))
            free = self.concurrency - len(self.running)
            if free <= 0:
                continue
            try:
                _, entries, deleted = await self.redis.xautoclaim(
                    keys.JOBS, keys.JOB_GROUP, self.consumer, min_idle_time=self.lease_ms, start_id="0-0",
                    count=free,
                )
                if deleted:
                    await self.redis.xack(keys.JOBS, keys.JOB_GROUP, *deleted)
            except UNAVAILABLE:
                continue
            for entry_id, fields in entries:
                if fields is None or entry_id in self.running:
                    continue
                log.info("reclaimed job of a dead worker", extra={"job": entry_id})
                await self._count(fields.get("type", ""), "reclaimed")
                self._start(entry_id, fields)

    def _start(self, entry_id: str, fields: dict[str, str]) -> None:
        job = Job(entry_id, fields)
        self.running[entry_id] = job
        metrics.RUNNING.set(len(self.running))
        job.task = asyncio.create_task(self._execute(job), name=f"job-{entry_id}")

    async def _execute(self, job: Job) -> None:
        try:
            await self._attempts(job)
            await self._ack(job.id)
        except asyncio.CancelledError:
            raise  # shutdown: _drain hands the job back
        except Exception:
            log.exception("job bookkeeping failed; the job will be reclaimed", extra={"job": job.id})
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
            attempt = await self.redis.hincrby(keys.JOB_ATTEMPTS, job.id, 1)
            if attempt > self.max_attempts:
                await handler.give_up(job, None)
                await self._count(job.type, "failed")
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
                    await handler.give_up(job, error)
                    await self._count(job.type, "failed")
                    return
                await self._count(job.type, "retried")
                await asyncio.sleep(self.retry_base * 2 ** (attempt - 1))

    async def _count(self, job_type: str, outcome: str) -> None:
        """This process's counter, and the cluster-wide one the API's /metrics reports."""
        metrics.JOBS.labels(job_type, outcome).inc()
        with contextlib.suppress(*UNAVAILABLE):
            await self.redis.hincrby(keys.JOB_STATS, f"{job_type}:{outcome}", 1)

    async def _keep_claimed(self) -> None:
        """Reset the idle time of every running job's entry (one XCLAIM for many ids)."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            running = list(self.running)
            for start in range(0, len(running), 500):
                with contextlib.suppress(*UNAVAILABLE):
                    await self.redis.xclaim(keys.JOBS, keys.JOB_GROUP, self.consumer, 0, running[start:start + 500],
                                            justid=True)

    async def _ack(self, entry_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(keys.JOBS, keys.JOB_GROUP, entry_id)
            pipe.xdel(keys.JOBS, entry_id)
            pipe.hdel(keys.JOB_ATTEMPTS, entry_id)
            await pipe.execute()

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
        flat = [item for pair in job.fields.items() for item in pair]
        with contextlib.suppress(*UNAVAILABLE):
            await self.scripts.requeue_job(keys=[keys.JOBS], args=[keys.JOB_GROUP, job.id, *flat])
            log.info("job handed back", extra={"job": job.id})
