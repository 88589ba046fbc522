"""A multiplexed Redis connection for the hottest calls (the session check of every request, and
the workers' reply chunks).

redis-py takes a pooled connection, packs, sends, reads and releases per command; at thousands of
requests per second that Python overhead outweighs the Redis round trip itself. Here every
caller writes its command to one shared connection and awaits a future; Redis answers in order,
so replies resolve the waiting futures first-in first-out, and concurrent requests share
system calls. It is used on a single Redis; a Redis Cluster goes through redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from typing import Any

import hiredis
from redis.commands.core import AsyncScript

from backend.assistant.resp import Address, pack


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.outgoing: list[bytes] = []  # commands of this loop turn, written in one system call

    def queue(self, command: bytes) -> None:
        if not self.outgoing:
            asyncio.get_running_loop().call_soon(self.flush)
        self.outgoing.append(command)

    def flush(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future = self.waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.outgoing.clear()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError("Redis connection lost"))


class Multiplexed:
    def __init__(self, address: Address) -> None:
        self.address = address
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and not self._protocol.lost:
                return self._protocol
            loop = asyncio.get_running_loop()
            protocol = _Protocol()
            async with asyncio.timeout(2):
                if self.address.path:
                    await loop.create_unix_connection(lambda: protocol, self.address.path)
                else:
                    await loop.create_connection(lambda: protocol, self.address.host, self.address.port,
                                                 ssl=ssl.create_default_context() if self.address.tls else None)
            # AUTH and SELECT are queued before anyone else can use the connection.
            setup = []
            if self.address.password:
                credentials = [self.address.username.encode()] if self.address.username else []
                setup.append(self._send(protocol, b"AUTH", *credentials, self.address.password.encode()))
            if self.address.db:
                setup.append(self._send(protocol, b"SELECT", str(self.address.db).encode()))
            self._protocol = protocol
            for reply in setup:
                await reply
            return protocol

    @staticmethod
    def _send(protocol: _Protocol, *parts: bytes) -> asyncio.Future[Any]:
        return Multiplexed._send_packed(protocol, pack(*parts))

    @staticmethod
    def _send_packed(protocol: _Protocol, command: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.waiting.append(future)
        protocol.queue(command)
        return future

    async def call(self, *parts: bytes) -> Any:
        return await self.call_packed(pack(*parts))

    async def call_packed(self, command: bytes) -> Any:
        """Send one command already in RESP; its reply (a hiredis.ReplyError is raised)."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        return await self._send_packed(protocol, command)

    async def evalsha(self, script: AsyncScript, command: bytes) -> Any:
        """Run a packed EVALSHA of `script`; a Redis restarted without its scripts gets it loaded."""
        try:
            return await self.call_packed(command)
        except hiredis.ReplyError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
            await script.registered_client.script_load(script.script)
            return await self.call_packed(command)

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            with contextlib.suppress(Exception):
                self._protocol.transport.close()
