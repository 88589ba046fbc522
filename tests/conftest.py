"""Real processes for the whole suite: Redis (own server unless REDIS_URL is set), the API and
workers as subprocesses, an OIDC provider (oauth2-mock-server) and an OpenAI-compatible stub."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from devstack.login import auth, dev_login
from devstack.ports import free_port, wait_for_port
from devstack.redis_server import RedisServer
from devstack.services import ROOT, Api, Service, Worker

SUPPORT = Path(__file__).parent / "support"


# Under pytest-xdist (`make test`: -n 4) each worker process is a session of its own: its own
# redis-server, stack and database numbers. On a Redis given by REDIS_URL the workers share the
# server, so worker k of n takes the databases numbered k modulo n.
XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        url = os.environ["REDIS_URL"]
        if XDIST_WORKERS > 1:  # the shared stack on this worker's first database
            url = f"{url.rpartition('/')[0]}/{XDIST_WORKER}"
        yield url
        return
    server = RedisServer(None, "--databases", "256").start()  # one database per isolated stack
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[sync_redis.Redis]:
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


class Processes:
    """Starts services for one test (or session) and stops them all afterwards."""

    def __init__(self) -> None:
        self.started: list[Service] = []

    def api(self, redis_url: str, **env: str) -> Api:
        api = Api(redis_url, **env)
        self.started.append(api)
        return api.start()

    def worker(self, redis_url: str, **env: str) -> Worker:
        worker = Worker(redis_url, **env)
        self.started.append(worker)
        return worker.start()

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.stop(timeout=15)


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    yield procs
    procs.stop_all()


@pytest.fixture(scope="session")
def session_processes() -> Iterator[Processes]:
    procs = Processes()
    yield procs
    procs.stop_all()


@pytest.fixture(scope="session")
def stack(session_processes: Processes, redis_url: str) -> Api:
    """The shared API + one worker (fake LLM) that most tests use."""
    api = session_processes.api(redis_url)
    session_processes.worker(redis_url, WORKER_CONCURRENCY="64")
    return api


@pytest.fixture
async def client(stack: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=20) as http:
        yield http


@pytest.fixture
async def user(client: httpx.AsyncClient) -> dict[str, str]:
    """Headers of a fresh logged-in user."""
    return auth(await dev_login(client))


class LlmStub:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=5)

    def control(self, **settings: object) -> None:
        self.http.post("/_control", json=settings).raise_for_status()

    def requests(self) -> list[dict]:
        return self.http.get("/_requests").json()

    def clear(self) -> None:
        self.http.delete("/_requests").raise_for_status()
        self.control()


@pytest.fixture(scope="session")
def llm_stub() -> Iterator[LlmStub]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SUPPORT / "llm_stub.py"), str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process=process)
    stub = LlmStub(f"http://127.0.0.1:{port}")
    yield stub
    process.terminate()
    process.wait(10)


@pytest.fixture
def stub(llm_stub: LlmStub) -> Iterator[LlmStub]:
    llm_stub.clear()
    yield llm_stub
    llm_stub.clear()


def openai_env(stub: LlmStub) -> dict[str, str]:
    return {
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": stub.url + "/v1",
        "LLM_MODEL": "stub-model-1",
    }


@pytest.fixture(scope="session")
def oidc_issuer() -> Iterator[str]:
    if not (SUPPORT / "node_modules" / "oauth2-mock-server").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SUPPORT, check=True)
    port = free_port()
    process = subprocess.Popen(
        ["node", str(SUPPORT / "oidc_provider.mjs"), str(port)],
        cwd=SUPPORT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process=process)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


StartApi = Callable[..., Api]


_next_db = itertools.count(1)


def isolated_url(redis_url: str) -> str:
    """Another database of the same Redis: its own keys and job stream, so its workers are alone.

    The suite's own redis-server has 256 databases. On a Redis given by REDIS_URL (16 by default)
    the numbers wrap around (within this xdist worker's share), and a database is emptied before
    it is used again.
    """
    base, _, _ = redis_url.rpartition("/")
    number = next(_next_db)
    if os.environ.get("REDIS_URL"):
        share = range(XDIST_WORKER, 16, XDIST_WORKERS)[1:]  # the first is the shared stack's
        number = share[(number - 1) % len(share)]
        sync_redis.Redis.from_url(f"{base}/{number}").flushdb()
    return f"{base}/{number}"


async def eventually(check: Callable[[], object], within: float = 15.0, interval: float = 0.05):
    """Await `check()` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)
