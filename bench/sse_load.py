"""A light SSE load client: raw asyncio protocols on uvloop, thousands of streams per process.

Run as a subprocess: python -m bench.sse_load SPEC.json RESULT.json. SPEC holds host, port and
the requests (method, path, headers, body); the client opens them all, reads each stream
until its final event (or the deadline), checks every stream's sequence for gaps and
duplicates, and measures publish->client latency from the benchmark-only "t" field. Frames
are read with backend/sse.py.
"""

from __future__ import annotations

import asyncio
import resource
import time
from array import array

from backend.sse import frame_seq
from bench.spec import percentile, serve_spec


class Totals:
    def __init__(self) -> None:
        self.latencies = array("d")
        self.events = 0
        self.completed = 0
        self.failed = 0
        self.gaps = 0
        self.duplicates = 0
        self.connected = 0
        self.closed = 0
        self.per_second: dict[int, int] = {}


class SseStream(asyncio.Protocol):
    """One HTTP/1.1 request whose response is a chunked text/event-stream."""

    def __init__(self, request: bytes, totals: Totals, done: asyncio.Future[None], first_seq: int) -> None:
        self.request = request
        self.totals = totals
        self.done = done
        self.raw = bytearray()  # undecoded bytes (headers, then chunked body)
        self.body = bytearray()  # decoded event-stream text not yet split into frames
        self.in_body = False
        self.chunk_left = 0  # bytes left in the current chunk, -1: waiting for a size line
        self.last_seq = first_seq - 1
        self.ended = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]
        self.totals.connected += 1

    def data_received(self, data: bytes) -> None:
        self.raw += data
        if not self.in_body:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.raw.startswith(b"HTTP/1.1 200"):
                self.totals.failed += 1
                self.ended = True
                self.transport.close()
                return
            del self.raw[: end + 4]
            self.in_body = True
            self.chunk_left = -1
        self._dechunk()
        self._frames()

    def _dechunk(self) -> None:
        """Move the payload of complete HTTP chunks from `raw` to `body`."""
        raw = self.raw
        while True:
            if self.chunk_left > 0:
                take = min(self.chunk_left, len(raw))
                if take == 0:
                    return
                self.body += raw[:take]
                del raw[:take]
                self.chunk_left -= take
                if self.chunk_left:
                    return
                self.chunk_left = -2
            if self.chunk_left == -2:  # the CRLF after a chunk
                if len(raw) < 2:
                    return
                del raw[:2]
                self.chunk_left = -1
            if self.chunk_left == -1:  # a size line
                line_end = raw.find(b"\r\n")
                if line_end < 0:
                    return
                size = int(raw[:line_end], 16)
                del raw[: line_end + 2]
                self.chunk_left = size if size else -3
            if self.chunk_left == -3:  # the last chunk
                return

    def _frames(self) -> None:
        body = self.body
        totals = self.totals
        start = 0
        now = time.time()
        while True:
            end = body.find(b"\n\n", start)
            if end < 0:
                break
            frame = bytes(body[start:end])
            start = end + 2
            if frame.startswith((b":", b"retry:")):  # comments, and the reconnection hint every stream opens with
                continue
            seq, final = frame_seq(frame)
            if seq <= self.last_seq:
                totals.duplicates += 1
                continue
            if seq != self.last_seq + 1:
                totals.gaps += 1
            self.last_seq = seq
            if final:
                self.ended = True
                totals.completed += 1
                self.transport.close()
                break
            totals.events += 1
            second = int(now)
            totals.per_second[second] = totals.per_second.get(second, 0) + 1
            stamp = frame.rfind(b'"t":')
            if stamp > 0:
                totals.latencies.append(now - float(frame[stamp + 4 : frame.index(b"}", stamp)]))
        del body[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self.totals.closed += 1
        if not self.ended:
            self.totals.failed += 1
        if not self.done.done():
            self.done.set_result(None)


async def run(spec: dict) -> dict:
    loop = asyncio.get_running_loop()
    totals = Totals()
    done: list[asyncio.Future[None]] = []
    connections = []
    for request in spec["requests"]:
        head = f"{request['method']} {request['path']} HTTP/1.1\r\nHost: {spec['host']}\r\n"
        for name, value in request.get("headers", {}).items():
            head += f"{name}: {value}\r\n"
        body = request.get("body", "").encode()
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        future = loop.create_future()
        done.append(future)
        first_seq = request.get("first_seq", 1)
        connections.append(
            loop.create_connection(
                lambda r=head.encode() + b"\r\n" + body, f=future, s=first_seq: SseStream(r, totals, f, s),
                spec["host"],
                spec["port"],
            )
        )
    for start in range(0, len(connections), 50):  # a few handshakes at a time: the accept queue is finite
        await asyncio.gather(*connections[start : start + 50])
    started = time.time()
    try:
        await asyncio.wait_for(asyncio.gather(*done), spec.get("deadline", 120))
    except TimeoutError:
        pass
    # Throughput in the steady state: full seconds, without the first and last one.
    steady = sorted(totals.per_second.items())[1:-1]
    rate = sorted(count for _, count in steady)[len(steady) // 2] if steady else float("nan")
    return {
        "streams": len(spec["requests"]),
        "completed": totals.completed,
        "failed": totals.failed,
        "hung": len(spec["requests"]) - totals.closed,
        "events": totals.events,
        "gaps": totals.gaps,
        "duplicates": totals.duplicates,
        "events_per_second": rate,
        "latency_p50_ms": percentile(totals.latencies, 0.50) * 1000,
        "latency_p99_ms": percentile(totals.latencies, 0.99) * 1000,
        "wall_seconds": time.time() - started,
        "per_second": sorted(totals.per_second.items()),
    }


if __name__ == "__main__":
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of streams
    serve_spec(run)
