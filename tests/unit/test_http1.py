"""The LLM transport's HTTP/1.1 response parser (workers/llm/http1.py): every framing, fed whole
and one byte at a time, keep-alive, and what it refuses."""

from __future__ import annotations

import pytest

from workers.llm.http1 import ParserError, ResponseParser


class Sink:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.body = b""
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        assert not self.complete
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def parsed(raw: bytes, *, bytewise: bool) -> tuple[Sink, ResponseParser]:
    sink = Sink()
    parser = ResponseParser(sink)
    for piece in [raw[i : i + 1] for i in range(len(raw))] if bytewise else [raw]:
        parser.feed(piece)
    return sink, parser


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"6\r\ndata: \r\n"
    b"a;ext=1\r\n0123456789\r\n"
    b"0\r\nX-Trailer: t\r\n\r\n"
)


@pytest.mark.parametrize("bytewise", [False, True])
def test_chunked(bytewise: bool) -> None:
    sink, parser = parsed(CHUNKED, bytewise=bytewise)
    assert (parser.status, parser.keep_alive, sink.complete) == (200, True, True)
    assert sink.body == b"data: 0123456789"
    assert sink.headers[0] == (b"Content-Type", b"text/event-stream")


@pytest.mark.parametrize("bytewise", [False, True])
def test_content_length_then_nothing_more(bytewise: bool) -> None:
    sink, parser = parsed(
        b"HTTP/1.1 429 Too Many\r\nContent-Length: 5\r\nRetry-After: 2\r\n\r\nhello", bytewise=bytewise
    )
    assert (parser.status, sink.body, sink.complete, parser.keep_alive) == (429, b"hello", True, True)
    parser.feed(b"junk")  # bytes nobody asked for: the connection is not reused
    assert not parser.keep_alive


def test_empty_bodies_complete_with_the_head() -> None:
    for raw in (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"):
        sink, _ = parsed(raw, bytewise=False)
        assert sink.complete and sink.body == b""


def test_a_body_until_the_close_is_not_kept_alive() -> None:
    sink, parser = parsed(b"HTTP/1.1 200 OK\r\n\r\nsome", bytewise=False)
    parser.feed(b" more")
    assert (sink.body, sink.complete, parser.keep_alive) == (b"some more", False, False)


def test_keep_alive_rules() -> None:
    assert not parsed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", bytewise=False)[
        1
    ].keep_alive
    assert not parsed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", bytewise=False)[1].keep_alive
    http10 = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    assert parsed(http10, bytewise=False)[1].keep_alive


def test_an_interim_response_is_skipped() -> None:
    sink, parser = parsed(b"HTTP/1.1 100 Continue\r\n\r\n" + CHUNKED, bytewise=True)
    assert (parser.status, sink.body, sink.complete) == (200, b"data: 0123456789", True)


@pytest.mark.parametrize(
    "raw",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
    ],
)
def test_what_is_no_response_is_refused(raw: bytes) -> None:
    with pytest.raises(ParserError):
        parsed(raw, bytewise=False)


def test_an_endless_head_is_refused() -> None:
    with pytest.raises(ParserError):
        parsed(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20_000, bytewise=False)
