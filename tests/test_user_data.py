"""A user's data life cycle (PRODUCT.md "Login and sessions"): GET /user/export, DELETE /user,
POST /user/logout?all=true, checked against the keyspace on a single Redis and on a Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import orjson
import pytest
import redis as sync_redis
from redis.cluster import RedisCluster as SyncCluster

from backend.store import keys
from backend.store.datastore import Store
from config.settings import Settings
from devstack.login import auth, dev_login
from devstack.redis_server import RedisCluster
from tests.conftest import Processes, eventually, isolated_url
from tests.support.sse import read
from tests.test_chat import new_chat, send
from tests.test_interview import describe, ready_questions

AnyClient = sync_redis.Redis | SyncCluster


def keys_of(store: AnyClient, user_id: int) -> list[str]:
    """Every key of the user: under the user's hash tag, the user's rate-limit buckets, and any
    provider identity bound to the user's id."""
    found = []
    for key in store.scan_iter(count=1000):
        if f"{{u:{user_id}}}" in key:
            found.append(key)
        elif key.startswith("ai:rate:") and key.endswith(f":{user_id}"):
            found.append(key)
        elif key.startswith("ai:identity:") and store.get(key) == str(user_id):
            found.append(key)
    return sorted(found)


async def user_id_of(http: httpx.AsyncClient, user: dict[str, str]) -> int:
    return (await http.get("/user/info", headers=user)).json()["userId"]


async def full_session(http: httpx.AsyncClient, username: str) -> tuple[dict[str, str], int, list[int]]:
    """A user with two sessions, a finished interview, two chats with replies, a stream ticket and
    every per-user rate-limit bucket in use: (headers of one session, user id, chat ids)."""
    user = auth(await dev_login(http, username))
    await dev_login(http, username)  # a second device
    await describe(http, user)
    for question in await ready_questions(http, user):
        await http.post(f"/user/questions/{question['id']}/answer", headers=user, json={"answer": 1})
    chats = [await new_chat(http, user) for _ in range(2)]
    for chat_id in chats:
        assert (await send(http, user, chat_id, f"hello from {username} 🌍")).last.event == "done"
    ticket = (await http.post(f"/assistant/chat/{chats[0]}/stream-ticket", headers=user)).json()["ticket"]
    async with http.stream("GET", f"/assistant/chat/{chats[0]}/stream", params={"ticket": ticket}) as replay:
        assert (await read(replay)).last.event == "done"
    assert (await http.get("/user/export", headers=user)).status_code == 200
    return user, await user_id_of(http, user), chats


async def test_export_holds_the_user_the_interview_and_every_chat(
    client: httpx.AsyncClient, user: dict[str, str], redis_client: sync_redis.Redis
) -> None:
    info = (await client.get("/user/info", headers=user)).json()
    await describe(client, user, "Rust and Postgres")
    questions = await ready_questions(client, user)
    answered = questions[0]["id"]
    await client.post(f"/user/questions/{answered}/answer", headers=user, json={"answer": 1})
    chats = [await new_chat(client, user) for _ in range(2)]
    await send(client, user, chats[0], "first chat: naïve café")
    await send(client, user, chats[1], "second chat")
    await send(client, user, chats[1], "second chat, again")

    response = await client.get("/user/export", headers=user)
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    document = response.json()
    assert document["user"]["userId"] == info["userId"] and document["user"]["username"] == info["username"]
    assert document["user"]["createdAt"] == info["createdAt"] and document["user"]["provider"] == "dev"
    assert document["interview"]["skillDescription"] == "Rust and Postgres"
    assert document["interview"]["status"] == "IN_PROGRESS"
    exported = {q["id"]: q for q in document["interview"]["questions"]}
    assert sorted(exported) == sorted(q["id"] for q in questions)
    assert exported[answered]["userAnswer"] == 1
    assert all("userAnswer" not in q for i, q in exported.items() if i != answered)
    assert all("correctAnswer" not in q for q in exported.values())  # not before the interview is done
    assert [c["chatId"] for c in document["chats"]] == [chats[1], chats[0]]  # most recently updated first
    for chat in document["chats"]:
        shown = (await client.get(f"/assistant/chat/{chat['chatId']}", headers=user)).json()
        assert chat["messages"] == shown["messages"] and chat["createdAt"] == shown["createdAt"]
    stored = sum(len(m.encode()) for c in chats for m in redis_client.lrange(keys.messages(info["userId"], c), 0, -1))
    assert (
        document["user"]["storedBytes"]
        == stored
        > sum(len(m["content"]) for c in document["chats"] for m in c["messages"])
    )
    assert len(document["sessions"]) == 1 and document["sessions"][0]["expiresAt"] > info["createdAt"]
    assert orjson.dumps(document)  # one JSON document
    # Exports are few: each reads all of a user's data.
    limited = [(await client.get("/user/export", headers=user)).status_code for _ in range(3)]
    assert 429 in limited


