"""The reply stream's wire format (Server-Sent Events): frames and event ids, built and parsed here.

This is the product's streaming contract (api-spec.md): every event of a reply is one frame

    id: <generation>-<seq>\\n[event: done|error\\n]data: <one line of JSON>\\n\\n

`seq` counts from 1 within a generation; a chunk's data is ``{"content": ...}`` (plus, in
benchmarks only, extra fields after it); the final event is `done` or `error` and ends the reply.
A frame's JSON never holds a raw newline, so a blank line always ends a frame.

Redis builds the chunk and final frames in Lua, once per event, for the log and the channel
alike: lua/append_chunk.lua and lua/finish_reply.lua build exactly what `frame()` builds (a
unit test runs them against a real Redis and parses their output here). finish_reply.lua also
compacts a finished reply's log into one value; `expand_compacted` turns it back into frames.

Besides the store (backend/store/replies.py, chats.py), this module is used by the relay
(backend/assistant/relay.py), the stream routes, the benchmarks' load clients and minimal hub
(bench/) and the tests' SSE reader (tests/support/sse.py). It imports nothing of
the project, so every layer may use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson

# `<generation>-<seq>`: ASCII digits, bounded, no leading zero (what the log writes).
EVENT_ID_PATTERN = "^[1-9][0-9]{0,17}-(0|[1-9][0-9]{0,17})$"
EVENT_ID = re.compile(r"([1-9][0-9]{0,17})-(0|[1-9][0-9]{0,17})", re.ASCII)


# --- event ids ---------------------------------------------------------------------------------


def event_id(gen: int, seq: int) -> str:
    return f"{gen}-{seq}"


def parse_event_id(value: str) -> tuple[int, int] | None:
    """(generation, seq) of an event id a client sent back, else None."""
    match = EVENT_ID.fullmatch(value.strip())
    return (int(match[1]), int(match[2])) if match else None


# --- data (JSON) of each event ---------------------------------------------------------------


def chunk_data(content: str, **extra: object) -> bytes:
    """A chunk's data. `extra` fields are for benchmarks (a publish time), never for clients."""
    return orjson.dumps({"content": content, **extra} if extra else {"content": content})


def done_data(finish_reason: str = "stop", usage: dict[str, int] | None = None) -> bytes:
    """The `done` event's data: why the reply ended and, when known, what it cost."""
    done: dict[str, object] = {"content": "", "finishReason": finish_reason}
    if usage is not None:
        done["usage"] = usage
    return orjson.dumps(done)


def stopped_data() -> bytes:
    """The `done` event of a reply the user stopped."""
    return orjson.dumps({"content": "", "stopped": True, "finishReason": "stopped"})


def error_data(message: str) -> bytes:
    """The `error` event's data."""
    return orjson.dumps({"content": "", "message": message})


# --- frames ------------------------------------------------------------------------------------


def frame(gen: int, seq: int, data: bytes, event: str = "") -> bytes:
    """One event's frame, byte for byte as the Lua scripts build it."""
    if event:
        return b"id: %d-%d\nevent: %b\ndata: %b\n\n" % (gen, seq, event.encode(), data)
    return b"id: %d-%d\ndata: %b\n\n" % (gen, seq, data)


def split_frames(message: bytes) -> list[bytes]:
    """The frames of a published message (a writer publishes the chunks that were ready together)."""
    return [frame + b"\n\n" for frame in message.split(b"\n\n") if frame]


def message_span(message: bytes) -> tuple[int, int, bool]:
    """(first seq, last seq, whether the last frame ends the reply) of a published message. Frames
    are separated by a blank line, which a frame's JSON data never contains."""
    first, final = frame_seq(message)
    last_start = message.rfind(b"\n\nid: ", 0, len(message) - 2)
    if last_start < 0:
        return first, first, final
    last, final = frame_seq(message[last_start + 2 :])
    return first, last, final


def frame_seq(frame: bytes) -> tuple[int, bool]:
    """(seq, is final event) of a frame ``id: <gen>-<seq>\\n[event: ...\\n]data: ...``: the fast
    path for code that only needs the sequence (the relay, load clients)."""
    newline = frame.index(b"\n")
    seq = int(frame[frame.index(b"-", 4, newline) + 1 : newline])
    return seq, frame.startswith(b"event:", newline + 1)


def frame_event(frame: bytes) -> str:
    """The event name of a frame that starts with its id line (`message` when it has none)."""
    newline = frame.index(b"\n")
    if not frame.startswith(b"event:", newline + 1):
        return "message"
    return frame[newline + 7 : frame.index(b"\n", newline + 1)].strip().decode()


@dataclass
class Block:
    """One blank-line-terminated block of an event stream, read as EventSource reads it: an
    event (id, event, data) and/or a `retry:` hint, or only comments (a heartbeat)."""

    id: str = ""
    event: str = "message"
    data: str = ""  # the data lines joined by newlines (ours have one line of JSON)
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def is_event(self) -> bool:
        return bool(self.id or self.data)

    def json(self) -> object:
        return orjson.loads(self.data)


def parse_block(text: str) -> Block:
    """Parse one block (without its terminating blank line) field by field, as EventSource does."""
    block = Block()
    data: list[str] = []
    for line in text.split("\n"):
        if line.startswith(":"):
            block.comments.append(line)
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            block.id = value
        elif name == "event":
            block.event = value
        elif name == "data":
            data.append(value)
        elif name == "retry" and value.isascii() and value.isdigit():
            block.retry = int(value)  # it sets the reconnection delay and is no event
    block.data = "\n".join(data)
    return block


class BlockReader:
    """Blocks of an event stream fed in arbitrary pieces (text as it arrives)."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = ""

    def feed(self, text: str) -> list[Block]:
        *blocks, self.pending = (self.pending + text).split("\n\n")  # the last piece may be partial
        return [parse_block(block) for block in blocks if block]


# --- the compacted log of a finished reply (built by lua/finish_reply.lua) -----------------------
#
# One string: `<size of the sizes> <final event>\n`, then each chunk's content size in bytes in
# seq order from 1 (one byte below 255, else byte 255, the size in digits and `;`), then the
# reply's text (the contents one after another), then the final event's data. Only chunks whose
# data is exactly ``{"content": ...}`` are compacted, so `chunk_data` rebuilds each one byte for
# byte.


def expand_compacted(gen: int, value: bytes, after: int, count: int) -> list[bytes]:
    """The frames after seq `after` (at most `count`) of a compacted log."""
    newline = value.index(b"\n")
    blob_size, _, event = value[:newline].partition(b" ")
    start = newline + 1
    blob = value[start : start + int(blob_size)]
    offsets = [start + len(blob)]  # where each chunk's content starts, then where the text ends
    index = 0
    while index < len(blob):
        size = blob[index]
        if size < 255:
            index += 1
        else:
            end = blob.index(b";", index)
            size, index = int(blob[index + 1 : end]), end + 1
        offsets.append(offsets[-1] + size)
    final = len(offsets)  # chunks + 1: the final event's seq
    out: list[bytes] = []
    for seq in range(after + 1, min(final, after + count) + 1):
        if seq == final:
            out.append(frame(gen, seq, value[offsets[-1] :], event.decode()))
        else:
            out.append(frame(gen, seq, chunk_data(value[offsets[seq - 1] : offsets[seq]].decode())))
    return out
