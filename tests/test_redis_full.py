"""A full Redis: a real redis-server with a small `maxmemory` and `noeviction`, filled until it
answers OOM, under a running API and worker (through HTTP only).

Every refused write is a 503 JSON with Retry-After and nothing of it is written (the user's keys
are byte for byte what they were); reads that need no write still answer; /metrics shows used
memory past maxmemory; a reply streaming at that moment ends; once memory is freed everything
works again, without a restart.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import httpx
import pytest
import redis as sync_redis

from devstack.login import auth, dev_login
from devstack.redis_server import RedisServer
from tests.conftest import Processes
from tests.test_chat import assert_consecutive, new_chat
from tests.test_interview import describe, ready_questions
from tests.test_redis_deployments import LiveStream, call, prompt

FILLER = 256 * 1024
REFUSED_WRITES = (
    ("POST", "/assistant/chat", None),
    ("POST", "/assistant/chat/{chat}/", {"prompt": "one more"}),
    ("POST", "/user/skill-description", {"description": "Python and Redis"}),
    ("DELETE", "/assistant/chat/{chat}", None),
    ("GET", "/user/auth-code", None),
)
READS = ("/user/info", "/user/questions", "/assistant/chat", "/assistant/chat/{chat}", "/ready")


@pytest.fixture
def full_redis() -> Iterator[RedisServer]:
    server = RedisServer(None, "--maxmemory", "48mb", "--maxmemory-policy", "noeviction").start()
    yield server
    server.stop()


def fill(client: sync_redis.Redis) -> int:
    """Write filler values until Redis refuses one (OOM: the value itself counted); then lower
    maxmemory a little below what is used, so the small frees of a running service (an expired
    key, a client's buffer) do not let writes through now and then. Returns the filler count."""
    count = 0
    with pytest.raises(sync_redis.exceptions.OutOfMemoryError):
        while count < 1000:
            client.set(f"filler:{count}", b"x" * FILLER)
            count += 1
    used = int(client.info("memory")["used_memory"])
    assert used > int(client.config_get("maxmemory")["maxmemory"]) - 2 * FILLER  # full, give or take a value
    client.config_set("maxmemory", used - 4 * FILLER)
    return count


def snapshot(client: sync_redis.Redis, user_id: int) -> dict[str, object]:
    """Every key of the user that does not expire by itself, with its whole value."""
    found: dict[str, object] = {}
    for key in client.scan_iter(match=f"ai:{{u:{user_id}}}:*", count=1000):
        if client.ttl(key) != -1:
            continue
        kind = client.type(key)
        found[key] = {
            "hash": lambda k: client.hgetall(k),
            "list": lambda k: client.lrange(k, 0, -1),
            "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            "stream": lambda k: client.xrange(k),
            "string": lambda k: client.get(k),
            "set": lambda k: client.smembers(k),
        }[kind](key)
    return found


def gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match[1])


async def test_full_redis_refuses_writes_whole_and_recovers(full_redis: RedisServer, processes: Processes) -> None:
    # A reply takes about 4 s: long enough to be streaming when Redis fills up.
    env = {
        "REDIS_TIMEOUT_SECONDS": "1",
        "JOB_LEASE_SECONDS": "3",
        "FAKE_LLM_TOKEN_DELAY_MS": "20",
        "FAKE_LLM_REPLY_WORDS": "200",
    }
    api = processes.api(full_redis.url, **env)
    processes.worker(full_redis.url, **env)
    admin = full_redis.client(decode_responses=True)
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=15) as http:
            user = auth(await dev_login(http))
            user_id = (await http.get("/user/info", headers=user)).json()["userId"]
            await describe(http, user)
            questions = await ready_questions(http, user)
            chat = await new_chat(http, user)
            streaming_chat = await new_chat(http, user)
            async with http.stream(
                "POST", f"/assistant/chat/{streaming_chat}/", headers=user, json={"prompt": "a long one"}
            ) as response:
                assert response.status_code == 200
                live = LiveStream(response)
                await live.read_until(5)

                fillers = fill(admin)
                full_at = time.monotonic()
                metrics = (await http.get("/metrics")).text
                used = gauge(metrics, "ai_redis_memory_used_bytes")
                assert used > gauge(metrics, "ai_redis_memory_max_bytes") > 0

                before = snapshot(admin, user_id)
                for method, path, body in REFUSED_WRITES:
                    answer = await call(http, method, path.format(chat=chat), headers=user, json=body)
                    assert answer.status == 503, f"{method} {path}: {answer.status} {answer.body}"
                    assert answer.json()["message"] and "Traceback" not in answer.body
                    assert answer.seconds < 1 + 1, f"{method} {path} took {answer.seconds:.2f}s"
                for path in READS:
                    answer = await call(http, "GET", path.format(chat=chat), headers=user)
                    assert answer.status == 200, f"GET {path} with Redis full: {answer.status} {answer.body}"
                assert (await http.get("/user/questions", headers=user)).json()["questions"] == questions
                first_page = (await http.get("/assistant/chat?limit=1", headers=user)).json()
                second_page = await call(
                    http, "GET", f"/assistant/chat?limit=1&before={first_page['next']}", headers=user
                )
                assert second_page.status == 200 and len(second_page.json()["chats"]) == 1, second_page
                refused = await http.post("/assistant/chat", headers=user)
                assert refused.status_code == 503 and refused.headers["retry-after"].isdigit()
                assert snapshot(admin, user_id) == before  # nothing half-written

                # The reply streaming when Redis filled up ends: its writer can append nothing more,
                # so its lease runs out and it is ended with an error (lua/finish_reply.lua may
                # run on a full Redis: it adds the final frame and frees the partial text).
                async with asyncio.timeout(30):
                    stream = await live.read_until()
                ended_after = time.monotonic() - full_at
            assert stream.finished and stream.last.event == "error", stream.events[-1:]
            assert_consecutive(stream)
            history = (await http.get(f"/assistant/chat/{streaming_chat}", headers=user)).json()["messages"]
            assert history[-1] == {"role": "assistant", "content": stream.text, "createdAt": history[-1]["createdAt"]}

            # Memory freed: everything works again, without a restart.
            admin.delete(*(f"filler:{i}" for i in range(fillers)))
            admin.config_set("maxmemory", "48mb")
            freed_at = time.monotonic()
            answer = await call(http, "POST", "/assistant/chat", headers=user)
            assert answer.status == 200, answer
            writes_after = time.monotonic() - freed_at
            reply = await prompt(http, user, chat, "and now?")
            assert reply.last.event == "done"
            assert_consecutive(reply)
            again = await prompt(http, user, streaming_chat, "are you free again?")
            assert again.last.event == "done"
            print(
                f"\nfull Redis: the streaming reply ended with {stream.last.event} {ended_after:.1f}s after Redis"
                f" filled up (JOB_LEASE_SECONDS=3); writes answered {writes_after:.2f}s after memory was freed"
            )
    finally:
        admin.close()
