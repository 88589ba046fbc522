"""The reply writer (backend/store/replies.py ReplyWriter) against a real Redis: chunks pushed in
one loop turn leave in one call with no task per push, each still one log entry and event id in
order; a call that fails (the connection dropped, the script flushed) is sent again on the async
path and appended once; a writer that lost the reply writes nothing more."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from backend.store import keys
from backend.store.datastore import Store
from backend.store.replies import MAX_BATCH, Claim
from config.settings import Settings
from tests.conftest import isolated_url

FRAME_ID = re.compile(rb"^id: (\d+)-(\d+)$", re.M)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    made = Store(Settings(REDIS_URL=isolated_url(redis_url)))
    yield made
    await made.close()


async def claimed(store: Store, token: str = "t1") -> tuple[int, int, int]:
    user_id, _ = await store.users.login("test", "writer", "writer")
    chat_id = await store.chats.create(user_id)
    gen = await store.chats.start_reply(user_id, chat_id, "go")
    assert gen is not None
    assert await store.replies.claim(user_id, chat_id, gen, token) == Claim.CLAIMED
    return user_id, chat_id, gen


async def logged(store: Store, user_id: int, chat_id: int, gen: int) -> list[tuple[int, bytes]]:
    """(event seq, frame) of every entry of the reply's log."""
    frames = await store.replies.read_log(user_id, chat_id, gen, 0, 10_000)
    found = []
    for frame in frames:
        match = FRAME_ID.search(frame)
        assert match is not None, frame
        found.append((int(match.group(2)), frame))
    return found


async def test_chunks_of_one_turn_go_in_one_call_without_a_task_each(store: Store) -> None:
    user_id, chat_id, gen = await claimed(store)
    batches: list[int] = []
    writer = store.replies.writer(user_id, chat_id, gen, "t1", on_batch=lambda waits: batches.append(len(waits)))
    tasks = len(asyncio.all_tasks())
    count = MAX_BATCH + 44  # more than one call holds
    for index in range(count):
        writer.push(f"w{index} ")
    assert len(asyncio.all_tasks()) == tasks  # pushing started no task
    assert await writer.drain()
    assert batches == [MAX_BATCH, 44]  # every chunk of the turn, in calls of at most MAX_BATCH
    entries = await logged(store, user_id, chat_id, gen)
    assert [seq for seq, _ in entries] == list(range(1, count + 1))
    assert all(f'"w{seq - 1} "'.encode() in frame for seq, frame in entries)
    assert writer.seq == count


async def test_chunks_pushed_while_a_call_is_on_its_way_go_together_next(store: Store) -> None:
    user_id, chat_id, gen = await claimed(store)
    batches: list[int] = []
    writer = store.replies.writer(user_id, chat_id, gen, "t1", on_batch=lambda waits: batches.append(len(waits)))
    writer.push("a")
    await asyncio.sleep(0)  # the first call leaves
    for piece in ("b", "c", "d"):
        writer.push(piece)
        await asyncio.sleep(0)
    assert await writer.drain()
    assert sum(batches) == 4 and batches[0] == 1
    assert [seq for seq, _ in await logged(store, user_id, chat_id, gen)] == [1, 2, 3, 4]


async def test_a_dropped_connection_is_a_pause_and_the_chunks_are_appended_once(store: Store) -> None:
    user_id, chat_id, gen = await claimed(store)
    writer = store.replies.writer(user_id, chat_id, gen, "t1", retry_seconds=10)
    assert await writer.append("before") == 1
    writer.push("during")
    writer.push("after")
    await asyncio.sleep(0)  # the call is written (flushed next turn)...
    store.command_path.drop()  # ...and its connection dropped before any answer
    assert await writer.drain()
    assert writer.retrying is None
    entries = await logged(store, user_id, chat_id, gen)
    assert [seq for seq, _ in entries] == [1, 2, 3]
    assert b'"during"' in entries[1][1] and b'"after"' in entries[2][1]


async def test_a_flushed_script_is_loaded_again(store: Store, redis_url: str) -> None:
    user_id, chat_id, gen = await claimed(store)
    writer = store.replies.writer(user_id, chat_id, gen, "t1", retry_seconds=10)
    assert await writer.append("one") == 1
    await store.redis.script_flush()
    assert await writer.append("two") == 2
    assert [seq for seq, _ in await logged(store, user_id, chat_id, gen)] == [1, 2]


async def test_a_writer_that_lost_the_reply_writes_nothing_more(store: Store) -> None:
    user_id, chat_id, gen = await claimed(store)
    writer = store.replies.writer(user_id, chat_id, gen, "t1")
    assert await writer.append("mine") == 1
    # Another worker takes the reply over (a new attempt with its own token).
    await store.redis.hset(keys.chat(user_id, chat_id), "replyToken", "t2")
    writer.push("stale")
    assert not await writer.drain()
    assert writer.fenced
    writer.push("ignored")
    assert not writer.busy
    assert [seq for seq, _ in await logged(store, user_id, chat_id, gen)] == [1]


async def test_lease_renewals_renew_every_lease_on_either_path(store: Store) -> None:
    leases = []
    for index in range(40):  # more than one batch of the async path (MANY_IN_FLIGHT)
        user_id, chat_id, gen = await claimed(store, f"t{index}")
        leases.append((user_id, chat_id, gen, f"t{index}"))
    for round_number in range(2):
        for user_id, chat_id, _, _ in leases:
            await store.redis.pexpire(keys.reply_lease(user_id, chat_id), 200)
        if round_number == 1:
            await store.redis.script_flush()  # the fallback path loads it
        await store.replies.renew_many(leases)
        ttls = [await store.redis.pttl(keys.reply_lease(u, c)) for u, c, _, _ in leases]
        assert min(ttls) > 1000, ttls
