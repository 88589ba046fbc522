"""Relaying one reply to one SSE client: log first, then live, with no gap and no duplicate.
The frames' format is backend/sse.py's.

A stream subscribes (confirmed) before it reads the log, so nothing published in between is
missed. Every frame carries ``id: <gen>-<seq>``; a frame is written only when its seq is the
next one, so anything at or below the last seq is dropped and a hole sends the stream back to
the log. The live path writes each frame to the client's socket from the hub's callback, as an
HTTP chunk, without a task switch; the stream's own task only catches up from the log (in pages,
only as fast as the client drains), sends heartbeats, checks the writer is alive, and ends the
response.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from enum import Enum

from sanic.response.types import HTTPResponse

from backend.ops.metrics import OPEN_STREAMS
from backend.sse import frame_seq, message_span, split_frames
from backend.store import RelayHub, StoreUnavailable
from backend.store.open_streams import OpenStreams
from backend.store.replies import LOG_PAGE, Replies

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
# no-transform: no proxy may compress or rewrite the stream; X-Accel-Buffering: nginx passes each chunk on.
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
PING = b": ping\n\n"
# The first bytes of every stream, sent at once (proxies and browsers see it open before the first
# token): how long EventSource waits before it reconnects. A blank-line block with no data is no event.
RETRY = b"retry: 1000\n\n"
HIGH_WATER = 256 * 1024  # bytes queued for a slow client before it is served from the log instead


class Phase(Enum):
    """Where a stream is; the stream's task acts on it, the hub's callback only in LIVE."""

    CATCHING_UP = "catching up"  # read the log after `last` before anything live
    LIVE = "live"  # frames that continue the sequence go straight to the socket
    REPLY_OVER = "reply over"  # the reply ended without its final event reaching us live: finish from the log
    CLOSING = "closing"  # the pod is shutting down: end without a final event; the client resumes


class StreamListener:
    """One open stream: what the hub delivers, and the state the stream's task acts on."""

    __slots__ = ("active", "direct", "last", "phase", "ping", "queued", "reply", "socket", "wake")

    def __init__(self, socket: ChunkedSocket, reply: tuple[int, int, int], last: int) -> None:
        self.socket = socket
        self.reply = reply  # (user, chat, generation)
        self.last = last  # seq of the last frame written to the client
        self.phase = Phase.CATCHING_UP
        self.direct = False  # live frames may be written from the hub's callback (socket.direct allows it)
        self.queued: list[bytes] = []
        self.wake = asyncio.Event()
        self.ping = False  # a heartbeat is due (set by the ticker)
        self.active = False  # frames arrived since the ticker's last look

    def deliver(self, message: bytes) -> None:
        """A published message: one frame, or several consecutive ones."""
        self.active = True
        if self.direct and self.phase is Phase.LIVE and not self.queued:
            first, last, final = message_span(message)
            if last <= self.last:
                return
            if first == self.last + 1 and not final:
                if self.socket.buffered() < HIGH_WATER:
                    self.socket.write(message)
                    self.last = last
                else:
                    self.refill()  # a slow client: its task serves it from the log once it drains
                return
        self.queued.extend(split_frames(message))
        self.wake.set()

    def refill(self) -> None:
        """Messages may have been missed: catch up from the log."""
        if self.phase is Phase.LIVE:
            self.phase = Phase.CATCHING_UP
        self.wake.set()

    def reply_over(self) -> None:
        if self.phase is not Phase.CLOSING:
            self.phase = Phase.REPLY_OVER
        self.wake.set()

    def close(self) -> None:
        self.phase = Phase.CLOSING
        self.wake.set()

    def accept(self, frames: list[bytes]) -> tuple[list[bytes], bool, bool]:
        """The frames that continue the sequence, in order; whether the reply ended; whether a
        hole was found (the log has what is missing)."""
        out: list[bytes] = []
        for frame in frames:
            seq, final = frame_seq(frame)
            if seq <= self.last:
                continue
            if seq != self.last + 1:
                return out, False, True
            out.append(frame)
            self.last = seq
            if final:
                return out, True, False
        return out, False, False


class ChunkedSocket:
    """The one place that writes a response body to the client's socket directly, bypassing
    Sanic's `response.send` (which costs a task switch and several awaits per frame). It does so
    only on an HTTP/1.1 response that Sanic sends chunked; anything else goes through Sanic."""

    __slots__ = ("direct", "response", "transport")

    def __init__(self, response: HTTPResponse, transport: asyncio.Transport) -> None:
        self.response = response
        self.transport = transport
        self.direct = False

    async def send_head(self, data: bytes) -> None:
        """The first write goes through Sanic: it sends the response head and picks the framing."""
        await self.response.send(data)
        http = getattr(self.response, "stream", None)
        self.direct = (
            http is not None
            and getattr(http, "response_func", None) == getattr(http, "http1_response_chunked", None)
            and self.response.headers.get("transfer-encoding") == "chunked"
        )

    def write(self, data: bytes) -> None:
        """One HTTP/1.1 chunk, exactly as Sanic frames it. Only where `direct` holds."""
        if not self.transport.is_closing():
            self.transport.write(b"%x\r\n%b\r\n" % (len(data), data))

    async def send(self, data: bytes) -> None:
        if self.direct:
            self.write(data)
        else:
            await self.response.send(data)

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()