async def test_delete_user_leaves_nothing_and_the_same_identity_logs_in_as_a_new_user(
    processes: Processes, redis_url: str
) -> None:
    url = isolated_url(redis_url)
    env = {"QUESTION_COUNT": "2", "FAKE_LLM_TOKEN_DELAY_MS": "1", "FAKE_LLM_REPLY_WORDS": "10"}
    api = processes.api(url, **env)
    processes.worker(url, **env)
    with sync_redis.Redis.from_url(url, decode_responses=True) as store:
        async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
            user, user_id, chats = await full_session(http, "leaving")
            _, other_id, _ = await full_session(http, "staying")
            mine, others = keys_of(store, user_id), keys_of(store, other_id)
            assert any(":session:" in k for k in mine) and any(":ticket:" in k for k in mine)
            assert any(k.startswith("ai:identity:") for k in mine) and any(k.startswith("ai:rate:") for k in mine)

            deleted = await http.delete("/user", headers=user)
            assert deleted.status_code == 200 and list(deleted.json()) == ["message"]
            assert keys_of(store, user_id) == []
            assert keys_of(store, other_id) == others  # nobody else's data touched
            assert (await http.get("/user/info", headers=user)).status_code == 401
            assert (await http.get(f"/assistant/chat/{chats[0]}", headers=user)).status_code == 401

            again = auth(await dev_login(http, "leaving"))
            info = (await http.get("/user/info", headers=again)).json()
            assert info["userId"] not in (user_id, other_id) and info["interviewQuestionStatus"] == "NOT_STARTED"
            assert (await http.get("/assistant/chat", headers=again)).json() == {"chats": []}
            assert keys_of(store, user_id) == []


