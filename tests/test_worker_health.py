"""A worker's /healthz proves its event loop turns: 200 while it does, 503 once it is stuck."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.error
import urllib.request

import httpx

from devstack.ports import free_port, wait_for_port
from tests.conftest import Processes, isolated_url
from workers.health import LoopHeartbeat, serve_health


def get(url: str) -> tuple[int, str]:
    """A blocking GET: called from the event loop, it holds the loop as a stuck loop would."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_healthz_fails_while_the_loop_is_stuck_and_recovers() -> None:
    heartbeat = LoopHeartbeat(max_age=0.5, interval=0.05)
    server = serve_health("127.0.0.1", 0, heartbeat)
    url = f"http://127.0.0.1:{server.server_port}"
    pulse = asyncio.create_task(heartbeat.run())
    try:
        await asyncio.sleep(0.1)
        assert get(url + "/healthz")[0] == 200
        time.sleep(1.0)  # noqa: ASYNC251 (on purpose: the loop is stuck; the server's thread still answers)
        status, body = get(url + "/healthz")
        assert status == 503 and body.startswith("event loop stuck: last turn 1.")
        await asyncio.sleep(0.1)  # it turns again
        status, body = get(url + "/healthz")
        assert status == 200 and body.startswith("event loop turning")
        status, metrics = get(url + "/metrics")
        assert status == 200 and "python_gc_objects_collected_total" in metrics  # every other path: metrics
    finally:
        pulse.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pulse
        server.shutdown()
        server.server_close()


async def test_a_running_worker_answers_healthz_and_metrics_on_one_port(processes: Processes, redis_url: str) -> None:
    port = free_port()
    processes.worker(isolated_url(redis_url), WORKER_METRICS_PORT=str(port))
    wait_for_port(port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        health = await http.get("/healthz")
        assert health.status_code == 200 and health.text.startswith("event loop turning")
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200 and "ai_worker_running_jobs" in metrics.text
