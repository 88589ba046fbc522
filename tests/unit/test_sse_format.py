"""What the Lua scripts build is backend/sse.py's format: the scripts run against the test's real
Redis, their log, their published messages and the compacted log are parsed with backend/sse.py."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
import redis as sync_redis

from backend import sse
from backend.redis.scripts import LUA_DIR
from backend.store import keys

GEN = 7
TOKEN = "writer-token"
LOG_TTL = 600
CHUNKS = ["Hello", ", ", 'a "quoted"\nline', " é ☃ 😀", "\\ back\tslash", ""]
_users = itertools.count(int(time.time() * 1000) % 10**9 * 1000)  # fresh keys on a shared Redis


@pytest.fixture
def raw(redis_url: str) -> Iterator[sync_redis.Redis]:
    client = sync_redis.Redis.from_url(redis_url)  # bytes, as the frames are
    yield client
    client.close()


def script(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text()


class Reply:
    """One reply's keys on the real Redis, driven through the real scripts."""

    def __init__(self, client: sync_redis.Redis) -> None:
        self.client = client
        self.user, self.chat_id = next(_users), 1
        self.chat = keys.chat(self.user, self.chat_id)
        self.log = keys.reply_log(self.user, self.chat_id, GEN)
        self.channel = keys.reply_channel(self.user, self.chat_id, GEN)
        client.hset(
            self.chat, mapping={"replyGen": GEN, "replyToken": TOKEN, "replyStatus": "streaming", "replySeq": 0}
        )

    def append(self, first: int, chunks: list[tuple[bytes, str]]) -> int:
        args: list[bytes | str | int] = [GEN, TOKEN, LOG_TTL, self.channel, "PUBLISH", first]
        for data, content in chunks:
            args += [data, content]
        chat, log, partial = self.chat, self.log, keys.partial(self.user, self.chat_id)
        return int(self.client.eval(script("append_chunk"), 3, chat, log, partial, *args))

    def finish(self, mode: str, data: bytes) -> int:
        user, chat_id = self.user, self.chat_id
        return int(
            self.client.eval(
                script("finish_reply"),
                8,
                self.chat,
                self.log,
                keys.partial(user, chat_id),
                keys.reply_lease(user, chat_id),
                keys.messages(user, chat_id),
                keys.chats(user),
                keys.user(user),
                keys.reply_log(user, chat_id, GEN - 1),
                *[
                    GEN,
                    TOKEN,
                    mode,
                    data,
                    int(time.time() * 1000),
                    LOG_TTL,
                    self.channel,
                    "PUBLISH",
                    chat_id,
                    60_000,
                    50,
                ],
            )
        )

    def read_log(self, after: int, count: int = 500) -> list[bytes]:
        """What Replies.read_log does with read_log.lua's answer."""
        compacted, found = self.client.eval(script("read_log"), 1, self.log, after, count)
        if compacted:
            return sse.expand_compacted(GEN, found, after, count)
        return [fields[1] for _, fields in found]


def published(pubsub: sync_redis.client.PubSub) -> list[bytes]:
    messages = []
    while (message := pubsub.get_message(timeout=1.0)) is not None:
        if message["type"] == "message":
            messages.append(message["data"])
    return messages


def test_lua_frames_parse_with_the_format_module(raw: sync_redis.Redis) -> None:
    reply = Reply(raw)
    pubsub = raw.pubsub()
    pubsub.subscribe(reply.channel)
    datas = [sse.chunk_data(c) for c in CHUNKS[:-1]] + [sse.chunk_data(CHUNKS[-1], t=1.5)]  # a benchmark's extra field
    chunks = list(zip(datas, CHUNKS, strict=True))
    assert reply.append(1, chunks[:1]) == 1
    assert reply.append(2, chunks[1:]) == len(CHUNKS)  # several chunks in one call: one message
    log = reply.read_log(0)

    # Byte for byte what sse.frame builds, and parsed back as EventSource would.
    assert log == [sse.frame(GEN, seq, data) for seq, data in enumerate(datas, 1)]
    for seq, (frame, content) in enumerate(zip(log, CHUNKS, strict=True), 1):
        assert sse.frame_seq(frame) == (seq, False)
        assert sse.frame_event(frame) == "message"
        block = sse.parse_block(frame.decode().removesuffix("\n\n"))
        assert block.id == sse.event_id(GEN, seq) and sse.parse_event_id(block.id) == (GEN, seq)
        assert block.event == "message" and block.json()["content"] == content  # type: ignore[index]

    done = sse.done_data("length", {"promptTokens": 3, "completionTokens": 6})
    final_seq = reply.finish("done", done)
    assert final_seq == len(CHUNKS) + 1
    final = sse.frame(GEN, final_seq, done, "done")
    assert sse.frame_seq(final) == (final_seq, True) and sse.frame_event(final) == "done"

    # The channel carried the same frames: one message per call, split by the relay's helpers.
    messages = published(pubsub)
    pubsub.close()
    assert [sse.message_span(m) for m in messages] == [
        (1, 1, False),
        (2, len(CHUNKS), False),
        (final_seq,) * 2 + (True,),
    ]
    assert [f for m in messages for f in sse.split_frames(m)] == [*log, final]

    # Events as a client reads the whole stream.
    reader = sse.BlockReader()
    text = "".join(f.decode() for f in [*log, final])
    blocks = reader.feed(text[:7]) + reader.feed(text[7:])  # split anywhere
    assert [b.id for b in blocks] == [sse.event_id(GEN, s) for s in range(1, final_seq + 1)]
    assert blocks[-1].event == "done" and blocks[-1].json() == {
        "content": "",
        "finishReason": "length",
        "usage": {"promptTokens": 3, "completionTokens": 6},
    }


