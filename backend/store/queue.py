"""The job queue, both sides: the API enqueues; workers read, keep claimed, reclaim, count
attempts, acknowledge, hand back and bury; operators inspect and revive dead letters.

One Redis Stream per job type with one consumer group each. Chat jobs are taken before
question jobs, and question jobs may fill at most half of a worker's slots, so a burst of skill
descriptions never delays a prompt's first token. A job that fails for good becomes a dead
letter (its fields, error, attempts and time) in one more stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from backend.redis.clients import AnyRedis, ResponseError
from backend.redis.errors import translate_errors
from backend.redis.scripts import Scripts
from backend.redis.wire import CommandPath, pack_command
from backend.store import keys
from backend.telemetry import tracing

JobType = Literal["questions", "chat"]
# Stream entries as the clients return them (decode_responses: str); redis-py annotates a union.
Entries = list[tuple[str, dict[str, str]]]
DEAD_LETTERS_KEPT = 10_000  # the dead-letter stream is capped (approximately) at this many


@dataclass
class Job:
    id: str
    fields: dict[str, str]
    stream: str = keys.CHAT_JOBS
    task: Any = field(default=None, repr=False)  # the worker's asyncio task running it

    @property
    def type(self) -> str:
        return self.fields.get("type", "")

    @property
    def request_id(self) -> str:
        return self.fields.get("requestId", "")


@dataclass
class StreamState:
    """One job stream as an operator sees it."""

    type: str
    length: int
    waiting: int  # entries not yet delivered to any worker
    pending: int  # delivered, not yet acknowledged
    oldest_wait_seconds: float  # age of the oldest entry not yet delivered (0 when none)
    consumers: list[dict[str, Any]]


@dataclass(frozen=True)
class Capacity:
    """What the workers report: their slots (0 when no worker reports), when the first running
    job should end (seconds; None when none can tell), and a chat job's average length."""

    slots: int
    next_end_in: float | None
    job_seconds: float | None  # weighted by the workers' slots


def _seconds(ms: int) -> float | None:
    return ms / 1000 if ms >= 0 else None


def _ms(seconds: float | None) -> int:
    return -1 if seconds is None else int(seconds * 1000)


@dataclass(frozen=True)
class Backlog:
    """The queue as load shedding sees it."""

    oldest_wait: float  # seconds the oldest job not yet taken by any worker has waited (0: none)
    waiting: dict[str, int]  # job type -> jobs not yet taken by a worker
    running: int  # jobs taken and not yet acknowledged, of every type
    capacity: Capacity


def entry_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