async def test_delete_user_mid_reply_stops_it_and_nothing_comes_back(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    env = {"FAKE_LLM_TOKEN_DELAY_MS": "25", "FAKE_LLM_REPLY_WORDS": "400"}  # about 10 s per reply
    api = processes.api(url, **env)
    processes.worker(url, **env)
    with sync_redis.Redis.from_url(url, decode_responses=True) as store:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            user = auth(await dev_login(http, "mid-reply"))
            user_id = await user_id_of(http, user)
            chat_id = await new_chat(http, user)
            async with http.stream("POST", f"/assistant/chat/{chat_id}/", headers=user, json={"prompt": "long"}) as sse:
                reader = asyncio.create_task(read(sse))
                await eventually(lambda: store.exists(keys.partial(user_id, chat_id)))  # chunks are flowing
                async with httpx.AsyncClient(base_url=api.url, timeout=30) as other:
                    assert (await other.delete("/user", headers=user)).status_code == 200
                stream = await asyncio.wait_for(reader, 10)  # ends; never hangs
            assert not stream.finished or stream.last.event == "error"  # never a `done` of a deleted chat
            assert keys_of(store, user_id) == []
            await asyncio.sleep(1.5)  # the worker was told to stop: it writes nothing more
            assert keys_of(store, user_id) == []


async def test_deleted_chats_leave_no_log_behind_a_deleted_user(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    env = {"FAKE_LLM_TOKEN_DELAY_MS": "25", "FAKE_LLM_REPLY_WORDS": "400"}  # about 10 s per reply
    api = processes.api(url, **env)
    processes.worker(url, **env)
    with sync_redis.Redis.from_url(url, decode_responses=True) as store:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            user = auth(await dev_login(http))
            user_id = await user_id_of(http, user)
            idle, busy = await new_chat(http, user), await new_chat(http, user)
            async with http.stream("POST", f"/assistant/chat/{idle}/", headers=user, json={"prompt": "a"}) as sse:
                await eventually(lambda: store.exists(keys.partial(user_id, idle)))
                assert (await http.post(f"/assistant/chat/{idle}/stop", headers=user)).status_code == 200
                await read(sse)
            assert store.exists(keys.reply_log(user_id, idle, 1))
            assert (await http.delete(f"/assistant/chat/{idle}", headers=user)).status_code == 200
            assert not [k for k in keys_of(store, user_id) if f":chat:{idle}" in k]  # its log went with it
            async with http.stream("POST", f"/assistant/chat/{busy}/", headers=user, json={"prompt": "b"}) as sse:
                await eventually(lambda: store.exists(keys.partial(user_id, busy)))
                assert (await http.delete(f"/assistant/chat/{busy}", headers=user)).status_code == 200
                assert (await read(sse)).last.event == "error"
            # The log a reader may still be reading stays until it expires, listed for the user.
            assert 0 < store.ttl(keys.reply_log(user_id, busy, 1)) <= 3600
            assert store.zrange(keys.deleted_chat_logs(user_id), 0, -1) == [f"{busy}:1"]
            assert (await http.delete("/user", headers=user)).status_code == 200
            assert keys_of(store, user_id) == []


async def test_a_login_racing_the_deletion_cannot_revive_the_user(redis_url: str) -> None:
    """A login that read the identity's binding before DELETE /user unbound it, and opens its
    session after the user hash went, makes no user: it unbinds what is left and makes a new user."""
    url = isolated_url(redis_url)
    store = Store(Settings(REDIS_URL=url))
    try:
        user_id, _ = await store.users.login("dev", "racer", "racer")
        await store.accounts.delete(user_id)
        identity = keys.identity("dev", "racer")
        stale = await store.users._open_session(user_id, "racer", "dev", False, identity, "")
        assert stale is None  # the stale login's half: no user hash is made for the deleted id
        with sync_redis.Redis.from_url(url, decode_responses=True) as client:
            assert keys_of(client, user_id) == []
            await store.scripts.claim_identity(keys=[identity], args=[user_id])  # as if unbound too late
            new_id, token = await store.users.login("dev", "racer", "racer")
            assert new_id != user_id and token.startswith(f"{new_id}.")
            assert client.get(identity) == str(new_id) and keys_of(client, user_id) == []
    finally:
        await store.close()


async def test_logout_everywhere(client: httpx.AsyncClient) -> None:
    tokens = [await dev_login(client, "three-devices") for _ in range(3)]
    someone_else = auth(await dev_login(client))
    chat_id = await new_chat(client, auth(tokens[0]))
    await send(client, auth(tokens[0]), chat_id, "hi")
    ticket = (await client.post(f"/assistant/chat/{chat_id}/stream-ticket", headers=auth(tokens[0]))).json()["ticket"]
    for bad in ("yes", "1", ""):
        response = await client.post("/user/logout", headers=auth(tokens[1]), params={"all": bad})
        assert response.status_code == 400 and "all" in response.json()["message"]
    assert (await client.post("/user/logout", headers=auth(tokens[2]), params={"all": "false"})).status_code == 200
    assert (await client.get("/user/info", headers=auth(tokens[2]))).status_code == 401
    assert (await client.get("/user/info", headers=auth(tokens[0]))).status_code == 200
    everywhere = await client.post("/user/logout", headers=auth(tokens[1]), params={"all": "true"})
    assert everywhere.status_code == 200 and everywhere.json()["message"]
    for token in tokens:
        assert (await client.get("/user/info", headers=auth(token))).status_code == 401
    assert (await client.get(f"/assistant/chat/{chat_id}/stream", params={"ticket": ticket})).status_code == 401
    assert (await client.get("/user/info", headers=someone_else)).status_code == 200
    back = auth(await dev_login(client, "three-devices"))  # the data stays: only the sessions ended
    assert [c["chatId"] for c in (await client.get("/assistant/chat", headers=back)).json()["chats"]] == [chat_id]


# -- on a Redis Cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    nodes = RedisCluster().start()
    yield nodes
    nodes.stop()


async def test_delete_user_on_a_cluster_leaves_nothing_on_any_node(cluster: RedisCluster) -> None:
    procs = Processes()
    env = {"REDIS_CLUSTER": "true", "QUESTION_COUNT": "2", "FAKE_LLM_TOKEN_DELAY_MS": "1", "FAKE_LLM_REPLY_WORDS": "10"}
    try:
        api = procs.api(cluster.url, **env)
        procs.worker(cluster.url, **env)
        store = SyncCluster.from_url(cluster.url, decode_responses=True)
        try:
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
                sessions = [await full_session(http, f"cluster-{n}") for n in range(3)]  # over the masters
                (user, user_id, _), *rest = sessions
                kept = {other_id: keys_of(store, other_id) for _, other_id, _ in rest}
                before = keys_of(store, user_id)
                assert len(before) >= 10  # the scan reaches every master: identity and rate keys live elsewhere
                assert any(k.startswith("ai:identity:") for k in before) and any(
                    k.startswith("ai:rate:") for k in before
                )
                assert (await http.delete("/user", headers=user)).status_code == 200
                assert keys_of(store, user_id) == []
                assert {other_id: keys_of(store, other_id) for other_id in kept} == kept
                again = auth(await dev_login(http, "cluster-0"))
                assert (await user_id_of(http, again)) != user_id
                await asyncio.sleep(1.0)
                assert keys_of(store, user_id) == []
                _, other_user_id, _ = rest[0]
                everywhere = await http.post("/user/logout", headers=rest[0][0], params={"all": "true"})
                assert everywhere.status_code == 200
                assert not [k for k in keys_of(store, other_user_id) if ":session" in k]
        finally:
            store.close()
    finally:
        procs.stop_all()
