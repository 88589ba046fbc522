"""Reading Server-Sent Events the way a browser's EventSource does."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from backend.sse import BlockReader, parse_event_id


@dataclass
class Event:
    id: str = ""
    event: str = "message"
    data: dict = field(default_factory=dict)

    @property
    def seq(self) -> int:
        parsed = parse_event_id(self.id)
        assert parsed is not None, f"not an event id: {self.id!r}"
        return parsed[1]


@dataclass
class Stream:
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None  # the last `retry:` hint (EventSource's reconnection delay, ms)
    raw: str = ""

    @property
    def text(self) -> str:
        return "".join(e.data["content"] for e in self.events)

    @property
    def last(self) -> Event:
        return self.events[-1]

    @property
    def finished(self) -> bool:
        return bool(self.events) and self.last.event in ("done", "error")


async def events(response: httpx.Response, stream: Stream | None = None) -> AsyncIterator[Event]:
    """Events as they arrive, parsed as EventSource does (backend/sse.py's reader). With
    `stream`, the raw text, comments and `retry:` hint are kept there too."""
    reader = BlockReader()
    async for chunk in response.aiter_text():
        if stream is not None:
            stream.raw += chunk
        for block in reader.feed(chunk):
            if stream is not None:
                stream.comments += block.comments
                if block.retry is not None:
                    stream.retry = block.retry
            if block.is_event:
                yield Event(block.id, block.event, json.loads(block.data) if block.data else {})


async def read(response: httpx.Response, *, max_events: int | None = None) -> Stream:
    """Read until the server closes the stream (or `max_events` arrived)."""
    stream = Stream()
    async with contextlib.aclosing(events(response, stream)) as arriving:
        async for event in arriving:
            stream.events.append(event)
            if max_events is not None and len(stream.events) >= max_events:
                break
    return stream
