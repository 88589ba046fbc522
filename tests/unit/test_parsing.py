"""What clients send in headers, parsed strictly: tokens, event ids, SSE frames."""

from __future__ import annotations

import pytest

from backend.sse import frame_seq, message_span, parse_event_id, split_frames
from backend.store.tokens import new_token, parse_token

SECRET = "A" * 43


def test_a_new_token_parses_to_its_user() -> None:
    token = new_token(42)
    parsed = parse_token(token)
    assert parsed is not None and parsed[0] == 42 and parsed[1].startswith("ai:{u:42}:session:")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "42",
        f"42{SECRET}",
        f"42.{SECRET[:-1]}",
        f"42.{SECRET}A",
        f"042.{SECRET}",
        f"0.{SECRET}",
        f"²2.{SECRET}",
        f"4\u0662.{SECRET}",
        f"-1.{SECRET}",
        f"{'9' * 19}.{SECRET}",
        f"{'9' * 5000}.{SECRET}",
        f"42.{SECRET[:-1]}é",
        f"42.{SECRET[:-1]}=",
        f" 42.{SECRET}",
    ],
)
def test_malformed_tokens_are_refused_before_any_lookup(token: str) -> None:
    assert parse_token(token) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3-17", (3, 17)),
        (" 3-17 ", (3, 17)),
        ("1-0", (1, 0)),
        (f"{'9' * 18}-1", (int("9" * 18), 1)),
        ("3", None),
        ("3-", None),
        ("-17", None),
        ("03-17", None),
        ("3-017", None),
        ("²-1", None),
        ("3-\u0661", None),
        ("3-17-1", None),
        ("3 -17", None),
        (f"{'9' * 4400}-1", None),
        ("", None),
        ("0-1", None),
    ],
)
def test_event_ids(value: str, expected: tuple[int, int] | None) -> None:
    assert parse_event_id(value) == expected


def test_frames_carry_their_seq_and_whether_they_end_the_reply() -> None:
    assert frame_seq(b'id: 4-12\ndata: {"content":"x"}\n\n') == (12, False)
    assert frame_seq(b'id: 4-13\nevent: done\ndata: {"content":""}\n\n') == (13, True)
    assert frame_seq(b'id: 4-14\nevent: error\ndata: {"content":"","message":"m"}\n\n') == (14, True)


def test_a_message_with_several_frames() -> None:
    frames = [
        b'id: 4-12\ndata: {"content":"a"}\n\n',
        b'id: 4-13\ndata: {"content":"b\\n\\nc"}\n\n',
        b'id: 4-14\ndata: {"content":"d"}\n\n',
    ]
    message = b"".join(frames)
    assert message_span(message) == (12, 14, False)
    assert message_span(frames[0]) == (12, 12, False)
    assert split_frames(message) == frames
    final = b'id: 4-15\nevent: done\ndata: {"content":""}\n\n'
    assert message_span(frames[2] + final) == (14, 15, True)
