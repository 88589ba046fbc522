"""OpenTelemetry traces, for the API and the workers alike: on only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

Off (the default), nothing of OpenTelemetry is imported and every hook is one check of
`enabled`: no span objects, no context copies, no job fields. On, `setup()` builds a tracer
provider that sends spans over OTLP/HTTP (the SDK's exporter reads the standard OTEL_* variables:
endpoint, headers, timeout, compression, batch delays), named `ai-backend-api` or
`ai-backend-worker` (`service.name`) unless OTEL_SERVICE_NAME says otherwise.

One trace per prompt or skill description: the API's request span (backend/ops/tracing.py), the
enqueue (backend/store/queue.py: the span's context goes into the job's fields as W3C
`traceparent`), the job in the worker, its LLM call and the reply's end (workers/observe.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
# The job fields that carry the trace context (W3C Trace Context's header names).
CARRIER_FIELDS = ("traceparent", "tracestate")

enabled = False
_tracer: Any = None
_provider: Any = None


def wanted() -> bool:
    return bool(os.environ.get(ENDPOINT, "").strip())


def setup(default_service: str) -> bool:
    """Start exporting spans when OTEL_EXPORTER_OTLP_ENDPOINT is set (once per process); whether on."""
    global enabled, _tracer, _provider
    if enabled or not wanted():
        return enabled
    from opentelemetry import propagate, trace  # noqa: F401 (loaded now, not by the first request)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    _provider = TracerProvider(resource=resource(default_service))
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _tracer = _provider.get_tracer("ai-backend")
    trace.set_tracer_provider(_provider)
    enabled = True
    return True


def resource(default_service: str) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    return Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", "").strip() or default_service})


def shutdown() -> None:
    """Send what is still buffered (at most the exporter's timeout), then stop."""
    global enabled
    if _provider is not None and enabled:
        enabled = False
        _provider.shutdown()


def tracer() -> Any:
    return _tracer


@contextlib.contextmanager
def span(
    name: str, *, kind: str = "INTERNAL", parent: Mapping[str, str] | None = None, **attributes: Any
) -> Iterator[Any]:
    """A span around a block, current inside it; `parent`: a carrier (job fields, headers) to
    continue. Off: yields None and costs a generator."""
    if not enabled:
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    context = extract(parent) if parent is not None else None
    with _tracer.start_as_current_span(
        name, context=context, kind=getattr(trace.SpanKind, kind), attributes=attributes or None
    ) as current:
        yield current


def carrier() -> dict[str, str]:
    """The current span's context as job fields (empty when off or outside a span)."""
    if not enabled:
        return {}
    from opentelemetry.propagate import inject

    fields: dict[str, str] = {}
    inject(fields)
    return {k: v for k, v in fields.items() if k in CARRIER_FIELDS}


def event(name: str, **attributes: Any) -> None:
    """A short span of its own at this moment, in the current trace (e.g. a reply's end)."""
    if enabled:
        with _tracer.start_as_current_span(name, attributes=attributes or None):
            pass
