"""backend/headers.py's encoded_headers gives exactly the bytes of Sanic's own processed_headers."""

from __future__ import annotations

import pytest
from sanic.response import HTTPResponse, empty, json, text

from backend.headers import SANIC_PROCESSED_HEADERS, encoded_headers

SANIC = SANIC_PROCESSED_HEADERS
HEADERS = {
    "X-Request-ID": "abc\r\nSet-Cookie: x=1",  # CR and LF go
    "X-Nul": "a\x00b",
    "X-Unicode": "é ☃ 😀",
    "X-Surrogate": "bad \udcff byte",  # a byte that was not UTF-8, kept as it was
    "Vary": "Authentication, Authorization",
    "X-Number": 42,  # type: ignore[dict-item]
    "Bad\r\nName": "v",
}


@pytest.mark.parametrize(
    "response",
    [
        json({"userId": 1}, headers=HEADERS),
        text("hi", status=404, headers=HEADERS),
        empty(headers=HEADERS),  # 204: no body, no content type
        HTTPResponse(status=304, headers=HEADERS),
        HTTPResponse(status=101),
        json({}, headers={"content-type": "application/problem+json"}),  # a content type of its own is kept
    ],
)
def test_the_same_bytes_as_sanic(response: HTTPResponse) -> None:
    ours = encoded_headers(response)
    assert ours == list(SANIC.fget(response))
    assert all(b"\r" not in n + v and b"\n" not in n + v and b"\x00" not in n + v for n, v in ours)


def test_a_header_name_that_is_not_ascii_fails_as_in_sanic() -> None:
    response = json({}, headers={"X-é": "v"})
    with pytest.raises(UnicodeEncodeError):
        list(SANIC.fget(response))
    with pytest.raises(UnicodeEncodeError):
        encoded_headers(response)
