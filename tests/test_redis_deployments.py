"""The Redis deployments operators run, through HTTP only, against `python -m backend` and `python -m workers`.

An ACL user with a password and `?db=N`, TLS with a private CA, a Redis that stalls (SIGSTOP), a Redis
that answers with errors (LOADING, READONLY, NOAUTH, OOM, MASTERDOWN, CLUSTERDOWN, TRYAGAIN) and a
wrong password fixed while the service runs. Each test starts its own redis-server(s) and stops all it
started. A Redis that does not answer, or answers with an error, gets 503 JSON within
REDIS_TIMEOUT_SECONDS + 1 s, never 500, and the service recovers without a restart.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from devstack.fault_proxy import FaultProxy
from devstack.login import auth, dev_login
from devstack.redis_server import RedisServer, TlsFiles, make_tls_files
from devstack.services import Api
from tests.conftest import Processes
from tests.support.sse import Event, Stream, read
from tests.test_chat import assert_consecutive, new_chat

APP_USER = ("--user", "default", "off", "--user", "app", "on", ">s3cret", "~*", "&*", "+@all")
CLIENT_TIMEOUT = 10  # seconds: a request that hangs fails an assertion instead of the test hanging
DOWN_CALLS = (("GET", "/user/info"), ("GET", "/user/auth-code"), ("POST", "/assistant/chat"))


class Deployment:
    """The redis-servers, fault proxies, APIs and workers of one test; `stop()` ends them all."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self.servers: list[RedisServer] = []
        self.proxies: list[FaultProxy] = []

    def redis(self, *extra: str, tls: TlsFiles | None = None) -> RedisServer:
        server = RedisServer(None, *extra, tls=tls)
        self.servers.append(server)
        return server.start()

    def proxy(self, server: RedisServer) -> FaultProxy:
        proxy = FaultProxy(server.port)
        self.proxies.append(proxy)
        return proxy.start()

    def stack(self, redis_url: str, **env: str) -> Api:
        """One API and one worker on `redis_url`."""
        api = self.processes.api(redis_url, **env)
        self.processes.worker(redis_url, **env)
        return api

    def stop(self) -> None:
        try:
            self.processes.stop_all()  # the services first: they must not watch their Redis go away
        finally:
            for proxy in self.proxies:
                proxy.stop()
            for server in self.servers:
                server.stop()


@pytest.fixture
def deployment(processes: Processes) -> Iterator[Deployment]:
    started = Deployment(processes)
    try:
        yield started
    finally:
        started.stop()


@dataclass
class Answer:
    status: int  # 0: no answer within the client's timeout
    seconds: float
    body: str

    def json(self) -> dict:
        try:
            return json.loads(self.body)
        except ValueError:
            return {}


async def call(http: httpx.AsyncClient, method: str, path: str, **options) -> Answer:
    started = time.monotonic()
    try:
        response = await http.request(method, path, **options)
    except httpx.TimeoutException:
        return Answer(0, time.monotonic() - started, f"no answer within {http.timeout.read}s")
    return Answer(response.status_code, time.monotonic() - started, response.text)


def assert_unavailable(answer: Answer, within: float, what: str) -> None:
    """503 with a JSON message a user could be shown, in time."""
    assert answer.status == 503, f"{what}: {answer.status} {answer.body}"
    assert answer.json()["message"] and "Traceback" not in answer.body, f"{what}: {answer.body}"
    assert answer.seconds <= within, f"{what}: answered after {answer.seconds:.2f}s, not within {within}s"


