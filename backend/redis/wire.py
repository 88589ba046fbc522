"""Hand-written Redis connections for the hot paths: the RESP encoding, one multiplexed command
connection, and the pub/sub connection of the hub.

redis-py takes a pooled connection, packs, sends, reads and releases per command, and its
PubSub builds several dicts and awaits per message; at tens of thousands of calls a second that
Python outweighs the Redis round trip. These connections are asyncio protocols over hiredis' C
parser: the commands of one loop turn leave in one system call, replies resolve waiting futures
first-in first-out, and pub/sub messages go straight to a callback.

Everything about *how* to reach Redis comes from redis-py's own URL parsing (`ServerAddress`),
so a URL means the same on these connections as on redis-py's pools: user, password, database
from the path or `?db=`, unix sockets, and every TLS option (built by redis-py's SSL context).
A connection is handed out only after TLS, AUTH and SELECT have succeeded; error replies become
redis-py's own exception classes, so the store maps them in one place.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import select
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import (
    AuthenticationError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend.backoff import Backoff

# Replies after which the connection itself is suspect (credentials changed, a replica after a
# failover): it is closed, and the next call makes a new one.
RECONNECT_ON = (AuthenticationError, ReadOnlyError, MasterDownError)
ASKING = b"*1\r\n$6\r\nASKING\r\n"


@dataclass(frozen=True)
class ServerAddress:
    """Where and how to connect, exactly as redis-py reads the URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # unix socket
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None

    @classmethod
    def from_url(cls, url: str) -> ServerAddress:
        options = parse_url(url)
        connection_class = options.pop("connection_class", None)
        tls = None
        if connection_class is not None and issubclass(connection_class, SSLConnection):
            tls = connection_class(**options).ssl_context.get()  # redis-py's own context, every ssl_* option
        return cls(
            host=options.get("host") or "127.0.0.1",
            port=int(options.get("port") or 6379),
            path=options.get("path"),
            username=options.get("username"),
            password=options.get("password"),
            db=int(options.get("db") or 0),
            tls=tls,
            server_hostname=(options.get("host") or urlsplit(url).hostname) if tls else None,
        )

    def at(self, host: str, port: int) -> ServerAddress:
        """The same credentials and TLS at another node of a Redis Cluster (which has database 0 only)."""
        return replace(self, host=host, port=port, path=None, db=0, server_hostname=host if self.tls else None)


def encode(part: bytes | str | int | float) -> bytes:
    if isinstance(part, bytes):
        return part
    return str(part).encode()


def bulk(part: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(part), part)


def pack_command(*parts: bytes | str | int | float) -> bytes:
    """One command in RESP, byte for byte as redis-py encodes it."""
    return b"*%d\r\n" % len(parts) + b"".join(bulk(encode(part)) for part in parts)


class CommandPrefix:
    """A command whose leading arguments are packed once; each call adds the rest (any number):
    a chunk's EVALSHA costs a few byte joins."""

    __slots__ = ("count", "packed")

    def __init__(self, *parts: bytes | str | int | float) -> None:
        self.count = len(parts)
        self.packed = b"".join(bulk(encode(part)) for part in parts)

    def with_args(self, *parts: bytes) -> bytes:
        """The whole command: the prefix, then `parts` (already bytes)."""
        return b"".join(
            [
                b"*%d\r\n" % (self.count + len(parts)),
                self.packed,
                *[b"$%d\r\n%b\r\n" % (len(part), part) for part in parts],
            ]
        )


def reply_error(reply: hiredis.ReplyError) -> RedisError:
    """A Redis error reply as the redis-py exception it stands for (LOADING -> BusyLoadingError...)."""
    error: RedisError = BaseParser.parse_error(str(reply))
    return error


