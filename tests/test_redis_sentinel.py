"""Redis behind Sentinel, through HTTP only: two API pods and a worker on a master, a replica and
three Sentinels (down-after-milliseconds 1000, failover-timeout 5000; passwords on the data nodes
and on the Sentinels), all real processes.

Under a planned failover (SENTINEL FAILOVER) and a SIGKILLed master: a reply streaming at that
moment ends with `done` (no gap, no duplicate, and the log on the new master holds exactly what
the client saw) or `error`, never hangs; no request waits longer than REDIS_TIMEOUT_SECONDS + 1 s;
both pods and the worker serve new prompts again within 20 s (30 s for a killed master), and
logins work against the new master. The measured recovery times are printed (pytest -s).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from devstack.login import auth, dev_login
from devstack.redis_server import RedisSentinels, make_tls_files
from devstack.services import ROOT, Api, _env
from tests.conftest import Processes, eventually
from tests.support.sse import read
from tests.test_chat import assert_consecutive, new_chat
from tests.test_redis_deployments import Answer, LiveStream, call, replay

TIMEOUT = 1.0  # REDIS_TIMEOUT_SECONDS of the services
SERVICES = {
    "REDIS_TIMEOUT_SECONDS": str(TIMEOUT),
    "FAKE_LLM_TOKEN_DELAY_MS": "20",
    "FAKE_LLM_REPLY_WORDS": "120",
    "JOB_LEASE_SECONDS": "5",
}


@dataclass
class SentinelStack:
    redis: RedisSentinels
    apis: list[Api]


def two_pods_and_a_worker(processes: Processes, redis: RedisSentinels, url: str) -> SentinelStack:
    env = {**SERVICES, "REDIS_SENTINELS": redis.hosts, "REDIS_SENTINEL_MASTER": redis.name}
    if redis.sentinel_password:
        env["REDIS_SENTINEL_PASSWORD"] = redis.sentinel_password
    # REDIS_URL's host is not used: it names a port where nothing listens.
    url = url.replace(f":{redis.nodes[0].port}/", ":1/")
    apis = [processes.api(url, **env), processes.api(url, **env)]
    processes.worker(url, **env)
    return SentinelStack(redis, apis)


@pytest.fixture
def stack_on_sentinel(processes: Processes) -> Iterator[SentinelStack]:
    redis = RedisSentinels(auth="data-pw", sentinel_password="sentinel-pw")
    try:
        redis.start()
        yield two_pods_and_a_worker(processes, redis, redis.url)
    finally:
        processes.stop_all()
        redis.stop()


@dataclass
class Probe:
    """Both pods asked every 100 ms what a logged-in user asks (a read and a write) until stopped."""

    clients: list[httpx.AsyncClient]
    users: list[dict[str, str]]
    answers: list[tuple[str, Answer]] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async def ask(http: httpx.AsyncClient, user: dict[str, str]) -> None:
            while not self.stopped.is_set():
                for method, path in (("GET", "/user/info"), ("POST", "/assistant/chat")):
                    self.answers.append((f"{method} {path}", await call(http, method, path, headers=user)))
                await asyncio.sleep(0.1)

        await asyncio.gather(*(ask(http, user) for http, user in zip(self.clients, self.users, strict=True)))

    def check(self) -> None:
        assert self.answers
        for what, answer in self.answers:
            assert answer.status in (200, 503), f"{what}: {answer.status} {answer.body}"
            assert answer.seconds <= TIMEOUT + 1, f"{what} took {answer.seconds:.2f}s"
            if answer.status == 503:
                assert answer.json()["message"], answer.body


async def first_reply(http: httpx.AsyncClient, user: dict[str, str], since: float, within: float) -> float:
    """Seconds from `since` until a new prompt on this pod gets its first event (a worker took it);
    that reply must then end with `done`."""
    while True:
        first_event_at = None
        try:
            async with asyncio.timeout(15):
                created = await http.post("/assistant/chat", headers=user)
                if created.status_code == 200:
                    chat_id = created.json()["chatId"]
                    path = f"/assistant/chat/{chat_id}/"
                    async with http.stream("POST", path, headers=user, json={"prompt": "back?"}) as response:
                        if response.status_code == 200:
                            live = LiveStream(response)
                            await live.read_until(1)
                            first_event_at = time.monotonic()
                            stream = await live.read_until()
                            if stream.finished and stream.last.event == "done":
                                assert_consecutive(stream)
                                return first_event_at - since
        except (TimeoutError, httpx.HTTPError):
            pass
        assert time.monotonic() - since < within, f"no prompt served within {within}s"
        await asyncio.sleep(0.2)


async def recovered(stack: SentinelStack, clients: list[httpx.AsyncClient], since: float, within: float) -> float:
    """Both pods (and the worker) serve new prompts: seconds from `since` until the later one did."""
    users = [auth(await _login_retrying(http, since, within)) for http in clients]
    times = await asyncio.gather(
        *(first_reply(http, user, since, within) for http, user in zip(clients, users, strict=True))
    )
    return max(times)


async def _login_retrying(http: httpx.AsyncClient, since: float, within: float) -> str:
    while True:
        try:
            return await dev_login(http)
        except (AssertionError, httpx.HTTPError, KeyError):
            assert time.monotonic() - since < within, f"no login within {within}s"
            await asyncio.sleep(0.2)


async def stream_through(stack: SentinelStack, fault: str, within: float) -> None:
    a, b = (httpx.AsyncClient(base_url=api.url, timeout=15) for api in stack.apis)
    try:
        users = [auth(await dev_login(a)), auth(await dev_login(b))]
        old_master = stack.redis.master()
        chat_id = await new_chat(a, users[0])
        probe = Probe([a, b], users)
        async with a.stream(
            "POST", f"/assistant/chat/{chat_id}/", headers=users[0], json={"prompt": "keep talking"}
        ) as response:
            assert response.status_code == 200
            live = LiveStream(response)
            await live.read_until(10)
            probing = asyncio.create_task(probe.run())
            since = time.monotonic()
            if fault == "failover":
                stack.redis.failover()
            else:
                stack.redis.kill_master()
            async with asyncio.timeout(45):  # it never hangs
                stream = await live.read_until()
        new_master = stack.redis.wait_new_master(old_master, within)
        switched = time.monotonic() - since
        seconds = await recovered(stack, [a, b], since, within)
        probe.stopped.set()
        await probing
        refused = sum(answer.status == 503 for _, answer in probe.answers)
        slowest = max(answer.seconds for _, answer in probe.answers)
        print(
            f"\n{fault}: Sentinels switched after {switched:.1f}s, both pods served new prompts after {seconds:.1f}s;"
            f" the streaming reply ended with {stream.last.event} ({len(stream.events)} events);"
            f" {refused} of {len(probe.answers)} probe requests 503, the slowest took {slowest:.2f}s"
        )

        assert stream.finished and stream.last.event in ("done", "error"), stream.events[-1:]
        assert_consecutive(stream)  # no gap, no duplicate
        if stream.last.event == "done":  # everything the client saw is on the new master
            whole = await replay(b, users[0], chat_id)
            assert [(e.id, e.event, e.data) for e in whole.events] == [(e.id, e.event, e.data) for e in stream.events]
        assert seconds <= within
        probe.check()

        # Logins before and after the failover work against the new master, on both pods.
        for http, user in ((a, users[1]), (b, users[0])):
            assert (await http.get("/user/info", headers=user)).status_code == 200
        token = await dev_login(b, "after-failover")
        assert (await a.get("/user/info", headers=auth(token))).json()["username"] == "after-failover"
        with stack.redis.client(new_master, decode_responses=True) as client:
            assert client.info("replication")["role"] == "master" and client.dbsize() > 0
    finally:
        await a.aclose()
        await b.aclose()


async def test_control_prompt_streams_to_done(stack_on_sentinel: SentinelStack) -> None:
    async with (
        httpx.AsyncClient(base_url=stack_on_sentinel.apis[0].url, timeout=15) as a,
        httpx.AsyncClient(base_url=stack_on_sentinel.apis[1].url, timeout=15) as b,
    ):
        user = auth(await dev_login(a, "sentinel-user"))
        assert (await b.get("/user/info", headers=user)).json()["username"] == "sentinel-user"
        chat_id = await new_chat(a, user)
        async with a.stream("POST", f"/assistant/chat/{chat_id}/", headers=user, json={"prompt": "hi"}) as response:
            assert response.status_code == 200
            stream = await read(response)
        assert stream.last.event == "done" and len(stream.events) > 100
        assert_consecutive(stream)
        whole = await replay(b, user, chat_id)
        assert [(e.id, e.data) for e in whole.events] == [(e.id, e.data) for e in stream.events]
    # Everything went to the master the Sentinels name; the replica has it too.
    master = stack_on_sentinel.redis.master()
    replica = next(node for node in stack_on_sentinel.redis.nodes if node is not master)
    with stack_on_sentinel.redis.client(master) as m, stack_on_sentinel.redis.client(replica) as r:
        assert m.dbsize() > 0
        await eventually(lambda: r.dbsize() == m.dbsize(), within=5)


async def test_sentinel_failover_while_a_reply_streams(stack_on_sentinel: SentinelStack) -> None:
    await stream_through(stack_on_sentinel, "failover", within=20)


async def test_master_killed_while_a_reply_streams(stack_on_sentinel: SentinelStack) -> None:
    await stream_through(stack_on_sentinel, "kill", within=30)


async def test_failover_with_tls_and_an_acl_user_without_role(processes: Processes, tmp_path: Path) -> None:
    """Every node and Sentinel on TLS only (a private CA), the service as an ACL user that may not
    run ROLE (its connections then rely on READONLY to find a demoted master)."""
    app_user = ("--user", "app", "on", ">app-pw", "~*", "&*", "+@all", "-role")
    redis = RedisSentinels(auth="data-pw", tls=make_tls_files(tmp_path), extra=app_user)
    try:
        redis.start()
        url = redis.nodes[0].url_with(username="app", password="app-pw")
        assert url.startswith("rediss://") and "ssl_ca_certs=" in url
        await stream_through(two_pods_and_a_worker(processes, redis, url), "failover", within=20)
    finally:
        processes.stop_all()
        redis.stop()


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_CLUSTER": "true"},
            "configuration error: REDIS_SENTINELS: cannot be used with REDIS_CLUSTER=true",
        ),
        ({"REDIS_SENTINELS": "127.0.0.1"}, "configuration error: REDIS_SENTINELS: '127.0.0.1' is not host:port"),
    ],
)
def test_sentinel_configuration_refused_at_start(env: dict[str, str], line: str) -> None:
    for module in ("backend", "workers"):
        done = subprocess.run(
            [sys.executable, "-m", module],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            env=_env("redis://127.0.0.1:1/0", env),
        )
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(line), done.stderr
