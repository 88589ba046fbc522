"""Reply generations: the fenced writer used by workers, and the log/state used by readers.

Each reply (one generation of a chat) has an ordered log (a Redis Stream whose entry ids are
``0-<seq>``) and a pub/sub channel; both carry the same ready-made SSE frames, built in Lua
(the format is backend/sse.py's).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from enum import IntEnum, StrEnum
from typing import Any, Literal

from backend import sse
from backend.redis.clients import AnyRedis
from backend.redis.errors import StoreUnavailable, retried, translate_errors
from backend.redis.scripts import Arg, Call, Scripts
from backend.redis.wire import CommandPath, pack_command
from backend.store import keys
from backend.store.clock import now_ms

FinishMode = Literal["done", "error", "stopped", "fail", "reap"]

DEAD_WORKER_MESSAGE = "The assistant stopped responding. Please send your message again."
LOG_PAGE = 500  # log entries read per call: a long replay is read and written in pages
REPLY_STATE = ("replyGen", "replyStatus", "replySeq")  # fields of the chat hash
ENDED_IN_FLIGHT = 32  # replies checked together by `ended` (see there)


class ReplyStatus(StrEnum):
    """`replyStatus` of a chat hash (see lua/start_reply.lua, claim_reply.lua, finish_reply.lua)."""

    IDLE = "idle"  # nothing in flight
    QUEUED = "queued"  # a prompt is stored, its job waits for a worker
    STREAMING = "streaming"  # a worker claimed it (replySeq chunks out so far)


class Claim(IntEnum):
    """lua/claim_reply.lua's answer."""

    NOTHING_TO_DO = 0  # superseded, stopped or deleted
    CLAIMED = 1
    WRITER_DIED = 2  # an earlier writer sent chunks and died: the reply cannot be resumed mid-way


