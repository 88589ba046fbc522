"""OpenTelemetry traces across the API and a worker, received by an OTLP/HTTP server of the test's own.

The receiver (a thread on loopback) decodes what the SDK's exporter sends with opentelemetry-proto's
ExportTraceServiceRequest. One prompt and one skill description are served; each is one trace:
the API's request span, its enqueue, the worker's job span (whose parent is the enqueue, carried
in the job's fields), the LLM call (model, tokens, time to first token) and, for the reply, its end.
Without OTEL_EXPORTER_OTLP_ENDPOINT no tracer, exporter or middleware is set up.
"""

from __future__ import annotations

import gzip
import os
import secrets
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from devstack.login import auth, dev_login
from devstack.ports import free_port
from devstack.services import ROOT
from tests.conftest import Processes, eventually, isolated_url
from tests.test_chat import new_chat, send
from tests.test_interview import describe, ready_questions


def value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value")) if any_value.WhichOneof("value") else None


class Receiver:
    """An OTLP/HTTP traces endpoint: POST /v1/traces, protobuf, maybe gzip or deflate."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                assert self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
                receiver.take(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, request: ExportTraceServiceRequest) -> None:
        self.requests += 1
        for resource_spans in request.resource_spans:
            resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        {
                            "service": resource.get("service.name"),
                            "name": span.name,
                            "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "kind": span.kind,
                            "attributes": {a.key: value(a.value) for a in span.attributes},
                            "events": [e.name for e in span.events],
                            "seconds": (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9,
                        }
                    )

    def named(self, name: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["name"] == name]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # opentelemetry.proto.trace.v1.Span.SpanKind


async def test_one_trace_per_prompt_and_per_skill_description(
    processes: Processes, redis_url: str, receiver: Receiver
) -> None:
    url = isolated_url(redis_url)
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    api = processes.api(url, **otel)
    processes.worker(url, **otel)
    client_trace, client_span = secrets.token_hex(16), secrets.token_hex(8)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        user = auth(await dev_login(http))
        await describe(http, user)
        await ready_questions(http, user)
        chat_id = await new_chat(http, user)
        # A client that traces its own requests: the prompt's trace continues it.
        await send(http, {**user, "traceparent": f"00-{client_trace}-{client_span}-01"}, chat_id, "trace me")
        assert (await http.get("/health")).status_code == 200

    def chat_trace_complete() -> bool:
        return bool(receiver.named("reply end")) and bool(receiver.named("llm chat"))

    await eventually(chat_trace_complete, within=20)

    # The prompt: API request -> enqueue -> (the job's fields) -> worker job -> LLM call, reply end.
    [request] = receiver.named("POST /assistant/chat/<chat_id:int>")
    assert request["service"] == "ai-backend-api" and request["kind"] == SERVER
    assert request["trace"] == client_trace and request["parent"] == client_span
    assert request["attributes"]["http.response.status_code"] == 200
    assert request["attributes"]["http.route"] == "/assistant/chat/<chat_id:int>"  # no ids in names
    [enqueue] = receiver.named("enqueue chat")
    assert enqueue["service"] == "ai-backend-api" and enqueue["kind"] == PRODUCER
    assert (enqueue["trace"], enqueue["parent"]) == (request["trace"], request["id"])
    [job] = receiver.named("job chat")
    assert job["service"] == "ai-backend-worker" and job["kind"] == CONSUMER
    assert (job["trace"], job["parent"]) == (enqueue["trace"], enqueue["id"])  # across the two processes
    assert job["attributes"]["job.id"] == enqueue["attributes"]["job.id"]
    [llm] = receiver.named("llm chat")
    assert llm["kind"] == CLIENT and (llm["trace"], llm["parent"]) == (job["trace"], job["id"])
    assert llm["attributes"]["gen_ai.request.model"] == "fake"
    assert llm["attributes"]["gen_ai.usage.input_tokens"] > 0 and llm["attributes"]["gen_ai.usage.output_tokens"] > 0
    assert 0 < llm["attributes"]["llm.time_to_first_token_seconds"] < llm["seconds"]
    assert "first token" in llm["events"]
    [end] = receiver.named("reply end")
    assert (end["trace"], end["parent"]) == (job["trace"], job["id"])
    assert end["attributes"]["reply.outcome"] == "done"

    # The skill description: its own trace, the same shape.
    await eventually(lambda: receiver.named("llm questions"), within=20)
    [described] = receiver.named("POST /user/skill-description")
    [enqueue_q] = receiver.named("enqueue questions")
    [job_q] = receiver.named("job questions")
    [llm_q] = receiver.named("llm questions")
    assert described["service"] == "ai-backend-api" and described["trace"] != request["trace"]
    assert (enqueue_q["trace"], enqueue_q["parent"]) == (described["trace"], described["id"])
    assert (job_q["trace"], job_q["parent"]) == (described["trace"], enqueue_q["id"])
    assert job_q["service"] == "ai-backend-worker"
    assert (llm_q["trace"], llm_q["parent"]) == (described["trace"], job_q["id"])
    assert llm_q["attributes"]["gen_ai.request.model"] == "fake"

    # Probes are not traced; every span belongs to a request a user made (or the login's).
    assert not [s for s in receiver.spans if "/health" in s["name"]]
    assert {s["service"] for s in receiver.spans} == {"ai-backend-api", "ai-backend-worker"}


def test_tracing_off_sets_up_nothing() -> None:
    """Unset OTEL_EXPORTER_OTLP_ENDPOINT: no tracer provider, no exporter, no span code loaded, no
    request middleware. (redis-py itself imports the OpenTelemetry API, for its own opt-in metrics.)"""
    code = (
        "import sys; from backend.app import create_app; import workers.__main__; app = create_app(); "
        "from opentelemetry import trace; from backend.telemetry import tracing; "
        "assert type(trace.get_tracer_provider()).__name__ == 'ProxyTracerProvider'; "
        "assert not tracing.enabled and tracing.carrier() == {}; "
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace', 'opentelemetry.exporter', "
        "'opentelemetry.propagate'))]; assert not loaded, loaded; "
        "names = [m.func.__name__ for m in app.request_middleware + app.response_middleware]; "
        "assert not {'start_span', 'end_span'} & set(names), names; print('clean')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(ENVIRONMENT="test", PYTHONPATH=str(ROOT), LLM_PROVIDER="fake")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "clean" in result.stdout, result.stderr[-2000:]


def test_otel_service_name_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.telemetry import tracing

    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    assert tracing.resource("ai-backend-worker").attributes["service.name"] == "ai-backend-worker"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "chat-workers-eu")
    assert tracing.resource("ai-backend-worker").attributes["service.name"] == "chat-workers-eu"