async def until_status(
    http: httpx.AsyncClient, method: str, path: str, status: int = 200, within: float = 5, **options
) -> Answer:
    """Polls until `status` comes back; fails with the last answer after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        answer = await call(http, method, path, **options)
        if answer.status == status:
            return answer
        assert time.monotonic() < deadline, f"{method} {path}: still {answer.status} {answer.body} after {within}s"
        await asyncio.sleep(0.1)


async def logged_in(http: httpx.AsyncClient) -> dict[str, str]:
    user = auth(await dev_login(http))
    info = await http.get("/user/info", headers=user)
    assert info.status_code == 200, info.text
    return user


async def prompt(http: httpx.AsyncClient, user: dict[str, str], chat_id: int, text: str) -> Stream:
    """The whole reply to a (short, fast) prompt, read until the server closes the stream."""
    try:
        async with (
            asyncio.timeout(CLIENT_TIMEOUT),
            http.stream("POST", f"/assistant/chat/{chat_id}/", headers=user, json={"prompt": text}) as response,
        ):
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            return await read(response)
    except (TimeoutError, httpx.TimeoutException):
        pytest.fail(f"the reply did not end within {CLIENT_TIMEOUT}s")


async def replay(http: httpx.AsyncClient, user: dict[str, str], chat_id: int, last_id: str | None = None) -> Stream:
    headers = {**user, "Last-Event-ID": last_id} if last_id else user
    async with http.stream("GET", f"/assistant/chat/{chat_id}/stream", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        return await read(response)


def as_tuples(events: list[Event]) -> list[tuple[str, str, dict]]:
    return [(e.id, e.event, e.data) for e in events]


class LiveStream:
    """An open SSE response read a few events at a time (tests.support.sse.read reads it all at once)."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.aiter_text()
        self.stream = Stream()
        self.pending = ""
        self.current = Event()
        self.closed = False

    async def read_until(self, count: int | None = None) -> Stream:
        """Until `count` events arrived in all (None: until the server closes the stream)."""
        while not self.closed and (count is None or len(self.stream.events) < count):
            try:
                chunk = await anext(self.chunks)
            except StopAsyncIteration:
                self.closed = True
                break
            *lines, self.pending = (self.pending + chunk).split("\n")
            for line in lines:
                self._line(line)
        return self.stream

    def _line(self, line: str) -> None:
        if line == "":
            if self.current.id or self.current.data:
                self.stream.events.append(self.current)
            self.current = Event()
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                self.current.id = value
            elif name == "event":
                self.current.event = value
            elif name == "data":
                self.current.data = json.loads(value)


# a. An ACL user with a password, the database as a query option.


async def test_acl_user_with_password_and_db_in_query(deployment: Deployment) -> None:
    server = deployment.redis(*APP_USER)
    api = deployment.stack(server.url_with(username="app", password="s3cret", db=4, db_in_query=True))
    async with httpx.AsyncClient(base_url=api.url, timeout=CLIENT_TIMEOUT) as http:
        user = await logged_in(http)
        chat_id = await new_chat(http, user)
        reply = await prompt(http, user, chat_id, "Which database am I in?")
        assert reply.last.event == "done"
        assert_consecutive(reply)
        assert as_tuples((await replay(http, user, chat_id)).events) == as_tuples(reply.events)
    with (
        server.client(username="app", password="s3cret", db=4) as db4,
        server.client(username="app", password="s3cret", db=0) as db0,
    ):
        assert db4.dbsize() > 0
        assert db0.dbsize() == 0, db0.keys()


# b. TLS with a private CA.


async def test_tls_with_private_ca(deployment: Deployment, tmp_path) -> None:
    server = deployment.redis(tls=make_tls_files(tmp_path))
    assert server.url.startswith("rediss://") and "ssl_ca_certs=" in server.url
    api = deployment.stack(server.url)
    async with httpx.AsyncClient(base_url=api.url, timeout=CLIENT_TIMEOUT) as http:
        user = await logged_in(http)
        chat_id = await new_chat(http, user)
        reply = await prompt(http, user, chat_id, "Is this encrypted?")
        assert reply.last.event == "done" and len(reply.events) > 4
        assert_consecutive(reply)
        middle = len(reply.events) // 2
        rest = await replay(http, user, chat_id, reply.events[middle].id)
        assert as_tuples(rest.events) == as_tuples(reply.events[middle + 1 :])


# c. A Redis that stalls (SIGSTOP) under an open stream.


async def test_stalled_redis_is_503_in_time_and_the_open_stream_completes(deployment: Deployment) -> None:
    server = deployment.redis()
    api = deployment.stack(
        server.url, REDIS_TIMEOUT_SECONDS="1", FAKE_LLM_TOKEN_DELAY_MS="100", FAKE_LLM_REPLY_WORDS="60"
    )
    async with httpx.AsyncClient(base_url=api.url, timeout=CLIENT_TIMEOUT) as http:
        user = await logged_in(http)
        chat_id = await new_chat(http, user)
        async with http.stream(
            "POST", f"/assistant/chat/{chat_id}/", headers=user, json={"prompt": "Take your time"}
        ) as response:
            assert response.status_code == 200
            live = LiveStream(response)
            await live.read_until(3)
            server.pause()
            try:
                for method, path in DOWN_CALLS:
                    answer = await call(http, method, path, headers=user)
                    assert_unavailable(answer, within=1 + 1, what=f"{method} {path}, Redis stalled")
                health = await call(http, "GET", "/health")
                assert health.status == 200 and health.seconds < 1, health
            finally:
                server.resume()
            await until_status(http, "GET", "/user/info", headers=user)
            stream = await live.read_until()
        assert stream.finished and stream.last.event == "done", stream.last
        assert_consecutive(stream)  # no gap, no duplicate
        whole = await replay(http, user, chat_id)
        assert as_tuples(stream.events) == as_tuples(whole.events)
        assert stream.text == whole.text


