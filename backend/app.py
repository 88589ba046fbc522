"""create_app(): the Sanic application, its blueprints, listeners and error handling."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time

from sanic import Sanic
from sanic.response import BaseHTTPResponse

from backend import cors, errors, headers, heap, logs
from backend.admission import QueueWatch
from backend.assistant.relay import ReplyRelay
from backend.assistant.routes import bp as assistant_bp
from backend.auth.dev import bp as dev_login_bp
from backend.auth.providers import make_provider
from backend.auth.routes import bp as auth_bp
from backend.context import ApiRequest, App, AppContext
from backend.interview.routes import bp as interview_bp
from backend.logs import configure_logging
from backend.ops import metrics, metrics_server, openapi, tracing
from backend.ops.routes import bp as ops_bp
from backend.playground.routes import bp as playground_bp
from backend.store.datastore import Store
from backend.telemetry.replies import count_reply
from config.settings import Settings, get_settings

MAX_BODY_BYTES = 64 * 1024

access = logging.getLogger("backend.access")

# A client's X-Request-ID is kept only in this form (PRODUCT.md, Operations): it goes into every
# log line and back in the answer, so nothing a log reader or a header could misread.
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestIds:
    """Unique request ids without a uuid4 per request: a random prefix per process, then a counter."""

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


def create_app(settings: Settings | None = None, name: str = "backend") -> App:
    settings = settings or get_settings()
    configure_logging(settings.LOG_LEVEL)
    # Sanic types request_class as the default Request[Sanic[Config, SimpleNamespace], SimpleNamespace]
    # (its type variables are invariant), though a subclass with typed contexts is what it takes.
    app: App = Sanic(
        name,
        ctx=AppContext(),
        request_class=ApiRequest,  # type: ignore[arg-type]  # see above
        configure_logging=False,
    )
    app.config.update(
        REQUEST_MAX_SIZE=MAX_BODY_BYTES,
        AUTO_EXTEND=False,
        FALLBACK_ERROR_FORMAT="json",
        GRACEFUL_SHUTDOWN_TIMEOUT=10,
        NOISY_EXCEPTIONS=False,
        # Trusted proxies (README, Running behind a proxy): request.remote_addr honours X-Forwarded-For
        # (or REAL_IP_HEADER) only through these; with both unset it is empty and the TCP peer counts.
        PROXIES_COUNT=settings.PROXIES_COUNT,
        REAL_IP_HEADER=settings.REAL_IP_HEADER or None,
        REQUEST_HEAD_TIMEOUT=settings.REQUEST_HEAD_TIMEOUT_SECONDS,  # backend/protocol.py
        REQUEST_BODY_TIMEOUT=settings.REQUEST_BODY_TIMEOUT_SECONDS,
    )
    app.ctx.settings = settings
    errors.install(app)
    for blueprint in (auth_bp, interview_bp, assistant_bp, ops_bp):
        app.blueprint(blueprint)
    if not settings.METRICS_PORT:  # else /metrics is served on METRICS_PORT only (404 here)
        app.blueprint(metrics.bp)
    if settings.AUTH_PROVIDER == "dev" and settings.ENVIRONMENT != "production":
        app.blueprint(dev_login_bp)
    if settings.PLAYGROUND:
        app.blueprint(playground_bp)
    if settings.OPENAPI_DOCS:
        openapi.install(app)
    cors.install(app, settings.CORS_ORIGINS)
    headers.install(app)
    tracing.install(app)  # only with OTEL_EXPORTER_OTLP_ENDPOINT set (backend/telemetry/tracing.py)

    @app.before_server_start
    async def open_connections(app: App) -> None:
        store = Store(settings)
        store.replies.on_finish = count_reply  # ai_replies_total
        app.ctx.store = store
        app.ctx.provider = make_provider(settings, store.logins)
        hub = store.hub()
        hub.start()
        app.ctx.relay = ReplyRelay(
            hub,
            store.replies,
            streams=store.open_streams,
            ping_seconds=settings.SSE_PING_SECONDS,
            check_seconds=min(settings.SSE_PING_SECONDS, settings.JOB_LEASE_SECONDS * 0.2),
        )
        app.ctx.relay.start()
        app.ctx.queue_watch = QueueWatch(store.queue, settings.QUEUE_MAX_WAIT_SECONDS)
        app.ctx.queue_watch.start()
        app.ctx.metrics_server = None
        if settings.METRICS_PORT:
            app.ctx.metrics_server = await metrics_server.start(app, settings.HOST, settings.METRICS_PORT)
        heap.freeze_startup()

    @app.before_server_stop
    async def end_streams(app: App) -> None:
        # Open streams end without a final event: their clients resume on another pod.
        await app.ctx.relay.stop()
        await app.ctx.queue_watch.stop()
        if app.ctx.metrics_server is not None:
            app.ctx.metrics_server.close()

    @app.after_server_stop
    async def close_connections(app: App) -> None:
        await app.ctx.store.close()

    ids = RequestIds()

    async def request_id(request: ApiRequest) -> None:
        given = request.headers.get("x-request-id", "")
        request.ctx.request_id = given if CLIENT_REQUEST_ID.fullmatch(given) else ids.next()
        logs.request_id.set(request.ctx.request_id)
        request.ctx.started = time.perf_counter()

    async def log_request(request: ApiRequest, response: BaseHTTPResponse) -> None:
        request_id = getattr(request.ctx, "request_id", None)
        if request_id is None:
            return
        response.headers["X-Request-ID"] = request_id
        elapsed = time.perf_counter() - request.ctx.started
        metrics.observe(request, response, elapsed)
        if access.isEnabledFor(logging.INFO):
            access.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "ms": round(elapsed * 1000, 2),
                },
            )

    app.middleware(request_id, "request", priority=100)
    app.middleware(log_request, "response")
    return app