@translate_errors
class JobQueue:
    def __init__(self, redis: AnyRedis, path: CommandPath, scripts: Scripts, blocking: AnyRedis | None = None) -> None:
        self.redis = redis
        # A job's own calls (enqueue, attempt count, ack) on the multiplexed path: a burst of
        # prompts would otherwise grow redis-py's pool by a connection per concurrent call.
        self.path = path
        self.scripts = scripts
        self.blocking = blocking or redis  # a client whose read timeout allows for BLOCK
        self._consumer = ""

    async def enqueue(self, job_type: JobType, request_id: str, **fields: str | int) -> str:
        """Append a job; any worker of the group takes it. Returns the stream entry id."""
        entry = {"type": job_type, "requestId": request_id, **{k: str(v) for k, v in fields.items()}}
        stream = keys.JOB_STREAMS[job_type]
        if not tracing.enabled:
            return await self._append(stream, entry)
        attributes: dict[str, Any] = {"job.type": job_type}
        with tracing.span(f"enqueue {job_type}", kind="PRODUCER", **attributes) as span:
            entry.update(tracing.carrier())  # the worker's job span continues this trace (workers/observe.py)
            job_id = await self._append(stream, entry)
            span.set_attribute("job.id", job_id)
            return job_id

    async def _append(self, stream: str, entry: dict[str, str]) -> str:
        flat = [item for pair in entry.items() for item in pair]
        entry_id: bytes = await self.path.call_packed(pack_command("XADD", stream, "*", *flat), stream)
        return entry_id.decode()

    async def streams(self) -> list[StreamState]:
        """Depth, lag, pending jobs, consumers and the oldest waiting job of each stream."""
        states = []
        for job_type, stream in keys.JOB_STREAMS.items():
            waiting, pending, age, group = await self._stream_backlog(stream)
            consumers = (
                [
                    {"name": c["name"], "pending": int(c["pending"]), "idleMs": int(c["idle"])}
                    for c in await self.redis.xinfo_consumers(stream, keys.JOB_GROUP)
                ]
                if group is not None
                else []
            )
            states.append(StreamState(job_type, await self.redis.xlen(stream), waiting, pending, age, consumers))
        return states

    async def backlog(self) -> Backlog:
        """What waits for the workers and what they run: the load shedding signals, two or three
        calls per stream and one script."""
        oldest, running, waiting = 0.0, 0, {}
        for job_type, stream in keys.JOB_STREAMS.items():
            waiting[job_type], pending, age, _ = await self._stream_backlog(stream)
            running += pending
            oldest = max(oldest, age)
        return Backlog(oldest, waiting, running, await self.capacity())

    async def _stream_backlog(self, stream: str) -> tuple[int, int, float, dict[str, Any] | None]:
        """(jobs not yet taken, jobs taken and not acknowledged, the oldest waiting job's age, the
        group) of one stream; nothing waits in a stream that does not exist yet."""
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:  # no stream yet
            return 0, 0, 0.0, None
        group = next((g for g in groups if g["name"] == keys.JOB_GROUP), None)
        if group is None:  # no worker has read it yet: everything waits
            return await self.redis.xlen(stream), 0, await self._age_after(stream, "-"), None
        lag = group.get("lag")  # None: unknown (entries were deleted): look
        age = await self._age_after(stream, "(" + group["last-delivered-id"]) if lag != 0 else 0.0
        waiting = lag if lag is not None else int(age > 0)
        return waiting, int(group["pending"]), age, group

    async def _age_after(self, stream: str, start: str) -> float:
        first = cast(Entries, await self.redis.xrange(stream, min=start, count=1))
        return max(0.0, time.time() - entry_ms(first[0][0]) / 1000) if first else 0.0

    async def capacity(self) -> Capacity:
        """The slots of every live worker, as their reports add up (lua/read_capacity.lua)."""
        reply = await self.scripts.read_capacity(keys=[keys.WORKER_REPORTS, keys.WORKER_EXPIRIES])
        slots, next_end_ms, job_ms = (int(value) for value in reply)
        return Capacity(slots, _seconds(next_end_ms), _seconds(job_ms))

    async def report_capacity(
        self, slots: int, next_end_in: float | None, job_seconds: float | None, ttl_seconds: float
    ) -> None:
        """This worker's slots, in how many seconds its first running job should end, and how
        long its chat jobs take on average (None: cannot tell yet); slots 0 withdraws the report."""
        await self.scripts.report_capacity(
            keys=[keys.WORKER_REPORTS, keys.WORKER_EXPIRIES],
            args=[self._consumer, slots, _ms(next_end_in), _ms(job_seconds), int(ttl_seconds * 1000)],
        )

    async def depth(self) -> tuple[int, int]:
        """(jobs not yet delivered to any worker, jobs delivered and not yet acknowledged)."""
        states = await self.streams()
        return sum(s.waiting for s in states), sum(s.pending for s in states)

    async def hold_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or keep a named lease (one holder at a time across pods)."""
        return bool(await self.scripts.hold_lease(keys=[keys.lease(name)], args=[holder, int(ttl_seconds * 1000)]))

    async def outcomes(self) -> dict[str, int]:
        """Cluster-wide counters: "<type>:<outcome>" -> count (and "llm:chunks")."""
        return {str(name): int(count) for name, count in (await self.redis.hgetall(keys.JOB_STATS)).items()}

    async def count(self, name: str, amount: int = 1) -> None:
        await self.redis.hincrby(keys.JOB_STATS, name, amount)

    # The worker's side.

    async def ensure_groups(self) -> None:
        for stream in keys.JOB_STREAMS.values():
            try:
                await self.redis.xgroup_create(stream, keys.JOB_GROUP, id="0", mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    async def read(self, free: int, free_for_questions: int, block_ms: int) -> list[Job]:
        """New jobs for this consumer: chat jobs first, then at most `free_for_questions` question
        jobs; when there are none, wait up to block_ms for the next of either."""
        try:
            jobs = await self._take(self.redis, {keys.CHAT_JOBS: ">"}, free)
            if free_for_questions > 0 and len(jobs) < free:
                room = min(free_for_questions, free - len(jobs))
                jobs += await self._take(self.redis, {keys.QUESTION_JOBS: ">"}, room)
            if jobs:
                return jobs
            streams = {keys.CHAT_JOBS: ">"}
            if free_for_questions > 0:
                streams[keys.QUESTION_JOBS] = ">"
            return await self._take(self.blocking, streams, 1, block_ms)  # at most one of each type
        except ResponseError as error:
            if "NOGROUP" not in str(error):  # else a stream was deleted (e.g. FLUSHALL)
                raise
            await self.ensure_groups()
            return []

    async def _take(
        self, client: AnyRedis, streams: dict[str, str], count: int, block_ms: int | None = None
    ) -> list[Job]:
        reply = cast(
            list[tuple[str, Entries]] | None,
            await client.xreadgroup(
                keys.JOB_GROUP, self._consumer, cast(dict[Any, Any], streams), count=count, block=block_ms
            ),
        )
        return [Job(entry_id, fields, stream) for stream, entries in reply or [] for entry_id, fields in entries]

    def bind(self, consumer: str) -> None:
        """The consumer name this process reads as."""
        self._consumer = consumer

    async def keep_claimed(self, jobs: list[Job]) -> None:
        """Reset the idle time of running jobs (their heartbeat), 500 ids a call."""
        by_stream: dict[str, list[str]] = defaultdict(list)
        for job in jobs:
            by_stream[job.stream].append(job.id)
        for stream, ids in by_stream.items():
            for start in range(0, len(ids), 500):
                await self.redis.xclaim(
                    stream, keys.JOB_GROUP, self._consumer, 0, list[Any](ids[start : start + 500]), justid=True
                )

    async def reclaim(self, min_idle_ms: int, count: int) -> list[Job]:
        """Jobs of dead workers (idle past the lease), now this consumer's; chat jobs first."""
        jobs: list[Job] = []
        for stream in keys.JOB_STREAMS.values():
            if len(jobs) >= count:
                break
            _, entries, deleted = await self.redis.xautoclaim(
                stream,
                keys.JOB_GROUP,
                self._consumer,
                min_idle_time=min_idle_ms,
                start_id="0-0",
                count=count - len(jobs),
            )
            if deleted:
                await self.redis.xack(stream, keys.JOB_GROUP, *deleted)
            jobs += [Job(entry_id, fields, stream) for entry_id, fields in entries if fields is not None]
        return jobs

    async def next_attempt(self, job: Job) -> int:
        """Count one more attempt of the job (kept in Redis: it survives a worker's death)."""
        command = pack_command("HINCRBY", keys.JOB_ATTEMPTS, job.id, 1)
        return int(await self.path.call_packed(command, keys.JOB_ATTEMPTS))

    async def ack(self, job: Job) -> None:
        """The job is done: gone from its stream with its bookkeeping."""
        await asyncio.gather(
            self.path.call_packed(pack_command("XACK", job.stream, keys.JOB_GROUP, job.id), job.stream),
            self.path.call_packed(pack_command("XDEL", job.stream, job.id), job.stream),
            self.path.call_packed(pack_command("HDEL", keys.JOB_ATTEMPTS, job.id), keys.JOB_ATTEMPTS),
        )

    async def bury(self, job: Job, error: str) -> str:
        """The job failed for good: a dead letter (fields, error, attempts, time); gone from its stream."""
        flat = [item for pair in job.fields.items() for item in pair]
        dead_id = await self.scripts.bury_job(
            keys=[job.stream, keys.JOB_ATTEMPTS, keys.DEAD_JOBS],
            args=[keys.JOB_GROUP, job.id, error[:2000], int(time.time() * 1000), DEAD_LETTERS_KEPT, *flat],
        )
        return str(dead_id)

    async def hand_back(self, job: Job) -> str:
        """Put an unfinished job back for another worker, keeping its attempt count."""
        flat = [item for pair in job.fields.items() for item in pair]
        entry_id = await self.scripts.requeue_job(
            keys=[job.stream, keys.JOB_ATTEMPTS], args=[keys.JOB_GROUP, job.id, *flat]
        )
        return str(entry_id)

    # Dead letters, for operators.

    async def dead_letters(self) -> list[tuple[str, dict[str, str]]]:
        """Every dead letter, oldest first: (id, fields with job, stream, error, attempts, failedAt)."""
        return cast(Entries, await self.redis.xrange(keys.DEAD_JOBS))

    async def dead_count(self) -> int:
        return int(await self.redis.xlen(keys.DEAD_JOBS))

    async def revive(self, dead_id: str) -> tuple[str, dict[str, str]] | None:
        """Put one dead letter back in its stream with fresh attempts: (new entry id, the job's
        fields); None when there is no such dead letter."""
        found = cast(Entries, await self.redis.xrange(keys.DEAD_JOBS, min=dead_id, max=dead_id))
        if not found:
            return None
        letter = found[0][1]
        job = {k: v for k, v in letter.items() if k not in ("job", "stream", "error", "attempts", "failedAt")}
        stream = letter.get("stream") or keys.JOB_STREAMS.get(job.get("type", ""), keys.CHAT_JOBS)
        flat = [item for pair in job.items() for item in pair]
        new_id = await self.scripts.revive_job(keys=[keys.DEAD_JOBS, stream], args=[dead_id, *flat])
        return (new_id, job) if new_id else None

    async def purge(self) -> int:
        """Drop every dead letter; how many there were."""
        count = await self.dead_count()
        await self.redis.delete(keys.DEAD_JOBS)
        return count