@translate_errors
class Replies:
    def __init__(
        self,
        redis: AnyRedis,
        path: CommandPath,
        scripts: Scripts,
        *,
        db: int,
        sharded: bool,
        log_ttl: int,
        lease_seconds: float,
        queued_seconds: float,
        max_messages: int,
        heartbeats: CommandPath,
    ) -> None:
        self.redis = redis
        self.path = path  # stream opens (state, log pages) on the multiplexed connections; frames stay bytes
        self.scripts = scripts
        self.heartbeats = heartbeats  # lease renewals: a lane of their own, never behind a backlog of chunks
        self.db = db
        self.log_ttl = log_ttl
        self.max_messages = max_messages  # history kept per chat when a reply is saved
        self.queued_ms = int(queued_seconds * 1000)  # a reply queued longer than this lost its job: ended
        # Told the mode of every reply this process ends (once per reply: a second finish ends nothing);
        # the API and the workers count them (backend/telemetry/replies.py: the objective on replies ending `done`).
        self.on_finish: Callable[[str], None] | None = None
        self.lease_ms = int(lease_seconds * 700)  # renewed every lease/5: see README
        self.publish_command = "SPUBLISH" if sharded else "PUBLISH"

    def channel(self, user_id: int, chat_id: int, gen: int) -> str:
        return keys.reply_channel(user_id, chat_id, gen, self.db)

    async def state(self, user_id: int, chat_id: int) -> tuple[int | None, str, int]:
        """(generation or None for a missing chat, status, last seq) of the chat's newest reply."""
        chat = keys.chat(user_id, chat_id)
        gen, status, seq = await self.path.call_packed(pack_command("HMGET", chat, *REPLY_STATE), chat)
        if gen is None:
            return None, "", 0
        return int(gen), status.decode(), int(seq)

    async def read_log(self, user_id: int, chat_id: int, gen: int, after: int, count: int = LOG_PAGE) -> list[bytes]:
        """Frames of the reply's log after seq `after`, at most `count` of them: from the live
        Stream, or from the one value a finished reply's log is compacted into."""
        log = keys.reply_log(user_id, chat_id, gen)
        script = self.scripts.read_log
        command = pack_command("EVALSHA", script.sha, 1, log, after, count)
        compacted, found = await self.path.evalsha(script.source, command, log)
        if compacted:
            return sse.expand_compacted(gen, found, after, count)
        return [fields[1] for _, fields in found]  # each entry's one field: f <frame>

    async def log_exists(self, user_id: int, chat_id: int, gen: int) -> bool:
        """Is the reply's replay log still there (it expires REPLY_LOG_TTL_SECONDS after the reply ends)?"""
        return bool(await self.redis.exists(keys.reply_log(user_id, chat_id, gen)))

    async def ended(self, replies: list[tuple[int, int, int]]) -> list[bool]:
        """For each (user, chat, generation): is that reply over? A reply whose writer died (or
        that no worker took in time) is ended here (event: error). On the multiplexed path,
        ENDED_IN_FLIGHT replies at a time: a thousand idle streams checked at once (redis-py's
        pipeline) held the event loop, and every live frame, for 70-170 ms."""
        over: list[bool] = []
        for start in range(0, len(replies), ENDED_IN_FLIGHT):
            over += await asyncio.gather(*(self._over(*reply) for reply in replies[start : start + ENDED_IN_FLIGHT]))
        return over

    async def _over(self, user_id: int, chat_id: int, gen: int) -> bool:
        chat, lease_key = keys.chat(user_id, chat_id), keys.reply_lease(user_id, chat_id)
        state, lease = await asyncio.gather(
            self.path.call_packed(pack_command("HMGET", chat, *REPLY_STATE, "updatedAt"), chat),
            self.path.call_packed(pack_command("EXISTS", lease_key), lease_key),
        )
        current, status, seq, updated = (None if value is None else value.decode() for value in state)
        if current is None or int(current) != gen or status == ReplyStatus.IDLE:
            return True
        if self._abandoned(status or "", seq or "0", lease, updated):  # no seq yet: nothing sent
            return bool(await self.finish(user_id, chat_id, gen, "reap"))
        return False

    def _abandoned(self, status: str, seq: str, lease: int, updated: str | None) -> bool:
        if status == ReplyStatus.STREAMING:
            return seq != "0" and not lease
        return status == ReplyStatus.QUEUED and updated is not None and now_ms() - int(updated) > self.queued_ms

    async def reap(self, user_id: int, chat_id: int) -> bool:
        """End the chat's newest reply if its writer died or no worker took it in time."""
        gen, _, _ = await self.state(user_id, chat_id)
        return gen is not None and bool(await self.finish(user_id, chat_id, gen, "reap"))

    async def claim(self, user_id: int, chat_id: int, gen: int, token: str) -> Claim:
        return Claim(
            int(
                await self.scripts.claim_reply(
                    keys=[keys.chat(user_id, chat_id), keys.reply_lease(user_id, chat_id)],
                    args=[gen, token, self.lease_ms],
                )
            )
        )

    async def renew_many(self, leases: list[tuple[int, int, int, str]]) -> None:
        """Renew the writer leases of many replies (user, chat, generation, token) at once."""
        calls: list[Call] = [
            ([keys.chat(u, c), keys.reply_lease(u, c)], [g, t, self.lease_ms]) for u, c, g, t in leases
        ]
        await self.scripts.renew_reply.send_many(calls, path=self.heartbeats)

    def writer(
        self,
        user_id: int,
        chat_id: int,
        gen: int,
        token: str,
        *,
        retry_seconds: float = 0.0,
        on_batch: Callable[[list[float]], None] | None = None,
    ) -> ReplyWriter:
        return ReplyWriter(self, user_id, chat_id, gen, token, retry_seconds=retry_seconds, on_batch=on_batch)

    async def finish(
        self,
        user_id: int,
        chat_id: int,
        gen: int,
        mode: FinishMode,
        *,
        token: str = "",
        message: str = "",
        finish_reason: str = "stop",
        usage: dict[str, int] | None = None,
    ) -> int:
        """End the reply; 0 when it was already ended (or the fence did not allow it). A done
        event says why the reply ended (`finishReason`) and, when known, what it cost (`usage`)."""
        if mode in ("error", "fail", "reap"):
            data = sse.error_data(message or DEAD_WORKER_MESSAGE)
        elif mode == "stopped":
            data = sse.stopped_data()
        else:
            data = sse.done_data(finish_reason, usage)
        ended = int(
            await self.scripts.finish_reply(
                keys=[
                    keys.chat(user_id, chat_id),
                    keys.reply_log(user_id, chat_id, gen),
                    keys.partial(user_id, chat_id),
                    keys.reply_lease(user_id, chat_id),
                    keys.messages(user_id, chat_id),
                    keys.chats(user_id),
                    keys.user(user_id),
                    keys.reply_log(user_id, chat_id, gen - 1),
                ],
                args=[
                    gen,
                    token,
                    mode,
                    data,
                    now_ms(),
                    self.log_ttl,
                    self.channel(user_id, chat_id, gen),
                    self.publish_command,
                    chat_id,
                    self.queued_ms,
                    self.max_messages,
                ],
            )
        )
        if ended and self.on_finish is not None:
            self.on_finish(mode)
        return ended


