"""HTTP/1.1 over a bare socket, so a test controls every byte a hostile client sends."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    def json(self) -> object:
        return json.loads(self.body)

    @property
    def is_event_stream(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")


def request_bytes(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]] = (), body: bytes = b"") -> bytes:
    """One request that closes the connection after its answer; header values go out as given."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def parse(data: bytes) -> Reply:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(status_line.split(" ", 2)[1]), headers, body)


async def send(port: int, data: bytes) -> Reply:
    """Send `data` and read the answer until the server closes the connection (at most 10 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            return parse(await reader.read())
    finally:
        writer.close()


def send_sync(port: int, data: bytes, timeout: float = 10.0) -> Reply:
    """`send` for code that runs outside the event loop (hypothesis)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything (a head it refused)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass  # closed with unread bytes of ours: the answer came before the reset
    return parse(b"".join(chunks))
