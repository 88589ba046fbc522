"""The job queue, both sides: the API enqueues; workers read, keep claimed, reclaim, count
attempts, acknowledge and hand back. One Redis Stream with one consumer group."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from redis.exceptions import ResponseError

from backend.store import keys
from backend.store.clients import AnyRedis
from backend.store.errors import translate_errors
from backend.store.scripts import Scripts

JobType = Literal["questions", "chat"]


@dataclass
class Job:
    id: str
    fields: dict[str, str]
    task: Any = field(default=None, repr=False)  # the worker's asyncio task running it

    @property
    def type(self) -> str:
        return self.fields.get("type", "")

    @property
    def request_id(self) -> str:
        return self.fields.get("requestId", "")


@translate_errors
class JobQueue:
    def __init__(self, redis: AnyRedis, scripts: Scripts, blocking: AnyRedis | None = None) -> None:
        self.redis = redis
        self.scripts = scripts
        self.blocking = blocking or redis  # a client whose read timeout allows for BLOCK

    async def enqueue(self, job_type: JobType, request_id: str, **fields: str | int) -> str:
        """Append a job; any worker of the group takes it. Returns the stream entry id."""
        entry = {"type": job_type, "requestId": request_id, **{k: str(v) for k, v in fields.items()}}
        return await self.redis.xadd(keys.JOBS, entry)  # type: ignore[arg-type]

    async def depth(self) -> tuple[int, int]:
        """(entries not yet delivered to any worker, entries delivered and not yet acknowledged)."""
        try:
            groups = await self.redis.xinfo_groups(keys.JOBS)
        except ResponseError:  # no stream yet
            return 0, 0
        for group in groups:
            if group["name"] == keys.JOB_GROUP:
                return int(group.get("lag") or 0), int(group["pending"])
        return int(await self.redis.xlen(keys.JOBS)), 0

    async def outcomes(self) -> dict[str, int]:
        """Cluster-wide counters: "<type>:<outcome>" -> count (and "llm:chunks")."""
        return {name: int(count) for name, count in (await self.redis.hgetall(keys.JOB_STATS)).items()}

    async def count(self, name: str, amount: int = 1) -> None:
        await self.redis.hincrby(keys.JOB_STATS, name, amount)

    # The worker's side.

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(keys.JOBS, keys.JOB_GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Job]:
        """New jobs for this consumer, waiting up to block_ms for one."""
        try:
            reply = await self.blocking.xreadgroup(keys.JOB_GROUP, consumer, {keys.JOBS: ">"}, count=count,
                                                   block=block_ms)
        except ResponseError as error:
            if "NOGROUP" not in str(error):  # else the stream was deleted (e.g. FLUSHALL)
                raise
            await self.ensure_group()
            return []
        return [Job(entry_id, fields) for _, entries in reply or [] for entry_id, fields in entries]

    async def keep_claimed(self, consumer: str, entry_ids: list[str]) -> None:
        """Reset the idle time of running jobs (their heartbeat), 500 ids a call."""
        for start in range(0, len(entry_ids), 500):
            await self.redis.xclaim(keys.JOBS, keys.JOB_GROUP, consumer, 0, entry_ids[start:start + 500],
                                    justid=True)

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[Job]:
        """Jobs of dead workers (idle past the lease), now this consumer's."""
        _, entries, deleted = await self.redis.xautoclaim(keys.JOBS, keys.JOB_GROUP, consumer,
                                                          min_idle_time=min_idle_ms, start_id="0-0", count=count)
        if deleted:
            await self.redis.xack(keys.JOBS, keys.JOB_GROUP, *deleted)
        return [Job(entry_id, fields) for entry_id, fields in entries if fields is not None]

    async def next_attempt(self, job: Job) -> int:
        """Count one more attempt of the job (kept in Redis: it survives a worker's death)."""
        return int(await self.redis.hincrby(keys.JOB_ATTEMPTS, job.id, 1))

    async def ack(self, job: Job) -> None:
        """The job is over (done or failed for good): gone from the stream with its bookkeeping."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(keys.JOBS, keys.JOB_GROUP, job.id)
            pipe.xdel(keys.JOBS, job.id)
            pipe.hdel(keys.JOB_ATTEMPTS, job.id)
            await pipe.execute()

    async def hand_back(self, job: Job) -> str:
        """Put an unfinished job back for another worker, keeping its attempt count."""
        flat = [item for pair in job.fields.items() for item in pair]
        return await self.scripts.requeue_job(keys=[keys.JOBS, keys.JOB_ATTEMPTS],
                                              args=[keys.JOB_GROUP, job.id, *flat])
