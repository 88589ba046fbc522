"""B6's load client: prompts POSTed on a schedule, each answer read as it streams (SSE), on uvloop.

Run as a subprocess: python -m bench.prompt_load SPEC.json RESULT.json. SPEC holds host, port,
`spread` (the prompts are sent evenly over this many seconds), `token_interval` (the fake LLM's
pace, seconds per token), `deadline` and the requests (path, headers, body). Each prompt opens
its own connection at its time and writes `POST <path>`; the clock of a prompt starts when its
request is written. A 200 is an admitted stream, read until its final event; a 503 is a refusal
(with or without Retry-After); anything else is counted by status.

Per admitted stream it records the first event's delay after the POST, and for every event its
lag behind the stream's own schedule: the fake LLM emits token k at start + k * token_interval,
so `arrival - seq * token_interval` is constant for a stream delivered without delay; an event's
lag is how far its value lies above the stream's smallest one.
"""

from __future__ import annotations

import asyncio
import resource
import time
from array import array
from typing import Any

import orjson

from backend.sse import frame_event, frame_seq
from bench.spec import percentile, serve_spec
from bench.sse_load import SseStream


class Totals:
    def __init__(self, started: float) -> None:
        self.started = started  # monotonic time of the first scheduled prompt
        self.admitted = 0
        self.refused_retry_after = 0  # 503 with Retry-After: shed, as meant
        self.refused_bare = 0  # 503 without Retry-After
        self.other_status: dict[str, int] = {}
        self.connect_failed = 0
        self.completed = 0  # final event `done`
        self.ended_otherwise: dict[str, int] = {}  # other final events (error, ...)
        # Why they ended: "<event>: <message> (after <n> chunks? yes/no)" -> count, and when (s after the POST).
        self.endings: dict[str, int] = {}
        self.ended_at = array("d")
        self.broken = 0  # admitted, then closed before a final event
        self.events = 0
        self.gaps = 0
        self.duplicates = 0
        self.first_event = array("d")  # seconds from the POST to the first event, admitted streams
        self.refusal = array("d")  # seconds from the POST to a 503's head
        self.connect = array("d")  # seconds from a prompt's scheduled time to its request written
        self.lag = array("d")  # seconds each event lies behind its stream's schedule
        self.per_second: dict[int, int] = {}  # events by whole seconds since `started`
        self.last_event = 0.0  # seconds since `started`