MAX_BATCH = 256  # chunks per append call: bounds one script's time


class ReplyWriter:
    """The chunks of one reply, appended in order by lua/append_chunk.lua, fenced by (generation,
    token).

    `push()` never waits: the chunks pushed in one turn of the event loop, and those that arrive
    while a call is on its way, go together in the next call (one Lua call and one published
    message for all of them, still one log entry and event id each), so Redis does less per
    chunk exactly when chunks come fast. The EVALSHA is packed once up to its chunks and written
    straight onto the script path's connection, its answer taken by a callback: no task, no
    coroutine and no timer per chunk (they were a third of a worker's CPU per token). A call
    that fails (Redis unavailable: a stall, a failover; or a script to load again) goes on in a
    task on the async path, retried for up to `retry_seconds`, the same chunks under the same
    first seq, so it is appended once; readers see a pause, not a broken reply.
    """

    __slots__ = (
        "busy",
        "closed",
        "command",
        "error",
        "fenced",
        "fixed",
        "in_flight",
        "keys",
        "loop",
        "on_batch",
        "pending",
        "prefix",
        "pushed_at",
        "replies",
        "retry_seconds",
        "retrying",
        "seq",
        "waiters",
    )

    def __init__(
        self,
        replies: Replies,
        user_id: int,
        chat_id: int,
        gen: int,
        token: str,
        *,
        retry_seconds: float = 0.0,
        on_batch: Callable[[list[float]], None] | None = None,
    ) -> None:
        self.replies = replies
        self.keys = [keys.chat(user_id, chat_id), keys.reply_log(user_id, chat_id, gen), keys.partial(user_id, chat_id)]
        # lua/append_chunk.lua's ARGV up to the chunks, in its order; then the first seq and the chunks.
        self.fixed: list[Arg] = [
            gen,
            token,
            replies.log_ttl,
            replies.channel(user_id, chat_id, gen),
            replies.publish_command,
        ]
        self.prefix = replies.scripts.append_chunk.prefix(len(self.keys), *self.keys, *self.fixed)
        self.retry_seconds = retry_seconds
        self.on_batch = on_batch  # gets, per confirmed call, each chunk's wait from push() to Redis: metrics
        self.pushed_at: collections.deque[float] = collections.deque()
        self.seq = 0  # of the last chunk Redis confirmed
        self.pending: list[bytes] = []  # data, content, data, content, ...
        self.in_flight: list[bytes] = []  # the chunks of the call on its way
        self.command = b""  # that call, packed (sent again as it is when retried)
        self.busy = False  # a call is scheduled, on its way, or being retried
        self.retrying: asyncio.Task[None] | None = None
        self.waiters: list[asyncio.Future[None]] = []  # drain() calls waiting for the writer to be idle
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fenced = False  # stopped, deleted or taken over: nothing more is written
        self.closed = False
        self.error: StoreUnavailable | None = None

    def push(self, content: str, **extra: object) -> None:
        """Queue a chunk; it leaves at the end of this loop turn, or with the next call if one
        is on its way. `extra` data fields are for benchmarks (a publish time), never for clients."""
        if self.fenced or self.error is not None or self.closed:
            return
        self.pending.append(sse.chunk_data(content, **extra))
        self.pending.append(content.encode())
        if self.on_batch is not None:
            self.pushed_at.append(time.monotonic())
        if not self.busy:
            self.busy = True
            if self.loop is None:
                self.loop = asyncio.get_running_loop()
            self.loop.call_soon(self._send)

    async def append(self, content: str, **extra: object) -> int:
        """Push a chunk and wait for it: its seq, 0 when this writer has been fenced out."""
        self.push(content, **extra)
        return self.seq if await self.drain() else 0

    async def drain(self) -> bool:
        """Wait until every pushed chunk is in Redis; False when the writer was fenced out.
        Raises StoreUnavailable when Redis stayed unavailable past `retry_seconds`."""
        while self.busy:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter
        if self.error is not None:
            raise self.error
        return not self.fenced

    def close(self) -> None:
        """Stop sending (the reply is over for this writer)."""
        self.closed = True
        self.pending.clear()
        if self.retrying is not None:
            self.retrying.cancel()
        self._idle()

    def _idle(self) -> None:
        self.busy = False
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _send(self) -> None:
        """Write the next call (the pending chunks, up to MAX_BATCH) onto the connection."""
        if self.closed or self.fenced or not self.pending:
            self._idle()
            return
        self.in_flight, self.pending = self.pending[: 2 * MAX_BATCH], self.pending[2 * MAX_BATCH :]
        self.command = self.prefix.with_args(b"%d" % (self.seq + 1), *self.in_flight)
        answer = self.replies.scripts.append_chunk.path.send_nowait(self.command, self.keys[0])
        if answer is None:  # no live connection: the async path connects
            self._retry()
        else:
            answer.add_done_callback(self._answered)

    def _answered(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self._retry()
            return
        error = future.exception()  # taken here either way: never "exception was never retrieved"
        if self.closed:
            return
        if error is not None:
            self._retry()
            return
        try:
            last = int(future.result())  # append_chunk.lua answers an integer
        except (TypeError, ValueError) as wrong:
            self._failed(StoreUnavailable(f"append_chunk answered {future.result()!r}: {wrong}"))
            return
        self._confirmed(last)

    def _confirmed(self, last: int) -> None:
        if not last:
            self.fenced = True
            self.pending.clear()
            self.pushed_at.clear()
            self._idle()
            return
        self.seq = last
        if self.on_batch is not None:
            now = time.monotonic()
            self.on_batch([now - self.pushed_at.popleft() for _ in range(len(self.in_flight) // 2)])
        self.in_flight = []
        self._send()  # what arrived meanwhile goes at once, or the writer is idle

    def _failed(self, error: StoreUnavailable) -> None:
        self.error = error
        self.pending.clear()
        self.pushed_at.clear()
        self._idle()

    def _retry(self) -> None:
        """The call failed or could not be written: the async path, retried within the bound."""
        if self.closed:
            return
        self.retrying = asyncio.get_running_loop().create_task(self._retried(self.command))

    async def _retried(self, command: bytes) -> None:
        script = self.replies.scripts.append_chunk

        async def call() -> int:  # the same chunks under the same first seq: appended once
            return int(await script.raw(command, self.keys[0]))

        try:
            last = await retried(call, self.retry_seconds)
        except StoreUnavailable as error:
            self._failed(error)
            return
        except Exception as error:  # not an outage (an answer that is not a seq): the chunks are lost all the same
            self._failed(StoreUnavailable(f"appending chunks failed: {error!r}"))
            return
        finally:
            self.retrying = None
        if not self.closed:
            self._confirmed(last)
