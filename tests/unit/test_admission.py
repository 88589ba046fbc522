"""Load shedding's decisions (backend/admission.py), from a given view of the queue, in process."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from backend.admission import Admission, QueueWatch
from backend.errors import ServiceUnavailable
from backend.store.queue import Backlog, Capacity, JobQueue

MAX_WAIT = 10.0


def watch(
    *,
    oldest_wait: float = 0.0,
    chats_waiting: int = 0,
    running: int = 0,
    slots: int = 0,
    next_end_in: float | None = None,
    job_seconds: float | None = None,
) -> QueueWatch:
    """A QueueWatch as if its last refresh, just now, had read this (it never reads the queue here)."""
    queue_watch = QueueWatch(cast(JobQueue, None), MAX_WAIT)
    queue_watch.backlog = Backlog(
        oldest_wait, {"chat": chats_waiting}, running, Capacity(slots, next_end_in, job_seconds)
    )
    queue_watch.refreshed_at = asyncio.get_running_loop().time()
    return queue_watch


async def test_no_reports_only_the_oldest_wait_counts() -> None:
    idle = watch()
    assert idle.prompt_wait() is None and idle.refusal("chat") is None and not idle.shedding
    behind = watch(oldest_wait=MAX_WAIT + 2.5)
    assert behind.refusal("chat") == pytest.approx(2.5) and behind.refusal("questions") == pytest.approx(2.5)
    assert behind.shedding
    with pytest.raises(ServiceUnavailable) as refused, behind.admission("questions"):
        pass
    assert refused.value.headers["Retry-After"] == "3"  # the excess, rounded up
    assert watch(oldest_wait=MAX_WAIT).refusal("chat") is None  # at the bound: still admitted


async def test_a_free_slot_means_no_wait() -> None:
    free = watch(slots=4, running=2, chats_waiting=1, next_end_in=30.0, job_seconds=30.0)
    assert free.free_slots == 1 and free.prompt_wait() == 0.0 and free.refusal("chat") is None


async def test_no_free_slot_waits_for_the_first_end_and_the_queue_ahead() -> None:
    # 2 slots busy, the first ends in 4 s, jobs last 6 s: the next prompt waits 4 s (no one ahead).
    busy = watch(slots=2, running=2, next_end_in=4.0, job_seconds=6.0)
    assert busy.prompt_wait() == pytest.approx(4.0, abs=0.05)
    # Three chat jobs queued beyond the slots: 3 * 6 s / 2 slots more.
    queued = watch(slots=2, running=2, chats_waiting=3, next_end_in=4.0, job_seconds=6.0)
    assert queued.prompt_wait() == pytest.approx(4.0 + 9.0, abs=0.05)
    assert queued.refusal("chat") == pytest.approx(3.0, abs=0.05)
    assert queued.refusal("questions") is None  # only prompts count against the slots
    # No running job knows its end: every one just started, a whole job length away.
    fresh = watch(slots=1, running=1, job_seconds=12.0)
    assert fresh.prompt_wait() == pytest.approx(12.0) and fresh.shedding
    # Nobody can tell how long a job takes: no second rule.
    unknown = watch(slots=1, running=5)
    assert unknown.prompt_wait() is None and unknown.refusal("chat") is None


async def test_time_since_the_refresh_counts_down_the_first_end() -> None:
    busy = watch(slots=1, running=1, next_end_in=4.0, job_seconds=6.0)
    busy.refreshed_at -= 3.0  # read 3 s ago
    assert busy.prompt_wait() == pytest.approx(1.0, abs=0.05)
    busy.refreshed_at -= 10.0
    assert busy.prompt_wait() == pytest.approx(0.0, abs=0.05)  # overdue: not negative


async def test_prompts_admitted_here_count_until_a_refresh_sees_them() -> None:
    """A burst between two refreshes is not admitted twice over: each admitted prompt takes a slot."""
    queue_watch = watch(slots=2, running=0, next_end_in=None, job_seconds=30.0)
    first = Admission(queue_watch, "chat")
    assert queue_watch.prompt_wait() == 0.0  # 2 free slots, 1 taken by a prompt in flight
    second = Admission(queue_watch, "chat")
    assert queue_watch.in_flight == 2 and queue_watch.prompt_wait() == 30.0  # a third waits for a job's end
    with pytest.raises(ServiceUnavailable), queue_watch.admission("chat"):  # 30 s > 10 s: refused
        pass
    assert queue_watch.in_flight == 2  # a refusal holds nothing
    first.enqueued()
    assert queue_watch.in_flight == 1 and len(queue_watch.recent) == 1  # queued: counted until read
    assert queue_watch.prompt_wait() == 30.0
    second.close()  # its request ended before its job was queued: its slot is free again
    second.close()
    assert queue_watch.in_flight == 0
    with queue_watch.admission("chat") as third:
        assert queue_watch.in_flight == 1
    assert queue_watch.in_flight == 0 and not third.open  # the request ended: released
    with queue_watch.admission("questions"):
        assert queue_watch.in_flight == 0  # a question job is never counted against the slots
