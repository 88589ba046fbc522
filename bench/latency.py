"""B1 (authenticated /user/info against /health: with and without the OpenAPI document loaded, on
one Redis and on a Redis Cluster) and
B4 (prompt -> first event; skill description -> questions ready; with tracing off and on)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from typing import Any

import httpx

from bench.harness import Stack
from bench.otlp_sink import OtlpSink
from bench.spec import percentile
from devstack.login import auth, dev_login


def wrk(url: str, headers: dict[str, str], seconds: int = 5, connections: int = 64) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    for name, value in headers.items():
        command[1:1] = ["-H", f"{name}: {value}"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale, "non_2xx": int(errors.group(1)) if errors else 0}


async def python_load(url: str, headers: dict[str, str], seconds: int = 5, connections: int = 64) -> dict[str, float]:
    """Fallback when wrk is missing: keep-alive clients on httpx (slower; it may limit the figure)."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(headers=headers, limits=httpx.Limits(max_connections=connections)) as http:

        async def loop() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                await http.get(url)
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(loop() for _ in range(connections)))
    latencies.sort()
    return {"rps": len(latencies) / seconds, "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000, "non_2xx": 0}


def load(url: str, headers: dict[str, str], seconds: int = 3) -> dict[str, float]:
    if shutil.which("wrk"):
        return wrk(url, headers, seconds)
    return asyncio.run(python_load(url, headers, seconds))


async def login(base_url: str) -> str:
    async with httpx.AsyncClient(base_url=base_url) as http:
        return await dev_login(http)


def b1_user_info() -> list[dict[str, Any]]:
    rows = []
    for docs, cluster in (("true", False), ("false", False), ("true", True)):
        stack = Stack(cluster=cluster)
        try:
            api = stack.api(OPENAPI_DOCS=docs)
            headers = auth(asyncio.run(login(api.url)))
            load(f"{api.url}/health", {}, seconds=2)  # warm up
            # Alternate the two routes and keep the median round: this machine is noisy.
            rounds = [(load(f"{api.url}/health", {}), load(f"{api.url}/user/info", headers)) for _ in range(3)]
            health, info = sorted(rounds, key=lambda r: r[1]["rps"] / r[0]["rps"])[1]
            rows.append(
                {
                    "redis": "cluster (3 masters)" if cluster else "single",
                    "openapi_loaded": docs == "true",
                    "health_rps": health["rps"],
                    "health_p99_ms": health["p99_ms"],
                    "user_info_rps": info["rps"],
                    "user_info_p99_ms": info["p99_ms"],
                    "ratio": info["rps"] / health["rps"],
                    "non_2xx": health["non_2xx"] + info["non_2xx"],
                    "tool": "wrk" if shutil.which("wrk") else "python",
                }
            )
        finally:
            stack.stop()
    single = rows[0]["user_info_rps"]
    for row in rows:
        row["vs_single"] = row["user_info_rps"] / single  # target on a cluster: >= 0.8
    return rows


async def first_event_ms(host: str, port: int, path: str, token: str, body: bytes) -> float:
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthentication: Basic {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    started = time.perf_counter()
    writer.write(request)
    seen = b""
    while b"data: " not in seen:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("stream closed before its first event")
        seen += chunk
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed * 1000


def percentiles(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": percentile(samples, 0.5), "p99_ms": percentile(samples, 0.99), "samples": len(samples)}


def b4_latency(samples: int = 100) -> list[dict[str, Any]]:
    """Tracing off (the default), then on: every span exported over OTLP/HTTP to a local sink."""
    rows = b4_run(samples, {})
    with OtlpSink() as sink:
        traced = b4_run(samples, {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url})
    for row in traced:
        row["measure"] += f" (tracing on: {sink.exports} exports, {sink.bytes / 1e3:.0f} kB)"
    return rows + traced


def b4_run(samples: int, env: dict[str, str]) -> list[dict[str, Any]]:
    stack = Stack()
    try:
        api = stack.api(**env)
        stack.worker(FAKE_LLM_TOKEN_DELAY_MS="0", FAKE_LLM_REPLY_WORDS="5", **env)

        async def run() -> list[dict[str, Any]]:
            async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
                token = await dev_login(http)
                chats = [
                    (await http.post("/assistant/chat", headers=auth(token))).json()["chatId"] for _ in range(samples)
                ]
                first = []
                for chat_id in chats:
                    first.append(
                        await first_event_ms(
                            "127.0.0.1", api.port, f"/assistant/chat/{chat_id}/", token, b'{"prompt": "latency?"}'
                        )
                    )
                ready = []
                for index in range(samples):
                    started = time.perf_counter()
                    await http.post(
                        "/user/skill-description",
                        headers=auth(token),
                        json={"description": f"Python and Redis, take {index}"},
                    )
                    while (await http.get("/user/questions", headers=auth(token))).status_code != 200:  # noqa: ASYNC110
                        await asyncio.sleep(0.001)  # polling is what a client does
                    ready.append((time.perf_counter() - started) * 1000)
            return [
                {"measure": "POST prompt -> first event", **percentiles(first)},
                {"measure": "skill description -> questions ready", **percentiles(ready)},
            ]

        return asyncio.run(run())
    finally:
        stack.stop()
