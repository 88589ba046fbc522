"""Bounded growth (PRODUCT.md "Redis as the primary store"): every key the service writes is a
user's capped data or expires. USER_STORAGE_MAX_BYTES, SESSIONS_PER_USER_MAX, the replay log's
TTL and its 410, CHAT_RETENTION_DAYS, the auth-code limit per IPv6 /64, LOGIN_STATES_MAX."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
import redis as sync_redis

from backend.parsing import address_bucket
from backend.store import keys
from backend.store.datastore import Store
from backend.store.retention import DAY_MS
from config.settings import Settings
from devstack.login import auth, dev_code, dev_login
from tests.conftest import Processes, eventually, isolated_url
from tests.support.sse import read
from tests.test_chat import new_chat, send
from tests.test_interview import describe, ready_questions
from workers.retention import LEASE, sweep_forever


@contextlib.asynccontextmanager
async def connected(api_url: str, redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, sync_redis.Redis]]:
    """A client of the API and one of its Redis database."""
    with sync_redis.Redis.from_url(redis_url, decode_responses=True) as store:
        async with httpx.AsyncClient(base_url=api_url, timeout=20) as http:
            yield http, store


USER = r"ai:\{u:(?P<user>[1-9][0-9]*)\}:"


@dataclass(frozen=True)
class Pattern:
    """A key pattern of backend/store/keys.py, and why it cannot grow without bound."""

    regex: str
    kind: str  # "expires": has a TTL; "user": a user's data, capped; "global": a fixed few or capped
    bound: str

    def matches(self, key: str) -> re.Match[str] | None:
        return re.fullmatch(self.regex, key)


# What the README's key table says, checked against the keys a real session leaves behind.
PATTERNS = [
    Pattern(r"ai:seq:(user|chat|question)", "global", "one counter each"),
    Pattern(
        r"ai:\{jobs\}:(chat|questions)", "global", "a job leaves its stream when done; load shedding caps the wait"
    ),
    Pattern(r"ai:\{jobs\}:attempts", "global", "an entry per pending job, removed with it"),
    Pattern(r"ai:\{jobs\}:dead", "global", "MAXLEN ~ 10,000 dead letters"),
    Pattern(r"ai:\{jobs\}:workers(:expiry)?", "global", "an entry per live worker; silent ones dropped"),
    Pattern(r"ai:stats:jobs", "global", "a fixed set of counters"),
    Pattern(r"ai:lease:[a-z-]+", "expires", "lease TTL"),
    Pattern(r"ai:\{oauth\}:pending", "expires", "LOGIN_STATES_MAX entries, each 10 minutes"),
    Pattern(r"ai:\{oauth\}:state:[A-Za-z0-9_-]+", "expires", "10 minutes"),
    Pattern(r"ai:oauth:devcode:[A-Za-z0-9_-]+", "expires", "2 minutes"),
    Pattern(r"ai:rate:[a-z]+:[^ ]+", "expires", "the limiter's window"),
    Pattern(r"ai:identity:[a-z]+:.+", "user", "one per user; deleted with the user"),
    Pattern(USER + r"user", "user", "one hash per user; storedBytes <= USER_STORAGE_MAX_BYTES"),
    Pattern(USER + r"session:[0-9a-f]{64}", "expires", "SESSION_TTL_SECONDS"),
    Pattern(USER + r"sessions", "expires", "SESSIONS_PER_USER_MAX entries; expires with its last session"),
    Pattern(USER + r"(questions|answers)", "user", "QUESTION_COUNT entries"),
    Pattern(USER + r"chats", "user", "CHATS_PER_USER_MAX entries"),
    Pattern(USER + r"chat:[0-9]+", "user", "one per chat"),
    Pattern(USER + r"chat:[0-9]+:messages", "user", "CHAT_HISTORY_MAX_MESSAGES, USER_STORAGE_MAX_BYTES"),
    Pattern(USER + r"chat:[0-9]+:partial", "user", "one reply in flight per chat (LLM_MAX_TOKENS); gone when it ends"),
    Pattern(USER + r"chat:[0-9]+:lease", "expires", "JOB_LEASE_SECONDS"),
    Pattern(USER + r"chat:[0-9]+:log:[0-9]+", "expires", "REPLY_LOG_TTL_SECONDS; at most 2 per chat"),
    Pattern(USER + r"logs", "expires", "logs of chats deleted mid-reply; expires with its last log"),
    Pattern(USER + r"streams", "expires", "STREAMS_PER_USER_MAX entries, JOB_LEASE_SECONDS"),
    Pattern(USER + r"ticket:[0-9a-f]{64}", "expires", "60 s"),
    Pattern(USER + r"tickets", "expires", "expires with its last ticket"),
]


def pattern_of(key: str) -> Pattern:
    found = [p for p in PATTERNS if p.matches(key)]
    assert len(found) == 1, f"{key!r} matches {len(found)} patterns"
    return found[0]


def sample_keys() -> list[str]:
    """Every key name backend/store/keys.py can make, one sample each (channels and the consumer
    group are not keys)."""
    samples = []
    for name, value in vars(keys).items():
        if name.startswith("_") or name in ("PREFIX", "JOB_GROUP", "JOB_STREAMS", "USER_RATE_LIMITS"):
            continue
        if isinstance(value, str):
            samples.append(value)
        elif inspect.isfunction(value) and value.__module__ == keys.__name__ and "channel" not in name:
            args = [7 if "id" in p or p == "gen" else "abc" for p in inspect.signature(value).parameters]
            if name in ("session", "stream_ticket"):
                args[-1] = "0" * 64
            if name == "identity":
                args = ["oidc", "sub"]
            samples.append(value(*args))
    return samples


def test_every_key_pattern_of_keys_py_is_classified() -> None:
    samples = sample_keys()
    assert len(samples) >= 25
    for key in samples:
        pattern_of(key)
    assert pattern_of(keys.identity("oidc", "s", "https://issuer.example/x")).kind == "user"


def scan(client: sync_redis.Redis) -> list[str]:
    return sorted(client.scan_iter(count=1000))


async def test_a_realistic_session_leaves_only_capped_or_expiring_keys(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    env = {"QUESTION_COUNT": "2", "FAKE_LLM_TOKEN_DELAY_MS": "2", "FAKE_LLM_REPLY_WORDS": "20"}
    api = processes.api(url, **env)
    processes.worker(url, **env)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        token = await dev_login(http, "alice")
        user = auth(token)
        second = auth(await dev_login(http, "alice"))
        await describe(http, user)
        for question in await ready_questions(http, user):
            await http.post(f"/user/questions/{question['id']}/answer", headers=user, json={"answer": 0})
        chat_id = await new_chat(http, user)
        for prompt in ("one", "two", "three"):
            assert (await send(http, user, chat_id, prompt)).last.event == "done"
        ticket = (await http.post(f"/assistant/chat/{chat_id}/stream-ticket", headers=user)).json()["ticket"]
        async with http.stream("GET", f"/assistant/chat/{chat_id}/stream", params={"ticket": ticket}) as replay:
            assert (await read(replay)).last.event == "done"
        gone = await new_chat(http, user)
        await send(http, user, gone, "soon deleted")
        assert (await http.delete(f"/assistant/chat/{gone}", headers=user)).status_code == 200
        await http.get("/user/auth-code")  # a login left pending
        assert (await http.get("/user/export", headers=user)).status_code == 200
        assert (await http.post("/user/logout", headers=second)).status_code == 200
        bob = auth(await dev_login(http, "bob"))
        await send(http, bob, await new_chat(http, bob), "hello")

    with sync_redis.Redis.from_url(url, decode_responses=True) as store:
        found = scan(store)
        users = {m["user"] for key in found if (m := re.match(USER, key))}
        assert len(users) == 2
        kinds: dict[str, list[str]] = {}
        for key in found:
            pattern = pattern_of(key)
            kinds.setdefault(pattern.kind, []).append(key)
            if pattern.kind == "expires":
                assert store.pttl(key) > 0, f"{key} should expire"
            match = re.match(USER, key)
            if match:  # a user's key: of a user that exists
                assert store.exists(f"ai:{{u:{match['user']}}}:user"), key
            if key.startswith("ai:identity:"):
                assert store.get(key) in users
        # What each capped key holds, at most.
        for user_id in users:
            assert store.zcard(keys.sessions(user_id)) <= Settings().SESSIONS_PER_USER_MAX
            chats = store.zrange(keys.chats(user_id), 0, -1)
            assert int(store.hget(keys.user(user_id), "storedBytes")) == history_bytes(store, user_id) > 0
            for c in chats:
                assert len(store.keys(keys.reply_log(user_id, c, "*"))) <= 2
                assert store.pttl(keys.reply_log(user_id, c, store.hget(keys.chat(user_id, c), "replyGen"))) <= 3600_000
        assert {"expires", "user", "global"} <= set(kinds)
        seen = {pattern_of(k).regex for k in found}
        assert len(seen) >= 18, sorted(seen)  # the session above touched most patterns


# -- USER_STORAGE_MAX_BYTES ------------------------------------------------------------------------


def stored_bytes(store: sync_redis.Redis, user_id: int) -> int:
    return int(store.hget(keys.user(user_id), "storedBytes") or 0)


def history_bytes(store: sync_redis.Redis, user_id: int | str) -> int:
    """The bytes of every message the user keeps, as stored (UTF-8 JSON: the text, role and time)."""
    total = 0
    for chat_id in store.zrange(keys.chats(user_id), 0, -1):
        total += sum(len(m.encode()) for m in store.lrange(keys.messages(user_id, chat_id), 0, -1))
    return total


async def test_storage_is_counted_in_utf8_bytes_and_refused_past_the_cap(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    env = {"USER_STORAGE_MAX_BYTES": "2000", "FAKE_LLM_TOKEN_DELAY_MS": "1", "FAKE_LLM_REPLY_WORDS": "10"}
    api = processes.api(url, **env)
    processes.worker(url, **env)
    async with connected(api.url, url) as (http, store):
        user = auth(await dev_login(http))
        user_id = (await http.get("/user/info", headers=user)).json()["userId"]
        chats = [await new_chat(http, user) for _ in range(2)]
        prompt = "日本語のテキスト" * 20  # 160 characters, 480 UTF-8 bytes
        size = len(orjson.dumps({"role": "user", "content": prompt, "createdAt": int(time.time() * 1000)}))
        assert 480 < size < 560
        accepted = refused = 0
        for turn in range(8):
            before = stored_bytes(store, user_id)
            response = await http.post(f"/assistant/chat/{chats[turn % 2]}/", headers=user, json={"prompt": prompt})
            if before + size > 2000:  # refused exactly when it would not fit
                assert response.status_code == 409, response.text
                message = response.json()["message"].lower()
                assert "delete" in message and "chat" in message
                refused += 1
            else:
                assert response.status_code == 200, response.text
                accepted += 1
            assert stored_bytes(store, user_id) == history_bytes(store, user_id)
        assert accepted >= 2 and refused >= 1
        before = stored_bytes(store, user_id)
        assert before == history_bytes(store, user_id) and before + size > 2000
        assert (await http.delete(f"/assistant/chat/{chats[0]}", headers=user)).status_code == 200
        assert stored_bytes(store, user_id) == history_bytes(store, user_id) < before
        assert (
            await http.post(f"/assistant/chat/{chats[1]}/", headers=user, json={"prompt": prompt})
        ).status_code == 200
        assert stored_bytes(store, user_id) == history_bytes(store, user_id)


async def test_history_trim_releases_the_bytes_it_drops(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    env = {"CHAT_HISTORY_MAX_MESSAGES": "3", "FAKE_LLM_TOKEN_DELAY_MS": "1", "FAKE_LLM_REPLY_WORDS": "5"}
    api = processes.api(url, **env)
    processes.worker(url, **env)
    async with connected(api.url, url) as (http, store):
        user = auth(await dev_login(http))
        user_id = (await http.get("/user/info", headers=user)).json()["userId"]
        chat_id = await new_chat(http, user)
        for turn in range(5):
            await send(http, user, chat_id, f"prompt {turn} " + "é" * (50 * turn))
            assert store.llen(keys.messages(user_id, chat_id)) <= 3
            assert stored_bytes(store, user_id) == history_bytes(store, user_id) > 0
        assert store.hget(keys.chat(user_id, chat_id), "bytes") == str(stored_bytes(store, user_id))


# -- SESSIONS_PER_USER_MAX, logout everywhere ---------------------------------------------------------


async def test_a_new_login_drops_the_oldest_session(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url, SESSIONS_PER_USER_MAX="3")
    async with connected(api.url, url) as (http, store):
        tokens = [await dev_login(http, "many-devices") for _ in range(5)]
        statuses = [(await http.get("/user/info", headers=auth(t))).status_code for t in tokens]
        assert statuses == [401, 401, 200, 200, 200]
        user_id = int(tokens[0].partition(".")[0])
        assert store.zcard(keys.sessions(user_id)) == 3
        assert len(list(store.scan_iter(keys.session(user_id, "*")))) == 3
        # Racing logins never leave more than the cap.
        more = await asyncio.gather(*(dev_login(http, "many-devices") for _ in range(6)))
        live = [t for t in [*tokens, *more] if (await http.get("/user/info", headers=auth(t))).status_code == 200]
        assert len(live) == 3 and store.zcard(keys.sessions(user_id)) == 3
        assert len(list(store.scan_iter(keys.session(user_id, "*")))) == 3


# -- REPLY_LOG_TTL_SECONDS and 410 ----------------------------------------------------------------------


async def test_resuming_a_reply_whose_log_expired_is_410(
    client: httpx.AsyncClient, user: dict[str, str], redis_client
) -> None:
    assert Settings().REPLY_LOG_TTL_SECONDS == 3600
    chat_id = await new_chat(client, user)
    done = await send(client, user, chat_id, "remember me")
    user_id = (await client.get("/user/info", headers=user)).json()["userId"]
    log = keys.reply_log(user_id, chat_id, 1)
    assert 0 < redis_client.ttl(log) <= 3600
    redis_client.delete(log)  # what the TTL does
    gone = await client.get(f"/assistant/chat/{chat_id}/stream", headers=user)
    assert gone.status_code == 410 and "history" in gone.json()["message"]
    history = (await client.get(f"/assistant/chat/{chat_id}", headers=user)).json()["messages"]
    assert history[-1]["content"] == done.text
    # The next reply's end drops the previous reply's log: at most two logs per chat.
    await send(client, user, chat_id, "again")
    await send(client, user, chat_id, "and again")
    assert sorted(redis_client.scan_iter(keys.reply_log(user_id, chat_id, "*"))) == [
        keys.reply_log(user_id, chat_id, 3)
    ]


# -- CHAT_RETENTION_DAYS -------------------------------------------------------------------------------


def age(store: sync_redis.Redis, user_id: int, chat_id: int, days: float) -> None:
    """Make a chat look last written `days` ago."""
    then = int(time.time() * 1000 - days * DAY_MS)
    store.zadd(keys.chats(user_id), {str(chat_id): then})
    store.hset(keys.chat(user_id, chat_id), "updatedAt", then)


async def test_chats_past_retention_are_deleted_lazily_and_by_the_sweep(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    env = {"FAKE_LLM_TOKEN_DELAY_MS": "1", "FAKE_LLM_REPLY_WORDS": "5"}
    api = processes.api(url, CHAT_RETENTION_DAYS="30", **env)
    processes.worker(url, **env)  # no sweep of its own: this test runs one below
    async with connected(api.url, url) as (http, store):
        users = [auth(await dev_login(http)) for _ in range(2)]
        ids = [(await http.get("/user/info", headers=u)).json()["userId"] for u in users]
        chats = {}
        for user, user_id in zip(users, ids, strict=True):
            old, recent = await new_chat(http, user), await new_chat(http, user)
            await send(http, user, old, "old words")
            age(store, user_id, old, 31)
            age(store, user_id, recent, 29)
            chats[user_id] = (old, recent)
        # A chat written to after the deleter read the index is kept: the Lua call checks updatedAt.
        raced = await new_chat(http, users[0])
        store.zadd(keys.chats(ids[0]), {str(raced): int(time.time() * 1000 - 31 * DAY_MS)})
        # Lazily: listing the chats deletes the ones past retention first.
        listed = (await http.get("/assistant/chat", headers=users[0])).json()["chats"]
        assert sorted(c["chatId"] for c in listed) == sorted([chats[ids[0]][1], raced])
        assert not store.exists(keys.messages(ids[0], chats[ids[0]][0]))
        assert stored_bytes(store, ids[0]) == 0
        # The sweep (a worker's loop, under its lease): the other user never came back.
        worker_store = Store(Settings(REDIS_URL=url, CHAT_RETENTION_DAYS=30), worker=True)
        sweeps = [asyncio.create_task(sweep_forever(worker_store, holder, every=0.2)) for holder in ("w1", "w2")]
        try:
            await eventually(lambda: store.zcard(keys.chats(ids[1])) == 1)
            assert store.get(keys.lease(LEASE)) in ("w1", "w2") and store.pttl(keys.lease(LEASE)) > 0
        finally:
            for task in sweeps:
                task.cancel()
            # A sweep must end when cancelled (a shutdown), even if the cancel meets a Redis deadline.
            await asyncio.wait_for(asyncio.gather(*sweeps, return_exceptions=True), 10)
            await worker_store.close()
        assert store.zrange(keys.chats(ids[1]), 0, -1) == [str(chats[ids[1]][1])]
        assert (await http.get(f"/assistant/chat/{chats[ids[1]][0]}", headers=users[1])).status_code == 404


# -- the auth-code limit per address, and the pending logins of the service ------------------------------


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("[2001:db8:1:3::1]", "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("192.0.2.7", "192.0.2.7"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_address_bucket(address: str, bucket: str) -> None:
    assert address_bucket(address) == bucket


async def test_auth_code_limit_counts_an_ipv6_64_as_one_client(processes: Processes, redis_url: str) -> None:
    api = processes.api(isolated_url(redis_url), PROXIES_COUNT="1", RATE_LIMIT_AUTH_PER_MINUTE="3")

    async def get(http: httpx.AsyncClient, address: str) -> httpx.Response:
        return await http.get("/user/auth-code", headers={"X-Forwarded-For": address})

    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        for address in ("2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6:ffff:1:2:3"):  # one /64
            assert (await get(http, address)).status_code == 200
        refused = await get(http, "2001:db8:5:6:9:9:9:9")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert (await get(http, "2001:db8:5:7::1")).status_code == 200  # the next /64
        for _ in range(3):
            assert (await get(http, "198.51.100.4")).status_code == 200
        assert (await get(http, "::ffff:198.51.100.4")).status_code == 429  # the same IPv4 client


async def test_pending_logins_of_the_service_are_capped(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url, LOGIN_STATES_MAX="3")
    async with connected(api.url, url) as (http, store):
        code, state = await dev_code(http, "pending-1")
        for _ in range(2):
            assert (await http.get("/user/auth-code")).status_code == 200
        full = await http.get("/user/auth-code")
        assert full.status_code == 503 and full.json()["message"]
        assert 1 <= int(full.headers["retry-after"]) <= 600
        assert store.zcard(keys.LOGIN_STATES) == 3 and 0 < store.pttl(keys.LOGIN_STATES) <= 600_000
        # A login that finishes frees its place.
        assert (await http.get("/user/auth-callback", params={"code": code, "state": state})).status_code == 200
        assert (await http.get("/user/auth-code")).status_code == 200
        assert (await http.get("/user/auth-code")).status_code == 503
