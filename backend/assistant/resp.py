"""A lean Redis pub/sub connection: an asyncio protocol with hiredis' C parser.

redis-py's PubSub builds several dicts and awaits per message; at tens of thousands of
messages per second that is most of the relay's CPU. This protocol parses whatever arrived in
one `data_received` call and hands each message straight to a callback, with no task switch.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlparse

import hiredis

MESSAGE_KINDS = (b"message", b"smessage")
SUBSCRIBED_KINDS = (b"subscribe", b"ssubscribe")


@dataclass(frozen=True)
class Address:
    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # unix socket
    username: str | None = None
    password: str | None = None
    tls: bool = False
    db: int = 0

    @classmethod
    def from_url(cls, url: str) -> Address:
        parsed = urlparse(url)
        secret = {"username": unquote(parsed.username) if parsed.username else None,
                  "password": unquote(parsed.password) if parsed.password else None}
        if parsed.scheme == "unix":
            db = parse_qs(parsed.query).get("db", ["0"])[0]
            return cls(path=parsed.path, db=int(db) if db.isdigit() else 0, **secret)
        db = parsed.path.strip("/")
        return cls(host=parsed.hostname or "127.0.0.1", port=parsed.port or 6379, tls=parsed.scheme == "rediss",
                   db=int(db) if db.isdigit() else 0, **secret)

    def at(self, host: str, port: int) -> Address:
        """The same credentials at another node (Redis Cluster)."""
        return Address(host=host, port=port, username=self.username, password=self.password, tls=self.tls)


def pack(*parts: bytes) -> bytes:
    """One command in RESP."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%b\r\n" % (len(part), part))
    return b"".join(out)


class PubSubConnection(asyncio.Protocol):
    def __init__(self, on_message: Callable[[bytes, bytes], None], on_subscribed: Callable[[bytes], None]) -> None:
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            if isinstance(reply, list):
                kind = reply[0]
                if kind in MESSAGE_KINDS:
                    self.on_message(reply[1], reply[2])
                elif kind in SUBSCRIBED_KINDS:
                    self.on_subscribed(reply[1])
            elif isinstance(reply, hiredis.ReplyError):
                self.fail(ConnectionError(f"Redis refused the pub/sub connection: {reply}"))
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc or ConnectionError("Redis closed the pub/sub connection"))

    def fail(self, error: Exception) -> None:
        if not self.closed.done():
            self.closed.set_result(error)
        if self.transport is not None:
            self.transport.close()

    def command(self, *parts: bytes) -> None:
        assert self.transport is not None
        self.transport.write(pack(*parts))


async def open_pubsub(address: Address, on_message: Callable[[bytes, bytes], None],
                      on_subscribed: Callable[[bytes], None], connect_seconds: float = 2.0) -> PubSubConnection:
    loop = asyncio.get_running_loop()
    protocol = PubSubConnection(on_message, on_subscribed)
    async with asyncio.timeout(connect_seconds):
        if address.path:
            await loop.create_unix_connection(lambda: protocol, address.path)
        else:
            await loop.create_connection(lambda: protocol, address.host, address.port,
                                         ssl=ssl.create_default_context() if address.tls else None)
    if address.password:
        credentials = [address.username.encode()] if address.username else []
        protocol.command(b"AUTH", *credentials, address.password.encode())
    return protocol
