"""An HTTP/1.1 response parser for the LLM client's transport (workers/llm/transport.py): the
status line, the headers, then a body framed by chunked transfer coding, Content-Length, or the
connection's close. Made for a stream of small chunks (an SSE event each): a chunk costs a few
bytes operations, where h11's general state machine cost tens of microseconds."""

from __future__ import annotations

from typing import Protocol

MAX_HEAD = 64 * 1024  # a response head longer than this is refused
HEAD, LENGTH, SIZE, DATA, DATA_END, TRAILERS, UNTIL_CLOSE, DONE = range(8)


class ParserError(Exception):
    """The bytes are not an HTTP/1.1 response."""


class Sink(Protocol):
    def on_header(self, name: bytes, value: bytes) -> None: ...

    def on_headers_complete(self) -> None: ...

    def on_body(self, body: bytes) -> None: ...

    def on_message_complete(self) -> None: ...


class ResponseParser:
    """One response. `status` and `keep_alive` are known when on_headers_complete is called."""

    __slots__ = ("buffer", "keep_alive", "left", "sink", "state", "status")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buffer = b""
        self.state = HEAD
        self.left = 0
        self.status = 0
        self.keep_alive = False

    def feed(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        pos, size = 0, len(buffer)
        sink = self.sink
        while pos < size or (self.state == LENGTH and not self.left):
            state = self.state
            if state == SIZE:
                end = buffer.find(b"\r\n", pos)
                if end < 0:
                    break
                try:
                    self.left = int(buffer[pos:end].split(b";", 1)[0], 16)
                except ValueError:
                    raise ParserError(f"bad chunk size {buffer[pos:end][:20]!r}") from None
                pos = end + 2
                self.state = DATA if self.left else TRAILERS
            elif state == DATA or state == LENGTH:
                take = min(self.left, size - pos)
                if take:
                    sink.on_body(buffer[pos : pos + take])
                    pos += take
                    self.left -= take
                if self.left:
                    break
                if state == DATA:
                    self.state = DATA_END
                else:
                    self._complete()
            elif state == DATA_END:
                if size - pos < 2:
                    break
                if buffer[pos : pos + 2] != b"\r\n":
                    raise ParserError("a chunk does not end with CRLF")
                pos += 2
                self.state = SIZE
            elif state == HEAD:
                end = buffer.find(b"\r\n\r\n", pos)
                if end < 0:
                    if size - pos > MAX_HEAD:
                        raise ParserError("the response head is too long")
                    break
                self._head(buffer[pos:end])
                pos = end + 4
            elif state == TRAILERS:
                end = buffer.find(b"\r\n", pos)
                if end < 0:
                    break
                if end == pos:  # the blank line after the last chunk (and any trailers)
                    self._complete()
                pos = end + 2
            elif state == UNTIL_CLOSE:
                sink.on_body(buffer[pos:])
                pos = size
            else:  # DONE: bytes after the response, which no request asked for
                self.keep_alive = False
                pos = size
        self.buffer = buffer[pos:] if pos < size else b""

    def _complete(self) -> None:
        self.state = DONE
        self.sink.on_message_complete()

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ParserError(f"bad status line {lines[0][:40]!r}")
        status = int(parts[1])
        if 100 <= status < 200:
            return  # an interim response (100 Continue): the real one follows
        self.status = status
        chunked, length, connection = False, None, b""
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise ParserError(f"bad header line {line[:40]!r}")
            name, value = name.strip(), value.strip()
            self.sink.on_header(name, value)
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif lowered == b"content-length":
                if not value.isdigit():
                    raise ParserError(f"bad content-length {value[:20]!r}")
                length = int(value)
            elif lowered == b"connection":
                connection = value.lower()
        http11 = parts[0] == b"HTTP/1.1"
        self.keep_alive = b"close" not in connection if http11 else b"keep-alive" in connection
        self.sink.on_headers_complete()
        if chunked:
            self.state = SIZE
        elif length is not None:
            self.state, self.left = LENGTH, length
        elif status in (204, 304):
            self._complete()
        else:
            self.state = UNTIL_CLOSE  # the body ends with the connection
            self.keep_alive = False
