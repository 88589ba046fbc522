"""/metrics on its own port (METRICS_PORT), so an ingress in front of the API port never exposes it.

A scraper is the only client: one GET per scrape. So this is a small asyncio server on the API's
own event loop (the body needs the app's Redis connections for the cluster-wide series), not a
second Sanic app: it reads one bounded head within a deadline, answers `GET /metrics` with the
same body as the API port would (backend/ops/metrics.py), anything else with a 404 JSON message,
and closes the connection. With API_WORKERS > 1 every Sanic worker binds the port with
SO_REUSEPORT, as they share the API port: any of them answers a scrape with the merged series.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CONTENT_TYPE_LATEST

from backend.context import App
from backend.ops.metrics import exposition

log = logging.getLogger("backend.metrics")

HEAD_MAX_BYTES = 8192
HEAD_TIMEOUT_SECONDS = 5.0
NOT_FOUND = b'{"message":"Not found: this port serves GET /metrics only."}'


def _answer(status: str, content_type: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return (head + "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n").encode() + body


async def _scrape(app: App, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(HEAD_TIMEOUT_SECONDS):
            head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if method in (b"GET", b"HEAD") and target.split(b"?", 1)[0] == b"/metrics":
            answer = _answer("200 OK", CONTENT_TYPE_LATEST, await exposition(app))
            if method == b"HEAD":
                answer = answer.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
        else:
            answer = _answer("404 Not Found", "application/json", NOT_FOUND)
        writer.write(answer)
        await writer.drain()
    except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass  # a head that is slow, too long or malformed, or a scraper that left: just close
    except Exception:
        log.exception("metrics scrape failed")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def start(app: App, host: str, port: int) -> asyncio.Server:
    return await asyncio.start_server(
        lambda reader, writer: _scrape(app, reader, writer),
        host,
        port,
        limit=HEAD_MAX_BYTES,
        reuse_port=True,
    )
