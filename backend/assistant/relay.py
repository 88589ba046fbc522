"""Relaying one reply to one SSE client: log first, then live, with no gap and no duplicate.

The stream subscribes (confirmed) before it reads the log, so nothing published in between
is missed; every frame carries ``id: <gen>-<seq>`` and anything at or below the last seq sent
is dropped. A hole in the live sequence (a lost message) sends the stream back to the log.
"""

from __future__ import annotations

import asyncio
import time

from sanic.response import ResponseStream
from sanic.response.types import HTTPResponse

from backend.assistant.hub import ClusterHub, Hub, Listener
from backend.ops.metrics import OPEN_STREAMS
from backend.store import keys
from backend.store.replies import Replies

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PING = b": ping\n\n"


def frame_seq(frame: bytes) -> tuple[int, bool]:
    """(seq, is final event) of a frame ``id: <gen>-<seq>\\n[event: ...\\n]data: ...``."""
    newline = frame.index(b"\n")
    seq = int(frame[frame.index(b"-", 4, newline) + 1:newline])
    return seq, frame.startswith(b"event:", newline + 1)


class ReplyRelay:
    def __init__(self, hub: Hub | ClusterHub, replies: Replies, *, ping_seconds: float, check_seconds: float) -> None:
        self.hub = hub
        self.replies = replies
        self.ping_seconds = ping_seconds
        self.check_seconds = check_seconds  # how often an idle stream checks the writer is alive

    async def stream(self, response: HTTPResponse | ResponseStream, user_id: int, chat_id: int, gen: int,
                     after_seq: int) -> None:
        channel = keys.reply_channel(user_id, chat_id, gen).encode()
        log_key = keys.reply_log(user_id, chat_id, gen)
        listener = Listener()
        await self.hub.subscribe(channel, listener)
        OPEN_STREAMS.inc()
        try:
            await self._follow(response, listener, user_id, chat_id, gen, log_key, after_seq)
        finally:
            OPEN_STREAMS.dec()
            self.hub.unsubscribe(channel, listener)

    async def _read_log(self, log_key: str, after: int) -> list[bytes]:
        entries = await self.hub.redis.xrange(log_key, min=f"0-{after + 1}")
        return [fields[b"f"] for _, fields in entries]

    async def _follow(self, response: HTTPResponse | ResponseStream, listener: Listener, user_id: int,
                      chat_id: int, gen: int, log_key: str, last: int) -> None:
        listener.resync = True
        last_write = time.monotonic()
        reply_over = False  # the reply ended without us seeing its final event live
        while not listener.closing:
            if listener.resync:
                listener.resync = False
                listener.frames.clear()
                frames = await self._read_log(log_key, last)
            else:
                frames, listener.frames = listener.frames, []
            out: list[bytes] = []
            ended = False
            for frame in frames:
                seq, final = frame_seq(frame)
                if seq <= last:
                    continue
                if seq != last + 1:  # a live message went missing: the log has it
                    listener.flag_resync()
                    break
                out.append(frame)
                last = seq
                if final:
                    ended = True
                    break
            if out:
                await response.send(b"".join(out))
                last_write = time.monotonic()
            if ended or (reply_over and not listener.resync):
                return
            if listener.frames or listener.resync:
                continue
            listener.wake.clear()
            try:
                async with asyncio.timeout(self.check_seconds):
                    await listener.wake.wait()
            except TimeoutError:
                if time.monotonic() - last_write >= self.ping_seconds - self.check_seconds / 2:
                    await response.send(PING)
                    last_write = time.monotonic()
                if await self._reply_over(user_id, chat_id, gen):
                    reply_over = True
                    listener.flag_resync()  # whatever is left is in the log

    async def _reply_over(self, user_id: int, chat_id: int, gen: int) -> bool:
        """Idle check: end a reply whose writer died; tell whether the reply is over."""
        await self.replies.finish(user_id, chat_id, gen, "reap")
        current, status, _ = await self.replies.state(user_id, chat_id)
        return current != gen or status == "idle"
