"""Reading Server-Sent Events the way a browser's EventSource does."""

from __future__ import annotations

import json
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


async def read(response: httpx.Response, *, max_events: int | None = None) -> Stream:
    """Read until the server closes the stream (or `max_events` arrived)."""
    stream = Stream()
    current = Event()
    pending = ""
    async for chunk in response.aiter_text():
        stream.raw += chunk
        *lines, pending = (pending + chunk).split("\n")  # the last piece may be a partial line
        for line in lines:
            if line == "":
                if current.id or current.data:
                    stream.events.append(current)
                    if max_events is not None and len(stream.events) >= max_events:
                        return stream
                current = Event()
            elif line.startswith(":"):
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
                elif name == "retry" and value.isascii() and value.isdigit():
                    stream.retry = int(value)  # as EventSource: it sets the delay and is no event
    return stream
