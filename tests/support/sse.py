"""Reading Server-Sent Events the way a browser's EventSource does."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx


@dataclass
class Event:
    id: str = ""
    event: str = "message"
    data: dict = field(default_factory=dict)

    @property
    def seq(self) -> int:
        return int(self.id.partition("-")[2])


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
    """Events as they arrive, parsed as EventSource does. With `stream`, the raw text, comments
    and `retry:` hint are kept there too."""
    current = Event()
    pending = ""
    async for chunk in response.aiter_text():
        if stream is not None:
            stream.raw += chunk
        *lines, pending = (pending + chunk).split("\n")  # the last piece may be a partial line
        for line in lines:
            if line == "":
                if current.id or current.data:
                    yield current
                current = Event()
            elif line.startswith(":"):
                if stream is not None:
                    stream.comments.append(line)
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    current.id = value
                elif name == "event":
                    current.event = value
                elif name == "data":
                    current.data = json.loads(value)
                elif name == "retry" and value.isascii() and value.isdigit() and stream is not None:
                    stream.retry = int(value)  # as EventSource: it sets the delay and is no event


async def read(response: httpx.Response, *, max_events: int | None = None) -> Stream:
    """Read until the server closes the stream (or `max_events` arrived)."""
    stream = Stream()
    async with contextlib.aclosing(events(response, stream)) as arriving:
        async for event in arriving:
            stream.events.append(event)
            if max_events is not None and len(stream.events) >= max_events:
                break
    return stream
