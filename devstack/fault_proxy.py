"""A TCP proxy in front of a real redis-server that can make it answer every command with an error.

    proxy = FaultProxy(server.port).start()      # clients use proxy.url instead of server.url
    proxy.fail_with("LOADING Redis is loading the dataset in memory")
    ...                                           # every command now gets `-LOADING ...` back
    proxy.heal()                                  # forwarding again, on the same connections
    proxy.stop()

It runs its own event loop in a background thread. Each client connection gets its own upstream
connection. The client's bytes always go through a RESP parser (hiredis), so the proxy knows where
each command ends: while healthy it forwards the bytes as they came, while failing it answers each
complete command with the error instead (the upstream connection stays open, idle). Replies from
the server are always forwarded as they come; an error for a command sent while an earlier one is
still with the server waits for that reply (a pipelined or multiplexed client sees its answers in
order). Pub/sub pushes are not told apart from replies, so switch modes while the clients under test
have no request in flight (background traffic such as a worker's blocking read is fine).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque

import hiredis

from devstack.ports import free_port


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.error: bytes | None = None  # the whole error reply while failing, else None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0  # client connections accepted so far

    def url_with(self, *, scheme: str = "redis", credentials: str = "", path: str = "/0", query: str = "") -> str:
        """The proxy's URL, e.g. `url_with(credentials="app:pw@", query="?db=4")`."""
        return f"{scheme}://{credentials}127.0.0.1:{self.port}{path}{query}"

    @property
    def url(self) -> str:
        return self.url_with()

    # Control, from the test's thread.

    def fail_with(self, error: str) -> None:
        """Answer every command with `-<error>` from now on, e.g. `"READONLY You can't write ..."`."""
        if "\r" in error or "\n" in error:
            raise ValueError("an error reply is one line")
        self.error = b"-" + error.encode() + b"\r\n"

    def heal(self) -> None:
        """Forward commands again."""
        self.error = None

    def start(self) -> FaultProxy:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"fault-proxy-{self.port}", daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)
        return self

    def stop(self) -> None:
        """Closes the listener and every connection, then ends the loop's thread."""
        if self.loop is None or self.thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.loop, self.thread = None, None

    # The proxy itself, on its own loop.

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # stop() cancels it: end quietly
            await self._connection(client_reader, client_writer)

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(client_writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self.writers.discard(client_writer)
            client_writer.close()
            return
        self.writers.add(upstream_writer)
        # One slot per command not answered yet, in order: None when it went to the server, else the
        # error to send once the replies before it are out (a reply is never taken for another's).
        slots: deque[bytes | None] = deque()
        replies = asyncio.create_task(self._replies(upstream_reader, client_writer, slots))
        try:
            await self._commands(client_reader, client_writer, upstream_writer, slots)
        except OSError:
            pass
        finally:
            replies.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await replies
            for writer in (client_writer, upstream_writer):
                self.writers.discard(writer)
                writer.close()

    async def _commands(
        self,
        client: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
        slots: deque[bytes | None],
    ) -> None:
        parser = hiredis.Reader()
        while data := await client.read(65536):
            parser.feed(data)
            complete = 0
            try:
                while parser.gets() is not False:
                    complete += 1
            except hiredis.ProtocolError:
                parser = hiredis.Reader()  # not RESP (an inline command): count it as one
                complete += 1
            error = self.error
            if error is None:
                slots.extend([None] * complete)
                upstream.write(data)
                await upstream.drain()
            elif slots:
                slots.extend([error] * complete)
            elif complete:
                client_writer.write(error * complete)
                await client_writer.drain()

    @staticmethod
    async def _replies(
        server: asyncio.StreamReader, client_writer: asyncio.StreamWriter, slots: deque[bytes | None]
    ) -> None:
        parser = hiredis.Reader()
        try:
            while data := await server.read(65536):
                client_writer.write(data)
                parser.feed(data)
                try:
                    while parser.gets() is not False:
                        if slots and slots[0] is None:
                            slots.popleft()
                        while slots and slots[0] is not None:
                            client_writer.write(slots.popleft())
                except hiredis.ProtocolError:
                    parser = hiredis.Reader()
                await client_writer.drain()
        except OSError:
            pass
        client_writer.close()  # the server closed: so does the client's side
