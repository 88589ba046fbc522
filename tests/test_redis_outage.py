"""Redis stopped under a running API: 503 JSON, /health stays up, recovery without restart."""

from __future__ import annotations

import asyncio

import httpx

from devstack.login import auth, dev_login
from devstack.redis_server import RedisServer
from tests.conftest import Processes


async def test_redis_stopped_and_restarted_under_running_api(processes: Processes) -> None:
    server = RedisServer().start()
    try:
        api = processes.api(server.url)
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
            token = await dev_login(http)
            assert (await http.get("/user/info", headers=auth(token))).status_code == 200
            assert (await http.get("/ready")).status_code == 200

            server.stop()
            down = await http.get("/user/info", headers=auth(token))
            assert down.status_code == 503
            assert down.json()["message"] and "Traceback" not in down.text
            assert (await http.get("/user/auth-code")).status_code == 503
            assert (await http.get("/ready")).status_code == 503
            assert (await http.get("/health")).status_code == 200

            server.start()  # same port, empty data: the session is gone, the service is back
            for _ in range(50):
                if (await http.get("/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await http.get("/user/info", headers=auth(token))).status_code == 401
            token = await dev_login(http)
            assert (await http.get("/user/info", headers=auth(token))).status_code == 200
    finally:
        server.stop()