class ReplyRelay:
    def __init__(
        self,
        hub: RelayHub,
        replies: Replies,
        *,
        ping_seconds: float,
        check_seconds: float,
        streams: OpenStreams | None = None,
    ) -> None:
        self.hub = hub
        self.replies = replies
        self.streams = streams  # the per-user counts of this process's open streams, extended every round
        self.ping_seconds = ping_seconds
        self.check_seconds = check_seconds  # how often an idle stream checks that its writer is alive
        self.listeners: set[StreamListener] = set()
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="relay-ticker")

    async def stop(self) -> None:
        """End every open stream (without a final event) and stop the hub."""
        for listener in self.listeners:
            listener.close()
        if self._ticker:
            self._ticker.cancel()
        await asyncio.sleep(0)  # let the streams see it before the connections go
        await self.hub.stop()

    async def _tick(self) -> None:
        """Heartbeats for every stream, and one batched check of the replies idle streams wait on."""
        pings_every = max(1, round(self.ping_seconds / self.check_seconds))
        for round_number in itertools.count(1):
            await asyncio.sleep(self.check_seconds)
            idle: list[StreamListener] = []
            for listener in self.listeners:
                if round_number % pings_every == 0:
                    listener.ping = True
                    listener.wake.set()
                if not listener.active:
                    idle.append(listener)
                listener.active = False
            if self.streams is not None:
                with contextlib.suppress(StoreUnavailable):  # they last a few rounds: next round will do
                    await self.streams.hold()
            if not idle:
                continue
            replies = list({listener.reply for listener in idle})
            try:
                over = dict(zip(replies, await self.replies.ended(replies), strict=True))
            except StoreUnavailable:  # check again next round
                continue
            for listener in idle:
                if over[listener.reply]:
                    listener.reply_over()  # whatever is left is in the log

    async def stream(
        self,
        response: HTTPResponse,
        transport: asyncio.Transport,
        user_id: int,
        chat_id: int,
        gen: int,
        after_seq: int,
    ) -> None:
        channel = self.replies.channel(user_id, chat_id, gen).encode()
        listener = StreamListener(ChunkedSocket(response, transport), (user_id, chat_id, gen), after_seq)
        await self.hub.subscribe(channel, listener)
        self.listeners.add(listener)
        OPEN_STREAMS.inc()
        try:
            await self._follow(response, listener)
        finally:
            OPEN_STREAMS.dec()
            self.listeners.discard(listener)
            self.hub.unsubscribe(channel, listener)

    async def _read_log(self, listener: StreamListener) -> tuple[list[bytes], bool]:
        """The next page of the log after the last frame written, and whether there may be more."""
        try:
            frames = await self.replies.read_log(*listener.reply, listener.last)
        except StoreUnavailable:
            await asyncio.sleep(0.5)  # Redis is back soon, or the stream ends with the pod: try again
            return [], True
        return frames, len(frames) >= LOG_PAGE

    async def _follow(self, response: HTTPResponse, listener: StreamListener) -> None:
        socket = listener.socket
        frames, more = await self._read_log(listener)
        out, ended, hole = listener.accept(frames)
        await socket.send_head(RETRY + b"".join(out))
        listener.direct = socket.direct
        if not (more or hole) and listener.phase is Phase.CATCHING_UP:
            listener.phase = Phase.LIVE
        while not ended and listener.phase is not Phase.CLOSING:
            from_log = listener.phase is not Phase.LIVE
            more = hole = False
            if not from_log:
                frames, listener.queued = listener.queued, []
            elif socket.buffered() < HIGH_WATER:
                # Frames that arrive while the log is read stay queued, then follow the page.
                if listener.phase is Phase.CATCHING_UP:
                    listener.phase = Phase.LIVE  # a refill during the read sets it back
                queued, listener.queued = listener.queued, []
                page, more = await self._read_log(listener)
                frames = page + queued
            else:  # a slow client: nothing more in memory for it; the log has it all once it drains
                listener.queued.clear()
                frames = []
                more = True
            out, ended, hole = listener.accept(frames)
            if (more or hole) and listener.phase is Phase.LIVE:
                listener.phase = Phase.CATCHING_UP
            if out:
                await socket.send(b"".join(out))
            if ended or (listener.phase is Phase.REPLY_OVER and not (more or hole)):
                break  # the whole reply is written (an ended reply's log has no more for us)
            if listener.queued or ((more or hole) and socket.buffered() < HIGH_WATER):
                continue
            listener.wake.clear()
            await listener.wake.wait()
            if listener.ping:
                listener.ping = False
                await response.send(PING)  # also keeps Sanic's response timer from expiring
        with contextlib.suppress(Exception):
            await response.eof()  # a clean end; without a final event the client resumes
