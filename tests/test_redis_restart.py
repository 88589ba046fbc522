"""Redis restarted from its files: a real redis-server with `appendonly yes` and `appendfsync
always`, killed (SIGKILL, no chance to save) under a running API and worker while a reply streams,
then started again on the same directory.

Every write that was acknowledged is there (the session, the chats, their history, every event a
client was shown), the interrupted reply ends (`done`, or `error`) with no gap and no duplicate, and
the chat takes new prompts.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from devstack.login import auth, dev_login
from devstack.redis_server import RedisServer
from tests.conftest import Processes
from tests.test_chat import assert_consecutive, new_chat
from tests.test_redis_deployments import LiveStream, prompt, replay, until_status

SERVICES = {
    "REDIS_TIMEOUT_SECONDS": "1",
    "JOB_LEASE_SECONDS": "5",
    "FAKE_LLM_TOKEN_DELAY_MS": "20",
    "FAKE_LLM_REPLY_WORDS": "200",  # about 4 s: the reply is streaming when Redis dies
}


@pytest.fixture
def persistent_redis() -> Iterator[RedisServer]:
    server = RedisServer(None, "--appendonly", "yes", "--appendfsync", "always").start()
    yield server
    server.stop()


def crash(server: RedisServer) -> None:
    """SIGKILL: no shutdown save, only what the AOF already holds survives."""
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(5)
    server.process = None


async def test_restart_from_aof_keeps_acknowledged_writes(persistent_redis: RedisServer, processes: Processes) -> None:
    api = processes.api(persistent_redis.url, **SERVICES)
    processes.worker(persistent_redis.url, **SERVICES)
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as http:
        user = auth(await dev_login(http, "survivor"))
        finished_chat = await new_chat(http, user)
        answered = await prompt(http, user, finished_chat, "remember me")
        assert answered.last.event == "done"
        before = (await http.get(f"/assistant/chat/{finished_chat}", headers=user)).json()
        chats_before = (await http.get("/assistant/chat", headers=user)).json()["chats"]

        chat = await new_chat(http, user)
        async with http.stream(
            "POST", f"/assistant/chat/{chat}/", headers=user, json={"prompt": "a long one"}
        ) as response:
            assert response.status_code == 200
            live = LiveStream(response)
            seen = len((await live.read_until(20)).events)
            crash(persistent_redis)
            await asyncio.sleep(1.0)
            persistent_redis.start()  # same port, same directory: it loads the AOF
            restarted_at = time.monotonic()
            async with asyncio.timeout(30):  # the interrupted reply ends, it never hangs
                stream = await live.read_until()
        ended_after = time.monotonic() - restarted_at

        assert stream.finished and stream.last.event in ("done", "error"), stream.events[-1:]
        assert_consecutive(stream)  # no gap, no duplicate
        assert len(stream.events) > seen
        whole = await replay(http, user, chat)  # the log holds exactly what the client was shown
        assert [(e.id, e.event, e.data) for e in whole.events] == [(e.id, e.event, e.data) for e in stream.events]

        # Acknowledged before the crash, kept: the session, the chats, a finished chat's history.
        assert (await http.get("/user/info", headers=user)).json()["username"] == "survivor"
        assert (await http.get(f"/assistant/chat/{finished_chat}", headers=user)).json() == before
        chats_after = (await http.get("/assistant/chat", headers=user)).json()["chats"]
        assert {c["chatId"] for c in chats_after} == {c["chatId"] for c in chats_before} | {chat}
        messages = (await http.get(f"/assistant/chat/{chat}", headers=user)).json()["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[-1]["content"] == stream.text

        # The chat takes new prompts, and new logins work.
        again = await prompt(http, user, chat, "still there?")
        assert again.last.event == "done"
        assert_consecutive(again)
        await until_status(http, "GET", "/user/auth-code")
        assert (await http.get("/user/info", headers=auth(await dev_login(http)))).status_code == 200
        print(
            f"\nrestart from AOF: the interrupted reply ended with {stream.last.event} {ended_after:.1f}s after"
            f" Redis was back ({len(stream.events)} events, {seen} before the crash)"
        )