class RespProtocol(asyncio.Protocol):
    """A RESP connection: writes batched per loop turn, replies to waiting futures in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        # Each command's future, and when the write that carried it left (one list per write,
        # stamped at the flush: a command queued on a busy loop has not waited on Redis yet).
        self.waiting: collections.deque[tuple[asyncio.Future[Any], list[float]]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.outgoing: list[bytes] = []
        self.batch: list[float] = []  # the stamp of the commands in `outgoing` (empty: not written yet)
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[Exception] = self.loop.create_future()

    @property
    def lost(self) -> bool:
        return self.closed.done()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream connection's: asyncio names the base class
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def write(self, command: bytes) -> None:
        if not self.outgoing:
            self.loop.call_soon(self._flush)
        self.outgoing.append(command)

    def _flush(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()
        self.batch.append(self.loop.time())
        self.batch = []

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Write a packed command; the future gets its reply (an error reply as a RedisError)."""
        future = self.loop.create_future()
        if self.lost:
            future.set_exception(RedisConnectionError("Redis connection lost"))
            return future
        self.waiting.append((future, self.batch))
        self.write(command)
        return future

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                self.on_reply(reply)
        except hiredis.ProtocolError as error:
            self.fail(RedisConnectionError(f"Redis protocol error: {error}"))

    def on_reply(self, reply: Any) -> None:
        self.resolve(reply)

    def resolve(self, reply: Any) -> None:
        if not self.waiting:
            return
        future, _ = self.waiting.popleft()
        if future.done():  # its caller timed out
            return
        if isinstance(reply, hiredis.ReplyError):
            error = reply_error(reply)
            future.set_exception(error)
            if isinstance(error, RECONNECT_ON):
                self.fail(RedisConnectionError(f"Redis refused the connection: {error}"))
        else:
            future.set_result(reply)

    def oldest_wait(self) -> float:
        """Seconds the oldest unanswered command has waited since it was written (0 when none,
        or when it is still queued in this process)."""
        if not self.waiting or not (written := self.waiting[0][1]):
            return 0.0
        return self.loop.time() - written[0]

    def unread(self) -> bool:
        """Has Redis sent bytes this process has not read yet? Then the wait is this process's
        event loop, busy elsewhere, not Redis (the answers come in order: the oldest's is there)."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(readable)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Redis connection lost: {exc}" if exc else "Redis closed the connection"))

    def fail(self, error: Exception) -> None:
        """Close the connection; every waiting caller gets `error`."""
        if not self.closed.done():
            self.closed.set_result(error)
        self.outgoing.clear()
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.close()


class Locator(Protocol):
    """Where the master is now (behind Sentinel: backend/redis/sentinel.py), asked on every (re)connect."""

    async def locate(self) -> ServerAddress: ...


Resp = TypeVar("Resp", bound=RespProtocol)


async def open_connection(
    address: ServerAddress,
    protocol_factory: Callable[[], Resp],
    within: float,
    *,
    select_db: bool = True,
    master: bool = False,
) -> Resp:
    """A connected protocol, after TLS, AUTH and SELECT succeeded; closed again when any fails.
    `master`: the server must also say it is a master (ROLE), as Sentinel's clients check: a
    Sentinel may still name the old master while a failover is under way."""
    loop = asyncio.get_running_loop()
    protocol: Resp | None = None
    try:
        async with asyncio.timeout(within):
            if address.path:
                _, protocol = await loop.create_unix_connection(protocol_factory, address.path)
            else:
                _, protocol = await loop.create_connection(
                    protocol_factory,
                    address.host,
                    address.port,
                    ssl=address.tls,
                    server_hostname=address.server_hostname if address.tls else None,
                )
            setup = []
            if address.password:
                credentials = [address.username] if address.username else []
                setup.append(protocol.send(pack_command("AUTH", *credentials, address.password)))
            if select_db and address.db:
                setup.append(protocol.send(pack_command("SELECT", address.db)))
            for reply in setup:
                await reply
            if master:
                await _check_master(protocol, address)
    except BaseException as error:
        if protocol is not None:
            protocol.fail(RedisConnectionError("Redis connection set-up failed"))
        if isinstance(error, TimeoutError):
            raise RedisTimeoutError(f"Redis did not answer within {within} s") from None
        if isinstance(error, OSError | ssl.SSLError):
            raise RedisConnectionError(f"Cannot reach Redis: {error}") from error
        raise
    return protocol


async def _check_master(protocol: RespProtocol, address: ServerAddress) -> None:
    try:
        role = await protocol.send(pack_command("ROLE"))
    except NoPermissionError:
        return  # an ACL user without ROLE (@admin): READONLY on the first write finds out instead
    if not role or role[0] != b"master":
        kind = role[0].decode() if role else "unknown"
        raise RedisConnectionError(f"{address.host}:{address.port} is a {kind}, not the master")


class Reconnector:
    """When the next connection attempt may be made: backoff with jitter after failures, so a
    Redis that is down is not hammered, and callers in between fail fast."""

    def __init__(self, base: float = 0.05, cap: float = 2.0) -> None:
        self.backoff = Backoff(base, cap)
        self.not_before = 0.0

    def failed(self) -> None:
        self.not_before = asyncio.get_running_loop().time() + self.backoff.next()

    def succeeded(self) -> None:
        self.backoff.reset()
        self.not_before = 0.0

    def wait_time(self) -> float:
        return max(0.0, self.not_before - asyncio.get_running_loop().time())


class MultiplexedConnection:
    """One connection shared by every caller of a process. Callers write their command and await
    its future; a watchdog closes the connection when the oldest command gets no answer within
    the timeout (a stalled Redis), so every caller fails within the bound and the next call
    reconnects."""

    def __init__(self, address: ServerAddress, timeout: float, locator: Locator | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self.locator = locator
        self._protocol: RespProtocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._reconnect = Reconnector(cap=0.5)  # a Redis that is back is used again within half a second
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    async def _connect(self) -> RespProtocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._closed:
                raise RedisConnectionError("the connection was closed")
            if self._protocol is not None and not self._protocol.lost:
                return self._protocol
            if self._reconnect.wait_time():
                raise RedisConnectionError("Redis is unreachable; retrying shortly")
            try:
                protocol = await self._open()
            except RedisError:
                self._reconnect.failed()
                raise
            self._reconnect.succeeded()
            if self._closed:  # closed while this one was being made
                protocol.fail(RedisConnectionError("the connection was closed"))
                raise RedisConnectionError("the connection was closed")
            self._protocol = protocol
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.get_running_loop().create_task(self._watch(), name="redis-watchdog")
            return protocol

    async def _open(self) -> RespProtocol:
        if self.locator is None:
            return await open_connection(self.address, RespProtocol, self.timeout)
        # Behind Sentinel: find the master, then connect, both within the one timeout.
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self.timeout):
                address = await self.locator.locate()
        except TimeoutError:
            raise RedisTimeoutError(f"no Sentinel answered within {self.timeout} s") from None
        left = max(0.05, self.timeout - (asyncio.get_running_loop().time() - started))
        return await open_connection(address, RespProtocol, left, master=True)

    def drop(self) -> None:
        """Close the connection now (the master moved); the next call connects again."""
        if self._protocol is not None:
            self._protocol.fail(RedisConnectionError("the master moved (Sentinel failover)"))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.timeout / 4)
            self.check_stalled()

    def check_stalled(self) -> None:
        """Close the connection when its oldest command got no answer within the timeout.

        A starved event loop (a worker at full CPU: one turn of its loop can take seconds) reads
        late: an answer waiting unread in the socket is no stall. Closing the connection then
        failed every call on it, the writers' lease renewals too, and the API ended their
        replies as abandoned (B6 over HTTP, README)."""
        protocol = self._protocol
        if protocol is not None and protocol.oldest_wait() > self.timeout and not protocol.unread():
            protocol.fail(RedisTimeoutError(f"Redis did not answer within {self.timeout} s"))

    async def call(self, *parts: bytes | str | int | float) -> Any:
        return await self.call_packed(pack_command(*parts))

    async def call_packed(self, command: bytes, key: str | bytes = b"", *, asking: bool = False) -> Any:
        """Send one command already in RESP (this server holds `key`); its reply, an error reply
        raised as a RedisError. `asking`: after a Cluster's ASK redirection, ASKING goes first,
        back to back with the command (it applies to the next command only)."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        if not asking:
            return await protocol.send(command)
        outcome = await asyncio.gather(protocol.send(ASKING), protocol.send(command), return_exceptions=True)
        for result in outcome:
            if isinstance(result, BaseException):
                raise result
        return outcome[1]

    def send_nowait(self, command: bytes, key: str | bytes = b"") -> asyncio.Future[Any] | None:
        """Write one packed command now, without a task or an await: the future of its reply,
        or None when there is no live connection (then the caller takes the async path, which
        connects). The hottest writer (one call per chunk) waits on it with a callback."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            return None
        return protocol.send(command)

    async def evalsha(self, script_source: str, command: bytes, key: str | bytes = b"", *, asking: bool = False) -> Any:
        """Run a packed EVALSHA; a Redis restarted without its scripts gets the script loaded."""
        try:
            return await self.call_packed(command, asking=asking)
        except NoScriptError:
            await self.call("SCRIPT", "LOAD", script_source)
            return await self.call_packed(command, asking=asking)

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._protocol is not None:
            self._protocol.fail(RedisConnectionError("closed"))


class CommandPath(Protocol):
    """Where the hot calls go, packed: one multiplexed connection (a single Redis), or one per
    master with each call routed by `key`'s slot (a Cluster: backend/redis/cluster.py)."""

    async def call_packed(self, command: bytes, key: str | bytes) -> Any: ...

    async def evalsha(self, script_source: str, command: bytes, key: str | bytes) -> Any: ...

    def send_nowait(self, command: bytes, key: str | bytes) -> asyncio.Future[Any] | None: ...

    async def close(self) -> None: ...


