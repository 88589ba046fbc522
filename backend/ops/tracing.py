"""The API's side of the traces (backend/telemetry/tracing.py): a server span per request.

Installed only when OTEL_EXPORTER_OTLP_ENDPOINT is set: otherwise not one middleware is added.
Each Sanic worker process sets up its own exporter when its server starts (after the fork). The
span is named by the route's pattern (never the path: ids stay out of span names), continues a
client's `traceparent` when it sends one, is current while the handler runs (so the enqueue is its
child), and ends with the response head, like the latency metric; a streamed reply goes on in the
worker's spans. Probes and scrapes (/health, /ready, /metrics) are not traced.
"""

from __future__ import annotations

from typing import Any

from sanic.response import BaseHTTPResponse

from backend.context import ApiRequest, App
from backend.telemetry import tracing

SERVICE = "ai-backend-api"
UNTRACED = frozenset({"health", "ready", "metrics"})


def install(app: App) -> None:
    if not tracing.wanted():
        return

    @app.before_server_start
    async def start_exporter(app: App) -> None:
        tracing.setup(SERVICE)

    @app.after_server_stop
    async def flush(app: App) -> None:
        tracing.shutdown()

    async def start_span(request: ApiRequest) -> None:
        route = request.route.path if request.route else "unmatched"
        if route in UNTRACED or not tracing.enabled:
            return
        from opentelemetry import context, trace
        from opentelemetry.propagate import extract

        span = tracing.tracer().start_span(
            f"{request.method} /{route}" if request.route else f"{request.method} unmatched",
            context=extract(request.headers),
            kind=trace.SpanKind.SERVER,
            attributes={
                "http.request.method": request.method,
                "http.route": "/" + route,
                "request.id": getattr(request.ctx, "request_id", ""),
            },
        )
        request.ctx.span = span
        # Current for the rest of this request's task: the handler's enqueue becomes its child.
        context.attach(trace.set_span_in_context(span))

    async def end_span(request: ApiRequest, response: BaseHTTPResponse) -> None:
        span: Any = getattr(request.ctx, "span", None)
        if span is None:
            return
        request.ctx.span = None
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR))
        span.end()

    app.middleware(start_span, "request", priority=90)
    app.middleware(end_span, "response", priority=90)