class PromptStream(SseStream):
    """One POST whose answer is a 503, or a 200 with a chunked text/event-stream."""

    def __init__(
        self, request: bytes, totals: Totals, done: asyncio.Future[None], scheduled: float, token_interval: float
    ) -> None:
        super().__init__(request, totals, done, 1)  # type: ignore[arg-type]
        self.totals: Totals = totals  # type: ignore[assignment]
        self.scheduled = scheduled
        self.token_interval = token_interval
        self.sent = 0.0
        self.status = 0
        self.offsets = array("d")  # arrival - seq * token_interval, per event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]
        self.sent = time.monotonic()
        self.totals.connect.append(self.sent - self.scheduled)

    def data_received(self, data: bytes) -> None:
        self.raw += data
        if not self.in_body:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.raw[:end]).lower()
            self.status = int(head[9:12])
            if self.status != 200:
                self._refused(head)
                return
            self.totals.admitted += 1
            del self.raw[: end + 4]
            self.in_body = True
            self.chunk_left = -1
        self._dechunk()
        self._frames()

    def _refused(self, head: bytes) -> None:
        totals = self.totals
        if self.status == 503:
            totals.refusal.append(time.monotonic() - self.sent)
            if b"\r\nretry-after:" in head:
                totals.refused_retry_after += 1
            else:
                totals.refused_bare += 1
        else:
            totals.other_status[str(self.status)] = totals.other_status.get(str(self.status), 0) + 1
        self.ended = True
        self.transport.close()

    def _frames(self) -> None:
        body = self.body
        totals = self.totals
        start = 0
        now = time.monotonic()
        while True:
            end = body.find(b"\n\n", start)
            if end < 0:
                break
            frame = bytes(body[start:end])
            start = end + 2
            if not frame.startswith(b"id:"):
                continue  # a heartbeat (`: ping`) or the reconnection hint (`retry:`)
            seq, final = frame_seq(frame)
            if seq <= self.last_seq:
                totals.duplicates += 1
                continue
            if seq != self.last_seq + 1:
                totals.gaps += 1
            if self.last_seq == 0:
                totals.first_event.append(now - self.sent)
            self.last_seq = seq
            if final:
                name = frame_event(frame)
                if name == "done":
                    totals.completed += 1
                else:
                    totals.ended_otherwise[name] = totals.ended_otherwise.get(name, 0) + 1
                    why = f"{name}: {ending_message(frame)} ({'after chunks' if seq > 1 else 'no chunk'})"
                    totals.endings[why] = totals.endings.get(why, 0) + 1
                    totals.ended_at.append(now - self.sent)
                self.ended = True
                self.transport.close()
                break
            totals.events += 1
            second = int(now - totals.started)
            totals.per_second[second] = totals.per_second.get(second, 0) + 1
            totals.last_event = now - totals.started
            self.offsets.append(now - seq * self.token_interval)
        del body[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.status == 200 and not self.ended:
            self.totals.broken += 1
        elif self.status == 0:  # closed before any answer
            self.totals.other_status["none"] = self.totals.other_status.get("none", 0) + 1
        if self.offsets:
            least = min(self.offsets)
            self.totals.lag.extend(offset - least for offset in self.offsets)
            self.offsets = array("d")
        if not self.done.done():
            self.done.set_result(None)


def ending_message(frame: bytes) -> str:
    """The `message` of a final event's data (an error's text), or its raw data."""
    data = next((line[6:] for line in frame.split(b"\n") if line.startswith(b"data: ")), b"")
    try:
        return str(orjson.loads(data).get("message", data.decode()))
    except (orjson.JSONDecodeError, AttributeError):
        return data.decode(errors="replace")


def request_bytes(host: str, request: dict[str, Any]) -> bytes:
    body = request["body"].encode()
    head = f"POST {request['path']} HTTP/1.1\r\nHost: {host}\r\n"
    for name, value in request.get("headers", {}).items():
        head += f"{name}: {value}\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    requests = [request_bytes(spec["host"], r) for r in spec["requests"]]
    count = len(requests)
    spread = spec["spread"]
    interval = spec["token_interval"]
    started = time.monotonic() + 0.5
    totals = Totals(started)
    done: list[asyncio.Future[None]] = []

    async def open_one(request: bytes, scheduled: float, future: asyncio.Future[None]) -> None:
        try:
            await loop.create_connection(
                lambda: PromptStream(request, totals, future, scheduled, interval), spec["host"], spec["port"]
            )
        except OSError:
            totals.connect_failed += 1
            future.set_result(None)

    opening = []
    for index, request in enumerate(requests):
        scheduled = started + spread * index / count
        delay = scheduled - time.monotonic()
        if delay > 0.001:
            await asyncio.sleep(delay)
        future = loop.create_future()
        done.append(future)
        opening.append(asyncio.create_task(open_one(request, scheduled, future)))
    await asyncio.gather(*opening)
    try:
        await asyncio.wait_for(asyncio.gather(*done), max(1.0, spec["deadline"] - (time.monotonic() - started)))
    except TimeoutError:
        pass
    wall = time.monotonic() - started
    return {
        "streams": count,
        "admitted": totals.admitted,
        "refused_retry_after": totals.refused_retry_after,
        "refused_bare": totals.refused_bare,
        "other_status": totals.other_status,
        "connect_failed": totals.connect_failed,
        "completed": totals.completed,
        "ended_otherwise": totals.ended_otherwise,
        "endings": totals.endings,
        "ended_at_s": [percentile(totals.ended_at, q) for q in (0.0, 0.5, 1.0)] if totals.ended_at else [],
        "broken": totals.broken,
        "hung": count - sum(f.done() for f in done),
        "events": totals.events,
        "gaps": totals.gaps,
        "duplicates": totals.duplicates,
        "first_event_ms": [percentile(totals.first_event, q) * 1000 for q in (0.5, 0.99)],
        "first_event_max_ms": max(totals.first_event, default=float("nan")) * 1000,
        "refusal_ms": [percentile(totals.refusal, q) * 1000 for q in (0.5, 0.99)],
        "connect_ms": [percentile(totals.connect, q) * 1000 for q in (0.5, 0.99)],
        "lag_ms": [percentile(totals.lag, q) * 1000 for q in (0.5, 0.99)],
        "per_second": sorted(totals.per_second.items()),
        "last_event_s": totals.last_event,
        "wall_seconds": wall,
    }


if __name__ == "__main__":
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of streams
    serve_spec(run)
