"""The LLM client's HTTP/1.1 transport: the `openai` package's httpx2 client, with its connections
served by asyncio protocols and a parser made for streams of small chunks (workers/llm/http1.py)
instead of httpcore2, h11 and anyio.

Measured in B7 (README): httpcore2 spends a timer and a cancel scope per read (anyio's
`fail_after`), h11 parses each chunk in Python, and its pool walks every connection (polling
each idle socket) twice per request, about 3 ms of CPU per request with hundreds of streams.
Here a read is a callback that appends bytes and wakes the one reader; the pool is an idle list
per origin (newest first); read timeouts are kept by one watchdog per transport, not a timer per
read.

It raises only httpx2's request errors (ConnectError, ConnectTimeout, ReadError, ReadTimeout,
RemoteProtocolError, PoolTimeout, WriteError), so the `openai` package classifies failures
exactly as before (APIConnectionError, APITimeoutError). HTTP/1.1 only: no proxies (make_client
keeps httpx2's own transport when the environment names one), interim 1xx responses skipped, no
HEAD requests (Chat Completions sends none).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import urllib.request
from collections.abc import AsyncIterator

import httpx2

from workers.llm.http1 import ParserError, ResponseParser

WATCH_SECONDS = 1.0  # how often read timeouts and idle keep-alive connections are checked
HIGH_WATER = 256 * 1024  # body bytes buffered before the socket stops being read (flow control)

Origin = tuple[str, str, int]  # scheme, host, port


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time."""

    def __init__(self, transport: Http1Transport, origin: Origin) -> None:
        self.owner = transport
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        """Ready for the next response (a new parser: each message its own)."""
        self.parser = ResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.keep_alive = False
        self.complete = False
        self.framed = False  # content-length or chunked: the end of the body is known without a close
        self.body: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.waiting_since: float | None = None  # a reader waits for bytes (read timeout's clock)
        self.read_timeout: float | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream connection's

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
        except ParserError as error:
            self.fail(httpx2.RemoteProtocolError(f"invalid HTTP response: {error}"))
            return
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head_done and not self.complete and not self.framed and exc is None:
            self.complete = True  # a body that ends with the connection
        self.fail(
            httpx2.ReadError(f"the connection was lost: {exc}")
            if exc
            else httpx2.RemoteProtocolError("the server closed the connection before the response ended")
        )

    # the parser's callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.status
        self.keep_alive = self.parser.keep_alive
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True

    # the request's side
    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        self._wake()
        self.owner.forget(self)
        if self.transport is not None:
            self.transport.close()

    async def _wait(self) -> None:
        """Until the parser has something for the reader, or the connection fails."""
        self.waiter = self.loop.create_future()
        self.waiting_since = self.loop.time()
        try:
            await self.waiter
        finally:
            self.waiter = None
            self.waiting_since = None

    def timed_out(self, now: float) -> bool:
        return (
            self.waiting_since is not None
            and self.read_timeout is not None
            and now - self.waiting_since > self.read_timeout
        )

    async def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Send the request and wait for the response's head."""
        assert self.transport is not None
        lines = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            lines += [name, b": ", value, b"\r\n"]
        lines.append(b"\r\n")
        if body:
            lines.append(body)
        self.transport.write(b"".join(lines))
        while not self.head_done:
            if self.lost is not None:
                raise self.lost
            await self._wait()

    async def stream(self) -> AsyncIterator[bytes]:
        """The body as it comes."""
        while True:
            if self.body:
                data, self.body, self.buffered = b"".join(self.body), [], 0
                if self.paused and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()
                yield data
            elif self.complete:
                return
            elif self.lost is not None:
                raise self.lost
            else:
                await self._wait()

    def open(self) -> bool:
        return self.lost is None and self.transport is not None and not self.transport.is_closing()

    def reusable(self) -> bool:
        """The response was read to its end and both sides keep the connection."""
        return self.complete and self.open() and self.keep_alive

    def close(self) -> None:
        self.fail(httpx2.ReadError("the connection was closed"))


