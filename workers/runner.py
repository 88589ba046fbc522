"""The job runner: a consumer of the job queue (backend/store/queue.py).

- Blocking reads (no polling sleeps), at most WORKER_CONCURRENCY jobs at once.
- Running jobs are kept claimed every lease/3 (their idle time is the heartbeat); a job idle
  for JOB_LEASE_SECONDS belonged to a dead worker and is taken over.
- Chat jobs are read before question jobs, and question jobs fill at most half of the slots, so
  prompts always find a free slot.
- Attempts are counted in Redis (so they survive a worker's death). A failed attempt is retried
  with exponential backoff and jitter, never sooner than the error's `retry_after` (at most 60 s), up to
  JOB_MAX_ATTEMPTS; an `AttemptFailed` that says a retry cannot help (`retryable = False`,
  workers/errors.py) ends the job at
  once. Then the handler's give_up() runs and the job becomes a dead letter; a job whose
  give_up() itself fails is buried anyway: it is logged, not looped.
- Each loop survives any Redis failure (a stall, a failover, a migration): it logs, backs off
  with jitter and goes on; the store's clients follow the topology.
- Every REPORT_SECONDS the worker reports its slots, how many run, and when it expects to free
  one (from the average length of each job type): the API's load shedding refuses prompts that
  would wait longer than QUEUE_MAX_WAIT_SECONDS for a slot (backend/admission.py).
- SIGTERM: stop reading, let running jobs finish within the grace period, hand back the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from backend import logs
from backend.backoff import Backoff, equal_jitter
from backend.store import StoreUnavailable
from backend.store.queue import Job, JobQueue
from config.settings import Settings
from workers import metrics, observe
from workers.errors import AttemptFailed

log = logging.getLogger("workers.runner")

REPORT_SECONDS = 0.25
REPORT_TTL_SECONDS = 5.0  # a worker silent this long (dead, or its loop stuck) no longer counts
DURATION_WEIGHT = 0.2  # of the newest job in the moving average of a job type's length
# An LLM server's Retry-After is honoured up to this: one answer must not park a slot for a day.
RETRY_AFTER_MAX_SECONDS = 60.0


class JobHandler(Protocol):
    async def run(self, job: Job) -> None:
        """Do the job; raising means the attempt failed and may be retried."""

    async def give_up(self, job: Job, error: BaseException | None) -> None:
        """The last attempt failed: record the failure where the user will see it."""


class Runner:
    def __init__(self, queue: JobQueue, settings: Settings, handlers: Mapping[str, JobHandler], consumer: str) -> None:
        self.queue = queue
        queue.bind(consumer)
        self.handlers = handlers
        self.consumer = consumer
        self.concurrency = settings.WORKER_CONCURRENCY
        self.lease_ms = int(settings.JOB_LEASE_SECONDS * 1000)
        self.max_attempts = settings.JOB_MAX_ATTEMPTS
        self.retry_base = settings.JOB_RETRY_BASE_SECONDS
        self.grace = settings.WORKER_SHUTDOWN_GRACE_SECONDS
        self.block_ms = 5000
        self.question_slots = max(1, self.concurrency // 2)
        self.running: dict[str, Job] = {}
        self.started: dict[str, float] = {}  # job id -> when this worker started it (monotonic)
        self.durations: dict[str, float] = {}  # job type -> moving average of a finished job's seconds
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        self._stopping.set()
        self._slot_free.set()

    async def run(self) -> None:
        """Take jobs until request_stop(), then drain."""
        await self._wait_for_redis()
        loops = [
            asyncio.create_task(self._forever(name, step), name=name)
            for name, step in (
                ("read", self._read),
                ("reclaim", self._reclaim),
                ("keep-claimed", self._keep_claimed),
                ("report", self._report),
            )
        ]
        await self._stopping.wait()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        with contextlib.suppress(StoreUnavailable, TimeoutError):  # no new work for a worker that is leaving
            async with asyncio.timeout(1.0):
                await self.queue.report_capacity(0, None, None, REPORT_TTL_SECONDS)
        await self._drain()

    async def _wait_for_redis(self) -> None:
        backoff = Backoff(0.1, cap=2.0)
        while not self._stopping.is_set():
            try:
                await self.queue.ensure_groups()
                return
            except StoreUnavailable as error:
                log.warning("redis unavailable, waiting", extra={"error": str(error)})
                await backoff.sleep()

    async def _forever(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run one loop step after another; no failure ends the loop."""
        backoff = Backoff(0.1, cap=2.0)
        while True:
            try:
                await step()
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                level = logging.WARNING if isinstance(error, StoreUnavailable) else logging.ERROR
                log.log(
                    level,
                    "worker loop failed, retrying",
                    exc_info=level == logging.ERROR,
                    extra={"loop": name, "error": repr(error)},
                )
                await backoff.sleep()

    async def _read(self) -> None:
        free = self.concurrency - len(self.running)
        if free <= 0:
            self._slot_free.clear()
            await self._slot_free.wait()
            return
        questions = sum(1 for job in self.running.values() if job.type == "questions")
        for job in await self.queue.read(free, self.question_slots - questions, self.block_ms):
            self._start(job)

    async def _reclaim(self) -> None:
        await asyncio.sleep(max(0.2, self.lease_ms / 4000))
        free = self.concurrency - len(self.running)
        if free <= 0:
            return
        for job in await self.queue.reclaim(self.lease_ms, free):
            if job.id in self.running:
                continue
            log.info("reclaimed job of a dead worker", extra={"job": job.id, "request_id": job.request_id})
            await self._count(job.type, "reclaimed")
            self._start(job)

    async def _keep_claimed(self) -> None:
        await asyncio.sleep(self.lease_ms / 3000)
        if self.running:
            await self.queue.keep_claimed(list(self.running.values()))

    async def _report(self) -> None:
        await self.queue.report_capacity(
            self.concurrency, self.next_end_in(), self.durations.get("chat"), REPORT_TTL_SECONDS
        )
        await asyncio.sleep(REPORT_SECONDS)

    def next_end_in(self) -> float | None:
        """Seconds until the first running job should end, from the jobs' ages and their types'
        average length (None when nothing runs or no job of their types has finished yet)."""
        now = asyncio.get_running_loop().time()
        ends = [
            self.started[job.id] + self.durations[job.type] - now
            for job in self.running.values()
            if job.type in self.durations and job.id in self.started
        ]
        return max(0.0, min(ends)) if ends else None

    def _finished(self, job: Job) -> None:
        started = self.started.pop(job.id, None)
        if started is None:
            return
        seconds = asyncio.get_running_loop().time() - started
        average = self.durations.get(job.type)
        self.durations[job.type] = seconds if average is None else average + DURATION_WEIGHT * (seconds - average)

    def _start(self, job: Job) -> None:
        self.started[job.id] = asyncio.get_running_loop().time()
        self.running[job.id] = job
        metrics.RUNNING.set(len(self.running))
        job.task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")

    async def _execute(self, job: Job) -> None:
        logs.request_id.set(job.request_id or None)  # this task's log lines carry it
        observe.current_job.set(job)  # and its LLM calls' measurements (workers/observe.py)
        try:
            with observe.job_span(job):  # a span continuing the API's trace, when tracing is on
                await self._attempts(job)
        except asyncio.CancelledError:
            raise  # shutdown: _drain hands the job back
        except Exception as error:
            log.warning(
                "job bookkeeping failed; the job will be reclaimed",
                extra={"job": job.id, "error": repr(error), "request_id": job.request_id},
            )
        finally:
            self.running.pop(job.id, None)
            self.started.pop(job.id, None)
            metrics.RUNNING.set(len(self.running))
            self._slot_free.set()

    async def _attempts(self, job: Job) -> None:
        handler = self.handlers.get(job.type)
        if handler is None:
            log.error("unknown job type", extra={"job": job.id, "type": job.type})
            await self.queue.bury(job, f"unknown job type {job.type!r}")
            return
        while True:
            attempt = await self.queue.next_attempt(job)
            if attempt > self.max_attempts:
                await self._give_up(handler, job, None)
                return
            self.started[job.id] = asyncio.get_running_loop().time()  # this attempt's start: what its length is
            try:
                await handler.run(job)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failed = error if isinstance(error, AttemptFailed) else AttemptFailed(repr(error))
                retryable = failed.retryable
                log.warning(
                    "job attempt failed",
                    extra={
                        "job": job.id,
                        "type": job.type,
                        "attempt": attempt,
                        "retryable": retryable,
                        "error": repr(error),
                        "request_id": job.request_id,
                    },
                )
                if attempt >= self.max_attempts or not retryable:
                    await self._give_up(handler, job, error)
                    return
                await self._count(job.type, "retried")
                await asyncio.sleep(self.retry_delay(attempt, failed.retry_after))
            else:
                self._finished(job)
                await self._count(job.type, "done")
                await self.queue.ack(job)
                return

    def retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter from JOB_RETRY_BASE_SECONDS, never sooner than the
        provider's Retry-After (capped at RETRY_AFTER_MAX_SECONDS: one answer cannot park a slot)."""
        backoff = equal_jitter(self.retry_base, attempt)
        return min(max(backoff, retry_after or 0.0), max(backoff, RETRY_AFTER_MAX_SECONDS))

    async def _give_up(self, handler: JobHandler, job: Job, error: BaseException | None) -> None:
        """Record the failure where the user sees it, then keep the job as a dead letter. When
        recording fails, the job is buried all the same: a broken failure handler must not have
        it reclaimed and failed forever."""
        try:
            await handler.give_up(job, error)
        except Exception as failure:
            log.error(
                "recording a failed job failed",
                extra={"job": job.id, "error": repr(failure), "request_id": job.request_id},
            )
        await self._count(job.type, "failed")
        await self.queue.bury(job, repr(error) if error is not None else "out of attempts")

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
