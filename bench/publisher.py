"""The relay benchmark's producer: many replies written through the worker's real publish path
(ReplyWriter -> lua/append_chunk.lua -> Redis), each at a fixed rate, then finished.

python -m bench.publisher SPEC.json RESULT.json. Each chunk carries its publish time ("t").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array

from backend import heap
from backend.store import StoreUnavailable
from backend.store.datastore import Store
from bench.spec import percentile, serve_spec
from config.settings import Settings


async def write_reply(
    store: Store, reply: dict, chunks: int, rate: float, latencies: array, start_at: float, failures: list[str]
) -> None:
    interval = 1 / rate
    next_at = start_at
    # Like a worker: chunks are pushed as they come; the ones that pile up behind a call go together.
    chunks_of_reply = store.replies.writer(
        reply["user"],
        reply["chat"],
        reply["gen"],
        reply["token"],
        on_batch=latencies.extend,
        retry_seconds=store.settings.JOB_LEASE_SECONDS,
    )
    for _ in range(chunks):
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chunks_of_reply.push("tok ", t=round(time.time(), 6))
        next_at += interval
    try:
        if not await chunks_of_reply.drain():
            failures.append("fenced out")
    except StoreUnavailable as error:  # Redis stayed unavailable past the writer's retries: chunks lost
        failures.append(repr(error))
    await store.replies.finish(reply["user"], reply["chat"], reply["gen"], "done", token=reply["token"])


async def renew_leases(store: Store, replies: list[dict]) -> None:
    leases = [(r["user"], r["chat"], r["gen"], r["token"]) for r in replies]
    while True:
        await store.replies.renew_many(leases)
        await asyncio.sleep(store.settings.JOB_LEASE_SECONDS * 0.2)


async def run(spec: dict) -> dict:
    # A load generator that saturates Redis on purpose: calls may wait longer than a service allows.
    store = Store(Settings(REDIS_URL=spec["redis_url"], REDIS_CLUSTER=spec["cluster"], REDIS_TIMEOUT_SECONDS=30))
    latencies: array = array("d")
    failures: list[str] = []  # writers that could not write every chunk (a benchmark must show it)
    replies = spec["replies"]
    start = time.monotonic() + 0.2
    spread = 1 / spec["rate"]  # stagger the streams over one interval
    started = time.time()
    heartbeat = asyncio.create_task(renew_leases(store, replies))  # what a worker's heartbeat does
    heap.collect_young_rarely()  # as a worker does
    heap.freeze_startup()
    await asyncio.gather(
        *(
            write_reply(
                store, reply, spec["chunks"], spec["rate"], latencies, start + spread * index / len(replies), failures
            )
            for index, reply in enumerate(replies)
        )
    )
    wall = time.time() - started
    heartbeat.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await heartbeat
    await store.close()
    return {
        "chunks": len(latencies),
        "chunks_per_second": len(latencies) / wall,
        "publish_p50_ms": percentile(latencies, 0.5) * 1000,
        "publish_p99_ms": percentile(latencies, 0.99) * 1000,
        "writers_failed": len(failures),
        "writer_error": failures[0] if failures else None,
    }


if __name__ == "__main__":
    serve_spec(run)
