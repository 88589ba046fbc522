"""Total deadlines for reading a request head (request line and headers) and its body.

Why: Sanic's REQUEST_TIMEOUT is an idle timer. Every byte received restarts it
(HttpProtocol.data_received sets `_time`), so a client that trickles one header byte every
few seconds holds its connection, and a slot of the server, for as long as it likes.

How: a head that arrives in one read (nearly all of them) costs nothing here. When Sanic's
Http1 has to wait for more bytes of a head (it calls `receive_more` in Stage.REQUEST), one
timer is set at the time the head began plus REQUEST_HEAD_TIMEOUT_SECONDS. If the head is
still incomplete when it fires, the connection gets Sanic's own RequestTimeout (a 408 JSON
answer, then close), exactly as Sanic's idle timer would do. The timer is dropped when the
next request on the connection starts.

The body has its own total deadline, counted from the end of the head (REQUEST_BODY_TIMEOUT_SECONDS,
default 30): Sanic reads a body in Stage.HANDLER, where only its RESPONSE_TIMEOUT idle timer runs,
so a body trickled a byte at a time held a connection for minutes. The first time a body needs
more bytes, one timer is set at the head's end plus the deadline; when it fires while the body is
still incomplete, the request gets the same 408 and the connection is closed.

Used by `python -m backend` (`app.prepare(protocol=HeadDeadlineProtocol)`); the deadline is
read from `app.config.REQUEST_HEAD_TIMEOUT` (and `REQUEST_BODY_TIMEOUT`), set by create_app from the settings.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sanic.exceptions import RequestTimeout
from sanic.http import Http, Stage
from sanic.server.protocols.http_protocol import HttpProtocol

DEFAULT_HEAD_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0


class HeadTimedHttp(Http):
    """Sanic's Http1 with the pending head and body timers of the current request."""

    # No __touchup__ here: Sanic rewrites its own methods of Http, which this class inherits.
    __slots__ = ("body_timer", "head_timer")

    def __init__(self, protocol: Any) -> None:
        super().__init__(protocol)
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None

    def cancel_timers(self) -> None:
        for timer in (self.head_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.body_timer = None

    def init_for_request(self) -> None:
        super().init_for_request()
        self.cancel_timers()


class HeadDeadlineProtocol(HttpProtocol):
    HTTP_CLASS = HeadTimedHttp
    __slots__ = ("body_timeout", "head_timeout")

    def _setup(self) -> None:
        super()._setup()
        self.head_timeout = float(self.app.config.get("REQUEST_HEAD_TIMEOUT", DEFAULT_HEAD_TIMEOUT))
        self.body_timeout = float(self.app.config.get("REQUEST_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT))

    async def receive_more(self) -> None:
        http = self._http
        if http is not None:
            if http.stage is Stage.REQUEST and http.head_timer is None:
                # `_time` (time.monotonic) is when the last bytes arrived: those that began this head.
                delay = max(0.0, self._time + self.head_timeout - time.monotonic())
                http.head_timer = self.loop.call_later(delay, self._head_expired, http)
            elif http.stage is not Stage.REQUEST and http.request_body and http.body_timer is None:
                # `perft0` (perf_counter) is when the head was complete and the handler stage began.
                # (Also after an answer that left the body unread, e.g. a 404: Sanic drains it.)
                delay = max(0.0, (http.perft0 or time.perf_counter()) + self.body_timeout - time.perf_counter())
                http.body_timer = self.loop.call_later(delay, self._body_expired, http)
        await super().receive_more()

    def _head_expired(self, http: HeadTimedHttp) -> None:
        http.head_timer = None
        if self._http is http and http.stage is Stage.REQUEST and self._task:
            http.exception = RequestTimeout("Request Timeout")
            self._task.cancel("request head deadline")

    def _body_expired(self, http: HeadTimedHttp) -> None:
        http.body_timer = None
        if self._http is not http or not http.request_body:
            return
        if http.stage is Stage.HANDLER and self._task:
            http.exception = RequestTimeout("Request Timeout")
            self._task.cancel("request body deadline")
        else:  # answered already, the rest of the body is being drained: just close
            self.close()

    def close(self, timeout: float | None = None) -> None:
        http = self._http
        if http is not None:
            http.cancel_timers()
        super().close(timeout=timeout)
