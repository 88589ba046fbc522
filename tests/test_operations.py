"""Operations: health, readiness, metrics, OpenAPI, CORS, rate limits, request ids in logs."""

from __future__ import annotations

import asyncio
import json

import httpx

from devstack.login import auth, dev_login
from devstack.ports import free_port, wait_for_port
from tests.conftest import Processes, eventually, isolated_url
from tests.support.prom import sample
from tests.test_chat import new_chat, send


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).status_code == 200


async def test_metrics(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    await client.get("/user/info", headers=user)
    await client.get("/user/info")
    chat_id = await new_chat(client, user)
    await send(client, user, chat_id, "count me")
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'ai_http_requests_total{method="GET",route="user/info",status="200"}' in text
    assert 'ai_http_requests_total{method="GET",route="user/info",status="401"}' in text
    assert 'ai_http_request_seconds_bucket{le="0.001",route="user/info"}' in text
    assert "ai_sse_open_streams 0.0" in text
    assert sample(text, "ai_api_shedding") == 0 and sample(text, "ai_api_queue_wait_seconds") is not None
    # Cluster-wide series come from one pod (test_queue_operations checks which); this may be another.
    if "exported by one API pod" not in text:
        assert sample(text, "ai_jobs_queue_depth", type="chat") is not None
        assert sample(text, "ai_jobs_pending", type="questions") is not None
        assert sample(text, "ai_jobs_total", type="chat", outcome="done") is not None
        assert sample(text, "ai_jobs_dead") is not None
    assert "ai_llm_chunks_total" not in text  # the workers export it, once


async def test_metrics_with_several_api_workers(processes: Processes, redis_url: str) -> None:
    api = processes.api(isolated_url(redis_url), API_WORKERS="2")
    # The port opens before both Sanic workers serve: on a busy machine the first answer takes seconds.
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
        for _ in range(40):
            assert (await http.get("/health")).status_code == 200
        text = (await http.get("/metrics")).text
    line = next(ln for ln in text.splitlines() if ln.startswith('ai_http_requests_total{method="GET",route="health"'))
    assert float(line.split()[-1]) == 40.0  # summed over both worker processes


async def test_metrics_port(processes: Processes, redis_url: str) -> None:
    """METRICS_PORT set: /metrics is served there (every worker process's series, the cluster-wide
    ones once this pod holds the lease), and the API port, where an ingress points, answers 404."""
    port = free_port()
    api = processes.api(isolated_url(redis_url), METRICS_PORT=str(port), API_WORKERS="2")
    wait_for_port(port)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        for _ in range(20):
            assert (await http.get("/health")).status_code == 200
        hidden = await http.get("/metrics")
        assert hidden.status_code == 404 and hidden.json()["message"]
        assert ("/metrics", "get") not in {
            (path, method)
            for path, ops in (await http.get("/docs/openapi.json")).json()["paths"].items()
            for method in ops
        }

        async def scrape() -> str:
            answer = await http.get(f"http://127.0.0.1:{port}/metrics")
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
            return answer.text

        text = await eventually(lambda: _with_cluster_series(scrape()), within=20)
        health = sample(text, "ai_http_requests_total", method="GET", route="health", status="200")
        assert health == 20.0  # summed over both worker processes
        assert sample(text, "ai_api_shedding") == 0
        for other in ("/", "/health", "/metrics/x"):
            answer = await http.get(f"http://127.0.0.1:{port}{other}")
            assert answer.status_code == 404 and answer.json()["message"], other
    # A head that never ends is dropped, not held (5 s), and the server keeps answering.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\n")
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(f"http://127.0.0.1:{port}/metrics")).status_code == 200


async def _with_cluster_series(scraped: object) -> str | None:
    text = await scraped  # type: ignore[misc]
    return text if sample(text, "ai_jobs_queue_depth", type="chat") is not None else None