@pytest.mark.parametrize(
    ("mode", "event", "data"),
    [
        ("done", "done", sse.done_data()),
        ("error", "error", sse.error_data("boom\n")),
        ("stopped", "done", sse.stopped_data()),
    ],
)
def test_a_finished_log_is_compacted_and_answers_every_event_id(
    raw: sync_redis.Redis, mode: str, event: str, data: bytes
) -> None:
    reply = Reply(raw)
    # Sizes of one byte and of many (300), none (an empty chunk), escapes, multi-byte characters.
    words = [f" w{i}" for i in range(216)] + ['"é"\n', "", "x" * 300, " ☃😀\\", "\u0001"]
    datas = [sse.chunk_data(w) for w in words]
    for seq, (d, w) in enumerate(zip(datas, words, strict=True), 1):
        reply.append(seq, [(d, w)])
    stream_form = {after: reply.read_log(after) for after in range(len(words) + 1)}
    stream_bytes = raw.memory_usage(reply.log)
    final_seq = reply.finish(mode, data)
    final = sse.frame(GEN, final_seq, data, event)

    assert raw.type(reply.log) == b"string"  # compacted
    assert 0 < raw.ttl(reply.log) <= LOG_TTL
    compacted_bytes = raw.memory_usage(reply.log)
    assert compacted_bytes * 4 < stream_bytes, (compacted_bytes, stream_bytes)
    # Resume after any event id: the same frames as the live Stream had, then the final one.
    for after in range(final_seq):
        assert reply.read_log(after) == [*stream_form[after], final]
    assert reply.read_log(final_seq) == []
    # Pages: every frame exactly once, in order.
    paged: list[bytes] = []
    while page := reply.read_log(len(paged), count=50):
        paged += page
    assert paged == stream_form[0] + [final]


def test_a_log_with_a_hole_stays_a_stream(raw: sync_redis.Redis) -> None:
    """Compaction needs every entry (a log that expired mid-reply has lost its start): nothing is lost."""
    reply = Reply(raw)
    for seq in range(1, 4):
        reply.append(seq, [(sse.chunk_data(str(seq)), str(seq))])
    raw.xdel(reply.log, "0-1")
    final_seq = reply.finish("done", sse.done_data())
    assert raw.type(reply.log) == b"stream"
    assert reply.read_log(0) == [sse.frame(GEN, s, sse.chunk_data(str(s))) for s in (2, 3)] + [
        sse.frame(GEN, final_seq, sse.done_data(), "done")
    ]


def test_an_error_before_any_chunk_is_compacted_too(raw: sync_redis.Redis) -> None:
    reply = Reply(raw)
    final_seq = reply.finish("error", sse.error_data("no worker"))
    assert final_seq == 1 and raw.type(reply.log) == b"string"
    assert reply.read_log(0) == [sse.frame(GEN, 1, sse.error_data("no worker"), "error")]
    assert reply.read_log(1) == []


def test_a_log_with_extra_fields_stays_a_stream(raw: sync_redis.Redis) -> None:
    """A chunk whose data is more than its content (a benchmark's publish time) could not be
    rebuilt from the text: that log keeps its Stream, and reads the same."""
    reply = Reply(raw)
    datas = [sse.chunk_data("a"), sse.chunk_data("b", t=1.5)]
    for seq, data in enumerate(datas, 1):
        reply.append(seq, [(data, "ab"[seq - 1])])
    final_seq = reply.finish("done", sse.done_data())
    assert raw.type(reply.log) == b"stream"
    assert reply.read_log(1) == [sse.frame(GEN, 2, datas[1]), sse.frame(GEN, final_seq, sse.done_data(), "done")]
