"""A worker's liveness: proof that its event loop turns, served beside its metrics.

The HTTP server runs in a thread of its own (as prometheus-client's did), so it answers even when
the event loop is stuck; on its own it would prove only that the process exists. The loop stamps
the time every second (`LoopHeartbeat.run`); `/healthz` answers 200 while the stamp is fresh and
503 once the loop has not turned for `max_age` seconds, so a liveness probe restarts a worker
whose loop hangs (a blocking call, a busy loop) while its threads live on. Every other path
serves the Prometheus metrics, as before.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

# A loop that has not turned for this long is stuck: no await takes the loop for seconds, even
# under load (a GC pass or a CPU-throttled pod costs well under one).
MAX_AGE_SECONDS = 10.0


class LoopHeartbeat:
    """The time the event loop last turned, read from any thread."""

    def __init__(self, max_age: float = MAX_AGE_SECONDS, interval: float = 1.0) -> None:
        self.max_age = max_age
        self.interval = interval
        self._last = time.monotonic()  # start-up counts as a turn; the startupProbe covers the rest

    def beat(self) -> None:
        self._last = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self._last

    def fresh(self) -> bool:
        return self.age() <= self.max_age

    async def run(self) -> None:
        """Stamp the time on every turn, for ever (cancel the task to stop)."""
        while True:
            self.beat()
            await asyncio.sleep(self.interval)


def health_app(heartbeat: LoopHeartbeat) -> Callable[..., Iterable[bytes]]:
    """WSGI app: `/healthz` from the heartbeat, every other path prometheus-client's metrics."""
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            exposition: Iterable[bytes] = metrics(environ, start_response)
            return exposition
        age = heartbeat.age()
        fresh = age <= heartbeat.max_age
        body = f"event loop {'turning' if fresh else 'stuck'}: last turn {age:.1f} s ago\n".encode()
        start_response(
            "200 OK" if fresh else "503 Service Unavailable",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds the process up at exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no stderr line per probe and scrape: the worker's logs are JSON lines


def serve_health(host: str, port: int, heartbeat: LoopHeartbeat) -> WSGIServer:
    """Serve `/healthz` and the metrics on host:port from a daemon thread; port 0 picks a free one."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]  # HOST may be IPv6 ("::")
    server_class = type("HealthServer", (_ThreadingServer,), {"address_family": family})
    server: WSGIServer = make_server(
        host, port, health_app(heartbeat), server_class=server_class, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="worker-health", daemon=True).start()
    return server