MESSAGE_KINDS = (b"message", b"smessage")
SUBSCRIBED_KINDS = (b"subscribe", b"ssubscribe")
UNSUBSCRIBED_KINDS = (b"unsubscribe", b"sunsubscribe")


class PubSubProtocol(RespProtocol):
    """A subscribed connection: messages and (un)subscribe notices go to callbacks as parsed;
    other replies (set-up, PING, refused subscriptions) answer waiting futures in order."""

    def __init__(
        self,
        on_message: Callable[[bytes, bytes], None],
        on_subscribed: Callable[[bytes], None],
        on_unsubscribed: Callable[[bytes], None],
        on_refused: Callable[[RedisError], None],
    ) -> None:
        super().__init__()
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.on_unsubscribed = on_unsubscribed
        self.on_refused = on_refused
        self.heard = self.loop.time()  # when Redis last said anything

    def data_received(self, data: bytes) -> None:
        self.heard = self.loop.time()
        super().data_received(data)

    def on_reply(self, reply: Any) -> None:
        if isinstance(reply, list) and reply:
            kind = reply[0]
            if kind in MESSAGE_KINDS:
                self.on_message(reply[1], reply[2])
                return
            if kind in SUBSCRIBED_KINDS:
                self.on_subscribed(reply[1])
                return
            if kind in UNSUBSCRIBED_KINDS:
                self.on_unsubscribed(reply[1])
                return
            if kind == b"pong":
                self.resolve(b"PONG")
                return
        if isinstance(reply, hiredis.ReplyError) and not self.waiting:
            # A refused SUBSCRIBE (e.g. MOVED on a cluster): subscriptions have no waiting future.
            self.on_refused(reply_error(reply))
            return
        self.resolve(reply)

    def command(self, *parts: bytes | str | int) -> None:
        """A command whose answer comes as a notice (SUBSCRIBE, UNSUBSCRIBE)."""
        self.write(pack_command(*parts))

    async def ping(self, within: float) -> None:
        """Raises TimeoutError when Redis does not answer a PING within `within` seconds."""
        async with asyncio.timeout(within):
            await self.send(pack_command("PING"))