async def test_openapi_documents_every_route(client: httpx.AsyncClient) -> None:
    """A smoke test of /docs/openapi.json and /docs; tests/test_openapi.py checks them in depth."""
    spec = (await client.get("/docs/openapi.json")).json()
    paths = spec["paths"]
    expected = {
        ("/user/auth-code", "get"),
        ("/user/auth-callback", "get"),
        ("/user/logout", "post"),
        ("/user/info", "get"),
        ("/user/questions", "get"),
        ("/user/questions/{id}/answer", "post"),
        ("/user/skill-description", "post"),
        ("/assistant/chat", "post"),
        ("/assistant/chat", "get"),
        ("/assistant/chat/{chatId}", "get"),
        ("/assistant/chat/{chatId}", "delete"),
        ("/assistant/chat/{chatId}", "post"),
        ("/assistant/chat/{chatId}/stream", "get"),
        ("/assistant/chat/{chatId}/stream-ticket", "post"),
        ("/assistant/chat/{chatId}/stop", "post"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
    }
    assert expected <= {(path, method) for path, ops in paths.items() for method in ops}
    schemas = spec["components"]["schemas"]
    info = paths["/user/info"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert info == {"$ref": "#/components/schemas/UserInfoResponse"}
    assert set(schemas["UserInfoResponse"]["required"]) == {
        "userId",
        "username",
        "createdAt",
        "skillDescription",
        "doneInterview",
        "interviewQuestionStatus",
    }
    assert schemas["UserInfoResponse"]["properties"]["createdAt"]["type"] == "integer"
    assert schemas["UserAnswerRequest"]["required"] == ["answer"]
    send_body = paths["/assistant/chat/{chatId}"]["post"]
    assert "text/event-stream; charset=utf-8" in send_body["responses"]["200"]["content"]
    assert schemas["SendMessageRequest"]["properties"]["prompt"]["maxLength"] == 8000
    assert schemas["ErrorResponse"]["required"] == ["message"]
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]


async def test_cors(processes: Processes, redis_url: str) -> None:
    api = processes.api(redis_url, CORS_ORIGINS="https://app.example, https://admin.example")
    async with httpx.AsyncClient(base_url=api.url) as http:
        allowed = await http.options(
            "/user/skill-description",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authentication, content-type",
            },
        )
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "Authentication" in allowed.headers["access-control-allow-headers"]
        denied = await http.options(
            "/user/info", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in denied.headers
        simple = await http.get("/health", headers={"Origin": "https://admin.example"})
        assert simple.headers["access-control-allow-origin"] == "https://admin.example"
        assert (
            "access-control-allow-origin"
            not in (await http.get("/health", headers={"Origin": "https://x.example"})).headers
        )


async def test_no_cors_when_unset(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_auth_code_rate_limit_per_address(processes: Processes, redis_url: str) -> None:
    api = processes.api(isolated_url(redis_url), RATE_LIMIT_AUTH_PER_MINUTE="5")
    async with httpx.AsyncClient(base_url=api.url) as http:
        codes = [(await http.get("/user/auth-code")).status_code for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
        refused = await http.get("/user/auth-code")
        assert 1 <= int(refused.headers["retry-after"]) <= 12 and "Too many requests" in refused.json()["message"]


async def test_rate_limits_per_user(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url, RATE_LIMIT_CHAT_PER_MINUTE="3", RATE_LIMIT_INTERVIEW_PER_MINUTE="2")
    processes.worker(url)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        alice, bob = auth(await dev_login(http)), auth(await dev_login(http))
        statuses = [
            (await http.post("/user/skill-description", headers=alice, json={"description": "x"})).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        assert (await http.post("/user/skill-description", headers=bob, json={"description": "x"})).status_code == 200
        chat_id = await new_chat(http, alice)
        for _ in range(3):
            assert (await send(http, alice, chat_id, "hi")).finished
        limited = await http.post(f"/assistant/chat/{chat_id}/", headers=alice, json={"prompt": "one more"})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        messages = (await http.get(f"/assistant/chat/{chat_id}", headers=alice)).json()["messages"]
        assert len(messages) == 6  # the refused prompt was not stored


async def test_burst_over_limit_gives_429s_and_no_500s(processes: Processes, redis_url: str) -> None:
    api = processes.api(isolated_url(redis_url), RATE_LIMIT_AUTH_PER_MINUTE="20")
    async with httpx.AsyncClient(base_url=api.url) as http:
        responses = await asyncio.gather(*(http.get("/user/auth-code") for _ in range(100)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 20 and statuses.count(429) == 80


async def test_request_id_reaches_the_job_and_logs_hold_no_secrets(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url, LOG_LEVEL="INFO")
    worker = processes.worker(url, LOG_LEVEL="INFO")
    async with httpx.AsyncClient(base_url=api.url) as http:
        token = await dev_login(http)
        response = await http.post(
            "/user/skill-description",
            headers={**auth(token), "X-Request-ID": "req-abc-123"},
            json={"description": "Scala"},
        )
        assert response.headers["x-request-id"] == "req-abc-123"
        for _ in range(100):
            if "req-abc-123" in worker.output():
                break
            await asyncio.sleep(0.05)
    api_lines = [json.loads(line) for line in api.output().splitlines() if line.startswith("{")]
    assert any(
        line.get("request_id") == "req-abc-123" and line["path"] == "/user/skill-description" for line in api_lines
    )
    worker_lines = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    assert any(line.get("request_id") == "req-abc-123" for line in worker_lines)
    secret = token.partition(".")[2]
    assert secret not in api.output() and secret not in worker.output()


async def test_worker_metrics_port(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url)
    port = free_port()
    processes.worker(url, WORKER_METRICS_PORT=str(port))
    wait_for_port(port)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        await send(http, user, chat_id, "measure me")

        async def counted() -> str | None:  # the runner counts a job after its reply's last event
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            return text if sample(text, "ai_worker_jobs_total", outcome="done", type="chat") == 1 else None

        text = await eventually(counted, within=5)
    assert "ai_llm_first_token_seconds_count 1.0" in text
    assert 'ai_llm_call_seconds_count{kind="chat"} 1.0' in text
    assert 'ai_llm_tokens_total{kind="completion"}' in text and 'ai_llm_tokens_total{kind="prompt"}' in text
    chunks = next(line for line in text.splitlines() if line.startswith("ai_llm_chunks_total "))
    assert float(chunks.split()[1]) > 30  # the fake's reply: a short intro and 30 words