class Body(httpx2.AsyncByteStream):
    """A response body: read as it comes; closing it hands the connection back (or closes it)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for data in self.connection.stream():
            yield data

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.connection.owner.release(self.connection)


class Http1Transport(httpx2.AsyncBaseTransport):
    """At most `max_connections` connections, kept alive `keepalive_expiry` seconds when idle."""

    def __init__(
        self, *, max_connections: int, keepalive_expiry: float = 5.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self.ssl_context = ssl_context
        self.idle: dict[Origin, list[Connection]] = collections.defaultdict(list)
        self.busy: set[Connection] = set()
        self.opening = 0
        self.slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._watchdog: asyncio.Task[None] | None = None

    def count(self) -> int:
        return len(self.busy) + self.opening + sum(len(idle) for idle in self.idle.values())

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        origin: Origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        body = await request.aread()
        headers = [(name, value) for name, value in request.headers.raw if name.lower() != b"transfer-encoding"]
        if body and not any(name.lower() == b"content-length" for name, _ in headers):
            headers.append((b"Content-Length", b"%d" % len(body)))
        connection = await self._acquire(origin, timeout)
        connection.read_timeout = timeout.get("read")
        try:
            await connection.request(request.method.encode(), url.raw_path, headers, body)
        except BaseException:
            self.release(connection)
            raise
        return httpx2.Response(
            status_code=connection.status,
            headers=connection.headers,
            stream=Body(connection),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _acquire(self, origin: Origin, timeouts: dict[str, float | None]) -> Connection:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(self._watch(), name="llm-http-watchdog")
        while True:
            idle = self.idle.get(origin)
            while idle:
                connection = idle.pop()  # the newest: the likeliest to be still open
                if connection.open():
                    connection._reset()
                    self.busy.add(connection)
                    return connection
            if self.count() < self.max_connections:
                return await self._connect(origin, timeouts.get("connect"))
            if not self._close_one_idle():  # room is made by an idle connection to another origin, or waited for
                await self._wait_for_slot(timeouts.get("pool"))

    def _close_one_idle(self) -> bool:
        """Make room: an idle connection to another origin goes."""
        for connections in self.idle.values():
            if connections:
                connections.pop(0).close()
                return True
        return False

    async def _wait_for_slot(self, within: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.slot_waiters.append(waiter)
        try:
            async with asyncio.timeout(within):
                await waiter
        except TimeoutError:
            raise httpx2.PoolTimeout(f"no connection free within {within} s") from None
        finally:
            with contextlib.suppress(ValueError):
                self.slot_waiters.remove(waiter)

    def _slot_freed(self) -> None:
        while self.slot_waiters:
            waiter = self.slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, origin: Origin, within: float | None) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = None
        if scheme == "https":
            if self.ssl_context is None:  # made once: loading the CA bundle takes milliseconds
                self.ssl_context = httpx2.create_ssl_context()
            tls = self.ssl_context
        self.opening += 1
        try:
            async with asyncio.timeout(within):
                _, connection = await loop.create_connection(
                    lambda: Connection(self, origin), host, port, ssl=tls, server_hostname=host if tls else None
                )
        except BaseException as error:
            self.opening -= 1
            self._slot_freed()
            if isinstance(error, TimeoutError):
                raise httpx2.ConnectTimeout(f"could not connect to {host}:{port} within {within} s") from None
            if isinstance(error, OSError | ssl.SSLError):
                raise httpx2.ConnectError(f"could not connect to {host}:{port}: {error}") from error
            raise
        self.opening -= 1
        self.busy.add(connection)
        return connection

    def release(self, connection: Connection) -> None:
        """The response is closed: the connection goes back to the idle list, or is closed."""
        if connection not in self.busy:
            return
        self.busy.discard(connection)
        if connection.reusable():
            connection.idle_since = connection.loop.time()
            self.idle[connection.origin].append(connection)
        else:
            connection.close()
        self._slot_freed()

    def forget(self, connection: Connection) -> None:
        """A connection that failed or was closed is no longer counted."""
        if connection in self.busy:
            self.busy.discard(connection)
            self._slot_freed()
            return
        idle = self.idle.get(connection.origin)
        if idle and connection in idle:
            idle.remove(connection)
            self._slot_freed()

    async def _watch(self) -> None:
        """Read timeouts of the busy connections, keep-alive expiry of the idle ones."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            now = loop.time()
            for connection in [c for c in self.busy if c.timed_out(now)]:
                connection.fail(httpx2.ReadTimeout(f"no data within {connection.read_timeout} s"))
            for connections in self.idle.values():
                for connection in [c for c in connections if now - c.idle_since > self.keepalive_expiry]:
                    connection.close()

    async def aclose(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        for connection in [*self.busy, *(c for idle in self.idle.values() for c in idle)]:
            connection.close()
        self.busy.clear()
        self.idle.clear()


def proxied() -> bool:
    """Does the environment name a proxy (httpx2's own transport then, which honours it)?"""
    return bool(urllib.request.getproxies())
