"""Caps and limits per user, enforced in Redis for every pod at once: chats held, history kept,
SSE streams open, stream opens per minute, reply length (max_tokens); and the chat list's pages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis as sync_redis
from pydantic import ValidationError

from backend.store import keys
from config.settings import Settings
from devstack.login import auth, dev_login
from tests.conftest import LlmStub, Processes, eventually, isolated_url, openai_env
from tests.support.sse import read
from tests.test_chat import new_chat, send

# About 10 s per reply; a worker told to stop hands its jobs back at once.
LONG_REPLY = {"FAKE_LLM_TOKEN_DELAY_MS": "25", "FAKE_LLM_REPLY_WORDS": "400", "WORKER_SHUTDOWN_GRACE_SECONDS": "0.2"}


async def user_id_of(http: httpx.AsyncClient, user: dict[str, str]) -> int:
    return (await http.get("/user/info", headers=user)).json()["userId"]


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["message"] and body["message"]


def assert_too_many(response: httpx.Response) -> None:
    assert_error(response, 429)
    assert int(response.headers["retry-after"]) >= 1


@contextlib.asynccontextmanager
async def streaming(
    http: httpx.AsyncClient, user: dict[str, str], chat_id: int, prompt: str | None = None
) -> AsyncIterator[httpx.Response]:
    """An SSE response held open (a prompt's, or a resumed reply's) until the block ends."""
    if prompt is None:
        request = http.stream("GET", f"/assistant/chat/{chat_id}/stream", headers=user)
    else:
        request = http.stream("POST", f"/assistant/chat/{chat_id}/", headers=user, json={"prompt": prompt})
    async with request as response:
        yield response


# -- chats per user ---------------------------------------------------------------------------


async def test_chat_cap_is_exact_under_concurrent_creates_on_two_pods(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    pods = [processes.api(url, CHATS_PER_USER_MAX="5") for _ in range(2)]
    async with (
        httpx.AsyncClient(base_url=pods[0].url, timeout=20) as a,
        httpx.AsyncClient(base_url=pods[1].url, timeout=20) as b,
    ):
        user = auth(await dev_login(a))
        for _ in range(2):
            await new_chat(a, user)
        created = await asyncio.gather(*(http.post("/assistant/chat", headers=user) for http in [a, b] * 8))
        assert sorted(r.status_code for r in created) == [200] * 3 + [409] * 13
        for response in created:
            if response.status_code == 409:
                assert_error(response, 409)
        listed = (await b.get("/assistant/chat", headers=user, params={"limit": 100})).json()["chats"]
        assert len(listed) == 5
        assert_error(await b.post("/assistant/chat", headers=user), 409)

        other = auth(await dev_login(b))  # the cap is per user
        await new_chat(b, other)

        assert (await a.delete(f"/assistant/chat/{listed[-1]['chatId']}", headers=user)).status_code == 200
        await new_chat(b, user)  # room for one again
        assert_error(await a.post("/assistant/chat", headers=user), 409)


# -- history kept per chat, and what the worker reads -----------------------------------------


async def test_history_keeps_the_newest_and_the_llm_gets_at_most_that_with_max_tokens(
    processes: Processes, redis_url: str, stub: LlmStub
) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url, CHAT_HISTORY_MAX_MESSAGES="4")
    lenient = processes.api(url, CHAT_HISTORY_MAX_MESSAGES="1000")
    processes.worker(url, **openai_env(stub), CHAT_HISTORY_MAX_MESSAGES="4", LLM_MAX_TOKENS="7")
    redis = sync_redis.Redis.from_url(url, decode_responses=True)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        for prompt in ("one", "two", "three"):
            assert (await send(http, user, chat_id, prompt)).last.event == "done"
        messages = (await http.get(f"/assistant/chat/{chat_id}", headers=user)).json()["messages"]
        assert [(m["role"], m["content"].split()[0]) for m in messages] == [
            ("user", "two"),
            ("assistant", "[history=3]"),
            ("user", "three"),
            ("assistant", "[history=3]"),  # the newest 4 open with an assistant's: it is not sent
        ]

        # A history longer than the worker's cap (kept from before it was set, or by a pod with
        # a larger one): the worker still reads only the newest messages, and its save trims it.
        key = keys.messages(await user_id_of(http, user), chat_id)
        redis.lpush(key, *[f'{{"role":"user","content":"old {i}","createdAt":1}}' for i in range(50)])
        async with httpx.AsyncClient(base_url=lenient.url, timeout=20) as other_pod:
            stream = await send(other_pod, user, chat_id, "four")
        assert stream.text.startswith("[history=3]")
        assert redis.llen(key) == 4

    bodies = [r["body"] for r in stub.requests() if r["body"].get("stream")]
    # What is sent opens with a user message (workers/llm/context.py): of the newest 4, 3.
    assert [len([m for m in b["messages"] if m["role"] != "system"]) for b in bodies] == [1, 3, 3, 3]
    assert {b["max_tokens"] for b in bodies} == {7}
    redis.close()


async def test_fake_llm_stops_at_max_tokens(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url)
    processes.worker(url, FAKE_LLM_REPLY_WORDS="50", LLM_MAX_TOKENS="5")
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        user = auth(await dev_login(http))
        stream = await send(http, user, await new_chat(http, user), "say a lot")
        assert stream.last.event == "done"
        assert len([e for e in stream.events if e.data["content"]]) == 5
        assert len(stream.text.split()) == 5


# -- open streams per user, across pods ---------------------------------------------------------


async def test_stream_cap_counts_both_pods_and_frees_a_stream_when_it_ends(
    processes: Processes, redis_url: str
) -> None:
    url = isolated_url(redis_url)
    env = {"STREAMS_PER_USER_MAX": "2", "RATE_LIMIT_STREAM_PER_MINUTE": "0"}
    pods = [processes.api(url, **env) for _ in range(2)]
    processes.worker(url, **LONG_REPLY)
    redis = sync_redis.Redis.from_url(url, decode_responses=True)
    async with (
        httpx.AsyncClient(base_url=pods[0].url, timeout=30) as a,
        httpx.AsyncClient(base_url=pods[1].url, timeout=30) as b,
    ):
        user = auth(await dev_login(a))
        held = keys.open_streams(await user_id_of(a, user))
        first, second, third = [await new_chat(a, user) for _ in range(3)]
        async with streaming(a, user, first, "on pod a") as one, streaming(b, user, second, "on pod b") as two:
            assert one.status_code == two.status_code == 200
            assert redis.zcard(held) == 2

            refused = await a.post(f"/assistant/chat/{third}/", headers=user, json={"prompt": "a third"})
            assert_too_many(refused)
            assert_too_many(await b.get(f"/assistant/chat/{first}/stream", headers=user))
            # Refused before anything happened: the prompt was not stored.
            assert (await a.get(f"/assistant/chat/{third}", headers=user)).json()["messages"] == []

            other = auth(await dev_login(b))  # the cap is per user
            async with streaming(b, other, await new_chat(b, other), "mine") as mine:
                assert mine.status_code == 200

            # The first reply ends (stopped): its stream closes and is freed.
            assert (await a.post(f"/assistant/chat/{first}/stop", headers=user)).status_code == 200
            assert (await read(one)).last.data.get("stopped") is True
            await eventually(lambda: redis.zcard(held) == 1, within=5)
            async with streaming(b, user, third, "now there is room") as three:
                assert three.status_code == 200
                assert_too_many(await a.get(f"/assistant/chat/{first}/stream", headers=user))
        # Clients that went away (the second and third streams) free theirs too.
        await eventually(lambda: redis.zcard(held) == 0, within=5)
        assert (await b.get(f"/assistant/chat/{first}/stream", headers=user)).status_code == 200
    redis.close()


async def test_concurrent_stream_opens_on_two_pods_admit_exactly_the_cap(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    env = {"STREAMS_PER_USER_MAX": "3", "RATE_LIMIT_STREAM_PER_MINUTE": "0"}
    pods = [processes.api(url, **env) for _ in range(2)]
    processes.worker(url, **LONG_REPLY)
    redis = sync_redis.Redis.from_url(url, decode_responses=True)
    async with (
        httpx.AsyncClient(base_url=pods[0].url, timeout=30) as a,
        httpx.AsyncClient(base_url=pods[1].url, timeout=30) as b,
    ):
        user = auth(await dev_login(a))
        held = keys.open_streams(await user_id_of(a, user))
        chat_id = await new_chat(a, user)
        async with streaming(a, user, chat_id, "a long reply to follow") as response:
            assert response.status_code == 200  # then left: the reply goes on
        await eventually(lambda: redis.zcard(held) == 0, within=5)

        statuses: list[int] = []
        release = asyncio.Event()

        async def follow(http: httpx.AsyncClient) -> None:
            async with streaming(http, user, chat_id) as response:
                statuses.append(response.status_code)
                await release.wait()

        followers = [asyncio.create_task(follow(http)) for http in [a, b] * 6]
        await eventually(lambda: len(statuses) == len(followers), within=10)
        assert sorted(statuses) == [200] * 3 + [429] * 9
        assert redis.zcard(held) == 3
        release.set()
        await asyncio.gather(*followers)
        await eventually(lambda: redis.zcard(held) == 0, within=5)
    redis.close()


async def test_streams_of_a_killed_pod_are_freed_within_the_lease(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    env = {"STREAMS_PER_USER_MAX": "2", "JOB_LEASE_SECONDS": "2", "RATE_LIMIT_STREAM_PER_MINUTE": "0"}
    doomed, survivor = processes.api(url, **env), processes.api(url, **env)
    processes.worker(url, JOB_LEASE_SECONDS="2", **LONG_REPLY)
    async with (
        httpx.AsyncClient(base_url=doomed.url, timeout=30) as a,
        httpx.AsyncClient(base_url=survivor.url, timeout=30) as b,
    ):
        user = auth(await dev_login(a))
        first, second = await new_chat(a, user), await new_chat(a, user)
        async with streaming(a, user, first, "long one"), streaming(a, user, second, "long two"):
            # Held well past the 2 s an entry lasts unless its pod extends it.
            await asyncio.sleep(2.6)
            assert_too_many(await b.get(f"/assistant/chat/{first}/stream", headers=user))
            doomed.kill()
            killed = time.monotonic()

            async def reopened() -> bool:
                async with streaming(b, user, first) as response:
                    return response.status_code == 200

            await eventually(reopened, within=6, interval=0.1)
            freed_after = time.monotonic() - killed
    assert freed_after < 3.5, freed_after  # the lease (2 s) plus a refresh round, with slack


# -- stream opens per minute ----------------------------------------------------------------------


async def test_stream_opens_are_rate_limited_per_user(processes: Processes, redis_url: str) -> None:
    url = isolated_url(redis_url)
    api = processes.api(url, RATE_LIMIT_STREAM_PER_MINUTE="3")
    processes.worker(url)
    async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
        user = auth(await dev_login(http))
        chat_id = await new_chat(http, user)
        await send(http, user, chat_id, "prompts do not count as stream opens")
        for _ in range(3):
            async with streaming(http, user, chat_id) as response:
                assert response.status_code == 200
                assert (await read(response)).last.event == "done"
        assert_too_many(await http.get(f"/assistant/chat/{chat_id}/stream", headers=user))
        assert (await send(http, user, chat_id, "still fine")).last.event == "done"
        other = auth(await dev_login(http))
        await send(http, other, other_chat := await new_chat(http, other), "hello")
        assert (await http.get(f"/assistant/chat/{other_chat}/stream", headers=other)).status_code == 200


# -- GET /assistant/chat pages ---------------------------------------------------------------------


async def pages(http: httpx.AsyncClient, user: dict[str, str], limit: int) -> list[list[dict]]:
    """Every page from the first, following `next`."""
    out: list[list[dict]] = []
    params: dict[str, object] = {"limit": limit}
    while True:
        response = await http.get("/assistant/chat", headers=user, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        out.append(body["chats"])
        if "next" not in body:
            return out
        assert set(body) == {"chats", "next"} and len(body["chats"]) == limit
        params = {"limit": limit, "before": body["next"]}


def ids(chats: list[dict]) -> list[int]:
    return [c["chatId"] for c in chats]


async def test_chat_list_pages_most_recently_updated_first(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    created = [await new_chat(client, user) for _ in range(7)]
    everything = (await client.get("/assistant/chat", headers=user)).json()
    assert "next" not in everything and sorted(ids(everything["chats"])) == sorted(created)
    updated = [c["updatedAt"] for c in everything["chats"]]
    assert updated == sorted(updated, reverse=True)
    for limit in (1, 3, 7):
        got = await pages(client, user, limit)
        assert [c for page in got for c in page] == everything["chats"]
        assert len(got) == -(-7 // limit)
    listed = await client.get("/assistant/chat", headers=user, params={"limit": 7})
    assert "next" not in listed.json()  # exactly a full page: no next


async def test_chat_list_pages_are_stable_across_ties(
    client: httpx.AsyncClient, user: dict[str, str], redis_client: sync_redis.Redis
) -> None:
    created = [await new_chat(client, user) for _ in range(12)]
    user_id = await user_id_of(client, user)
    tied = 1_700_000_000_000
    for index, chat_id in enumerate(created):  # two groups of six chats sharing one updatedAt each
        score = tied if index % 2 else tied - 1
        redis_client.zadd(keys.chats(user_id), {str(chat_id): score})
        redis_client.hset(keys.chat(user_id, chat_id), "updatedAt", score)
    everything = (await client.get("/assistant/chat", headers=user)).json()["chats"]
    assert [c["updatedAt"] for c in everything] == [tied] * 6 + [tied - 1] * 6
    for limit in (1, 2, 4, 5):
        got = [c for page in await pages(client, user, limit) for c in page]
        assert got == everything  # same order, each chat exactly once


async def test_chat_list_pages_across_updates(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    created = [await new_chat(client, user) for _ in range(6)]
    first = await client.get("/assistant/chat", headers=user, params={"limit": 2})
    page_one = ids(first.json()["chats"])
    rest = [c for c in ids((await client.get("/assistant/chat", headers=user)).json()["chats"]) if c not in page_one]
    # Meanwhile a chat already seen and a chat not yet seen get new messages: both move to the top.
    seen, unseen = page_one[1], rest[1]
    await send(client, user, seen, "bump a seen chat")
    await send(client, user, unseen, "bump an unseen chat")
    after: list[int] = []
    params = {"limit": 2, "before": first.json()["next"]}
    while True:
        body = (await client.get("/assistant/chat", headers=user, params=params)).json()
        after += ids(body["chats"])
        if "next" not in body:
            break
        params = {"limit": 2, "before": body["next"]}
    assert after == [c for c in rest if c != unseen]  # no duplicate, nothing else skipped, same order
    top = ids((await client.get("/assistant/chat", headers=user, params={"limit": 2})).json()["chats"])
    assert top == [unseen, seen]
    assert sorted(page_one + after + [unseen]) == sorted(created)


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "limit=",
        "limit=1e2",
        "limit=05",
        "limit=%D9%A3",
        "limit=10000000000000000000000",
        "before=",
        "before=abc",
        "before=1-",
        "before=-1",
        "before=1-0",
        "before=1-01",
        "before=%C2%B2-1",
        "before=1-%C2%B2",
        "before=" + "9" * 5000 + "-1",
        "before=1-1-1",
        "before=1%20-1",
        "before=%FF%FE",
        "limit=2&before=12",
    ],
)
async def test_bad_paging_parameters_are_400(client: httpx.AsyncClient, user: dict[str, str], query: str) -> None:
    assert_error(await client.get(f"/assistant/chat?{query}", headers=user), 400)


async def test_a_well_formed_cursor_past_the_end_is_an_empty_page(
    client: httpx.AsyncClient, user: dict[str, str]
) -> None:
    await new_chat(client, user)
    response = await client.get("/assistant/chat", headers=user, params={"before": "1-1"})
    assert response.status_code == 200 and response.json() == {"chats": []}


# -- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LLM_MAX_TOKENS", "0"),
        ("CHATS_PER_USER_MAX", "0"),
        ("CHAT_HISTORY_MAX_MESSAGES", "1"),
        ("STREAMS_PER_USER_MAX", "0"),
        ("RATE_LIMIT_STREAM_PER_MINUTE", "-1"),
    ],
)
def test_limit_settings_are_bounded(name: str, value: str) -> None:
    with pytest.raises(ValidationError) as error:
        Settings(**{name: value})
    assert error.value.errors()[0]["loc"] == (name,)


def test_limit_defaults() -> None:
    names = (
        "LLM_MAX_TOKENS",
        "CHATS_PER_USER_MAX",
        "CHAT_HISTORY_MAX_MESSAGES",
        "STREAMS_PER_USER_MAX",
        "RATE_LIMIT_STREAM_PER_MINUTE",
    )
    assert [Settings.model_fields[name].default for name in names] == [1024, 1000, 200, 10, 120]
