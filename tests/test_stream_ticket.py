"""A browser's native EventSource: stream tickets, reconnects with Last-Event-ID, and the reply
state a reloaded page reads from GET /assistant/chat/:id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis as sync_redis

from devstack.login import auth, dev_login
from devstack.services import Api
from tests.conftest import Processes, eventually, isolated_url
from tests.support.sse import Stream, read
from tests.test_chat import assert_consecutive, new_chat, send

SLOW_REPLY = {"FAKE_LLM_TOKEN_DELAY_MS": "15", "FAKE_LLM_REPLY_WORDS": "120"}  # about 2 s per reply


@dataclass
class Pods:
    a: Api
    b: Api
    redis_url: str


@pytest.fixture(scope="module")
def pods(session_processes: Processes, redis_url: str) -> Pods:
    url = isolated_url(redis_url)
    pods = Pods(session_processes.api(url), session_processes.api(url), url)
    session_processes.worker(url, WORKER_CONCURRENCY="16", **SLOW_REPLY)
    return pods


@pytest.fixture
async def a(pods: Pods) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pods.a.url, timeout=30) as http:
        yield http


@pytest.fixture
async def b(pods: Pods) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pods.b.url, timeout=30) as http:
        yield http


@pytest.fixture
def store(pods: Pods) -> Iterator[sync_redis.Redis]:
    client = sync_redis.Redis.from_url(pods.redis_url, decode_responses=True)
    yield client
    client.close()


async def ticket_for(http: httpx.AsyncClient, user: dict[str, str], chat_id: int) -> str:
    response = await http.post(f"/assistant/chat/{chat_id}/stream-ticket", headers=user)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"ticket", "expiresIn"} and body["expiresIn"] == 60
    assert response.headers["cache-control"] == "no-store"
    return body["ticket"]


async def event_source(
    http: httpx.AsyncClient, url: str, *, last_event_id: str | None = None, max_events: int | None = None
) -> Stream:
    """What EventSource sends: the URL alone, then on a reconnect the same URL and Last-Event-ID."""
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache, no-transform"
        return await read(response, max_events=max_events)  # leaving the block drops the connection


async def reply_state(http: httpx.AsyncClient, user: dict[str, str], chat_id: int) -> dict:
    response = await http.get(f"/assistant/chat/{chat_id}", headers=user)
    assert response.status_code == 200
    return response.json()


async def test_eventsource_reconnect_with_a_ticket_has_no_gap_and_no_duplicate(
    a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    user = auth(await dev_login(a))
    chat_id = await new_chat(a, user)
    sender = asyncio.create_task(send(a, user, chat_id, "stream me to a browser"))
    await eventually(lambda: _streaming(a, user, chat_id))
    url = f"/assistant/chat/{chat_id}/stream?ticket={await ticket_for(a, user, chat_id)}"

    head = await event_source(a, url, max_events=20)  # no Authentication header; then the connection drops
    assert head.retry == 1000 and [e.seq for e in head.events] == list(range(1, 21))
    middle = await event_source(b, url, last_event_id=head.last.id, max_events=15)  # reconnect, other pod
    tail = await event_source(a, url, last_event_id=middle.last.id)  # and again: the ticket is reusable
    assert tail.finished and tail.last.event == "done"

    events = head.events + middle.events + tail.events
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # no gap, no duplicate
    original = await sender
    assert [(e.id, e.event, e.data) for e in events] == [(e.id, e.event, e.data) for e in original.events]
    messages = (await reply_state(a, user, chat_id))["messages"]
    assert head.text + middle.text + tail.text == messages[-1]["content"]


async def _streaming(http: httpx.AsyncClient, user: dict[str, str], chat_id: int) -> bool:
    return (await reply_state(http, user, chat_id))["reply"]["status"] == "streaming"


async def test_a_ticket_is_good_for_its_chats_stream_only(a: httpx.AsyncClient, store: sync_redis.Redis) -> None:
    token = await dev_login(a)
    user = auth(token)
    user_id = (await a.get("/user/info", headers=user)).json()["userId"]
    chat_a, chat_b = await new_chat(a, user), await new_chat(a, user)
    await send(a, user, chat_a, "first")
    await send(a, user, chat_b, "second")
    ticket = await ticket_for(a, user, chat_a)
    assert ticket.startswith(f"st.{user_id}.")

    # Redis holds its SHA-256 only, for a minute, with the chat it is for.
    [key] = store.keys(f"ai:{{u:{user_id}}}:ticket:*")
    assert ticket not in key and ticket.rpartition(".")[2] not in key
    assert 0 < store.ttl(key) <= 60 and store.get(key).startswith(f"{chat_a}:")

    ok = await a.get(f"/assistant/chat/{chat_a}/stream", params={"ticket": ticket})
    assert ok.status_code == 200 and ok.text.count("event: done") == 1

    refused = [
        # never a login: not in the Authentication or Authorization header, not on other routes
        await a.get("/user/info", headers={"Authentication": f"Basic {ticket}"}),
        await a.get("/user/info", headers={"Authorization": f"Bearer {ticket}"}),
        await a.get(f"/assistant/chat/{chat_a}/stream", headers={"Authentication": f"Basic {ticket}"}),
        await a.get(f"/assistant/chat/{chat_a}", params={"ticket": ticket}),
        await a.post(f"/assistant/chat/{chat_a}/stop", params={"ticket": ticket}),
        await a.post(f"/assistant/chat/{chat_a}/stream-ticket", params={"ticket": ticket}),
        # another chat's stream, even of the same user: this ticket is no credential there
        await a.get(f"/assistant/chat/{chat_b}/stream", params={"ticket": ticket}),
        # a session token is no ticket either
        await a.get(f"/assistant/chat/{chat_a}/stream", params={"ticket": token}),
        # two tickets, an empty one
        await a.get(f"/assistant/chat/{chat_a}/stream", params=[("ticket", ticket), ("ticket", ticket)]),
        await a.get(f"/assistant/chat/{chat_a}/stream", params={"ticket": ""}),
    ]
    for response in refused:
        assert response.status_code == 401, (response.request.url, response.text)
        assert response.json()["message"]
    # A ticket does not replace a valid header's check of the chat either: another user's chat is 404.
    intruder = auth(await dev_login(a))
    assert (await a.post(f"/assistant/chat/{chat_a}/stream-ticket", headers=intruder)).status_code == 404
    assert (await a.post("/assistant/chat/987654321/stream-ticket", headers=user)).status_code == 404
    assert (await a.post(f"/assistant/chat/{chat_a}/stream-ticket")).status_code == 401

    # It goes with the session it came from.
    assert (await a.post("/user/logout", headers=user)).status_code == 200
    gone = await a.get(f"/assistant/chat/{chat_a}/stream", params={"ticket": ticket})
    assert gone.status_code == 401 and gone.json()["message"]


BAD_TICKETS = [
    "st.1.",
    "st.01.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "st.1.AAAA",
    "st.1234567890123456789012345678901234567890.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "st.%D9%A1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # an Arabic-Indic digit one
    "st.1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%C3%A9",
    "%ff%fe",
    "st.1.%00" + "A" * 42,
    "st.1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # well formed, never issued
    "st.1." + "A" * 5000,
]


async def test_malformed_or_unknown_tickets_are_401(a: httpx.AsyncClient) -> None:
    user = auth(await dev_login(a))
    chat_id = await new_chat(a, user)
    await send(a, user, chat_id, "hello")
    for ticket in BAD_TICKETS:  # as sent, percent-escapes and all
        response = await a.get(f"/assistant/chat/{chat_id}/stream?ticket={ticket}")
        assert response.status_code == 401 and response.json()["message"], ticket


async def test_get_chat_says_whether_a_reply_is_in_flight(a: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
    user = auth(await dev_login(a))
    chat_id = await new_chat(a, user)
    assert (await reply_state(a, user, chat_id))["reply"] == {"status": "idle"}  # no reply yet: no id

    head = await send(a, user, chat_id, "a page that reloads", max_events=10)  # then the page goes away
    state = (await reply_state(b, user, chat_id))["reply"]
    assert state["status"] in ("queued", "streaming") and set(state) == {"status", "lastEventId"}
    generation, _, seq = state["lastEventId"].partition("-")
    assert generation == "1" and int(seq) >= 10  # at least what the page saw

    # The reloaded page resumes after what it showed: no gap, no duplicate.
    async with b.stream(
        "GET", f"/assistant/chat/{chat_id}/stream", headers={**user, "Last-Event-ID": head.last.id}
    ) as response:
        tail = await read(response)
    assert_consecutive(tail, first_seq=11)
    done = await reply_state(a, user, chat_id)
    assert done["reply"] == {"status": "idle", "lastEventId": tail.last.id}  # the id of the final event
    assert done["messages"][-1]["content"] == head.text + tail.text