# d. Redis error replies, through a fault proxy; one stack for all of them, healed between cases.

REDIS_ERRORS = [
    "LOADING Redis is loading the dataset in memory",
    "READONLY You can't write against a read only replica.",
    "NOAUTH Authentication required.",
    "OOM command not allowed when used memory > 'maxmemory'.",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "CLUSTERDOWN The cluster is down",
    "TRYAGAIN Multiple keys request during rehashing of slot",
]


@dataclass
class Proxied:
    api: Api
    proxy: FaultProxy


@pytest.fixture(scope="module")
def proxied() -> Iterator[Proxied]:
    deployment = Deployment(Processes())
    try:
        proxy = deployment.proxy(deployment.redis())
        yield Proxied(deployment.stack(proxy.url, REDIS_TIMEOUT_SECONDS="1"), proxy)
    finally:
        deployment.stop()


@pytest.fixture
async def proxied_http(proxied: Proxied) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=proxied.api.url, timeout=CLIENT_TIMEOUT) as http:
        yield http


@pytest.mark.parametrize("error", REDIS_ERRORS, ids=lambda error: error.split()[0])
async def test_redis_error_reply_is_503_then_heals(
    proxied: Proxied, proxied_http: httpx.AsyncClient, error: str
) -> None:
    http = proxied_http
    await until_status(http, "GET", "/user/auth-code")  # the previous case healed
    user = await logged_in(http)
    proxied.proxy.fail_with(error)
    try:
        for method, path in DOWN_CALLS:
            answer = await call(http, method, path, headers=user)
            assert_unavailable(answer, within=1 + 1, what=f"{method} {path}, Redis answering {error.split()[0]}")
    finally:
        proxied.proxy.heal()
    for method, path in DOWN_CALLS:
        await until_status(http, method, path, headers=user)


async def test_worker_takes_jobs_again_after_a_long_error_period(
    proxied: Proxied, proxied_http: httpx.AsyncClient
) -> None:
    """A failover's READONLY lasts until clients move: longer than any blocking read of a worker."""
    user = await logged_in(proxied_http)
    proxied.proxy.fail_with("READONLY You can't write against a read only replica.")
    try:
        await asyncio.sleep(6)
    finally:
        proxied.proxy.heal()
    await until_status(proxied_http, "POST", "/assistant/chat", headers=user)
    reply = await prompt(proxied_http, user, await new_chat(proxied_http, user), "Still there?")
    assert reply.last.event == "done"
    assert_consecutive(reply)


# e. A wrong password, fixed by the operator while the service runs.


async def test_wrong_password_is_503_until_fixed_at_run_time(deployment: Deployment) -> None:
    server = deployment.redis(
        "--user",
        "default",
        "off",
        "--user",
        "app",
        "on",
        ">right",
        "~*",
        "&*",
        "+@all",
        "--user",
        "admin",
        "on",
        ">adm",
        "~*",
        "&*",
        "+@all",
    )
    api = deployment.stack(server.url_with(username="app", password="wrong"), REDIS_TIMEOUT_SECONDS="1")
    some_token = auth("1." + secrets.token_urlsafe(32))
    async with httpx.AsyncClient(base_url=api.url, timeout=CLIENT_TIMEOUT) as http:
        for method, path in (("GET", "/user/auth-code"), ("GET", "/user/info")):
            answer = await call(http, method, path, headers=some_token)
            assert_unavailable(answer, within=1 + 1, what=f"{method} {path}, wrong Redis password")

        with server.client(username="admin", password="adm") as admin:
            admin.execute_command("ACL", "SETUSER", "app", "on", ">wrong")

        await until_status(http, "GET", "/user/auth-code")  # redis-py's pools
        await until_status(http, "GET", "/user/info", status=401, headers=some_token)  # the script path
        user = auth(await dev_login(http))
        await until_status(http, "GET", "/user/info", headers=user)
        reply = await prompt(http, user, await new_chat(http, user), "Let me in")
        assert reply.last.event == "done"
