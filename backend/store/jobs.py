"""The one job queue: a Redis Stream read by the workers' consumer group."""

from __future__ import annotations

from typing import Literal

from backend.store import keys
from backend.store.redis import AnyRedis

JobType = Literal["questions", "chat"]


async def enqueue(redis: AnyRedis, job_type: JobType, request_id: str, **fields: str | int) -> str:
    """Append a job; any worker of the group takes it. Returns the stream entry id."""
    entry = {"type": job_type, "requestId": request_id, **{k: str(v) for k, v in fields.items()}}
    return await redis.xadd(keys.JOBS, entry)  # type: ignore[arg-type]


async def queue_depth(redis: AnyRedis) -> tuple[int, int]:
    """(entries not yet delivered to any worker, entries delivered and not yet acknowledged)."""
    try:
        groups = await redis.xinfo_groups(keys.JOBS)
    except Exception:
        return 0, 0
    for group in groups:
        if group["name"] == keys.JOB_GROUP:
            return int(group.get("lag") or 0), int(group["pending"])
    return int(await redis.xlen(keys.JOBS)), 0
