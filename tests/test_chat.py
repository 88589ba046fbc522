"""Assistant chat: CRUD, the SSE event format, one reply in flight, bad input, ownership."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from devstack.login import auth, dev_login
from tests.support.sse import Stream, read


async def new_chat(client: httpx.AsyncClient, user: dict[str, str]) -> int:
    response = await client.post("/assistant/chat", headers=user)
    assert response.status_code == 200
    chat_id = response.json()["chatId"]
    assert isinstance(chat_id, int) and chat_id > 0
    return chat_id


async def send(
    client: httpx.AsyncClient,
    user: dict[str, str],
    chat_id: int,
    prompt: str,
    *,
    slash: bool = True,
    max_events: int | None = None,
) -> Stream:
    path = f"/assistant/chat/{chat_id}/" if slash else f"/assistant/chat/{chat_id}"
    async with client.stream("POST", path, headers=user, json={"prompt": prompt}) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache, no-transform"
        assert response.headers["x-accel-buffering"] == "no"
        stream = await read(response, max_events=max_events)
        assert stream.raw.startswith("retry: 1000\n\n") and stream.retry == 1000  # sent at once, no event
        return stream


def assert_consecutive(stream: Stream, first_seq: int = 1) -> None:
    assert [e.seq for e in stream.events] == list(range(first_seq, first_seq + len(stream.events)))


async def test_reply_event_format(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    chat_id = await new_chat(client, user)
    stream = await send(client, user, chat_id, "What is a closure?")
    first, *rest = stream.raw.split("\n\n")
    assert first == "retry: 1000"  # the reconnection hint opens every stream
    frames = [f for f in rest if f != ": ping"]  # heartbeats may come next
    assert frames[-1] == ""
    for frame in frames[:-2]:
        assert re.fullmatch(r'id: 1-\d+\ndata: \{"content":".*"\}', frame, re.S), frame
    assert re.fullmatch(r'id: 1-\d+\nevent: done\ndata: \{"content":"",.*\}', frames[-2])
    done = stream.last.data
    assert done["finishReason"] == "stop" and done["usage"]["completionTokens"] == len(stream.events) - 1
    assert stream.finished and stream.last.event == "done"
    assert all(isinstance(e.data["content"], str) for e in stream.events)
    assert_consecutive(stream)
    assert stream.text.startswith('(turn 1) You asked: "What is a closure?".')


async def test_chat_history_listing_and_delete(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    first = await new_chat(client, user)
    second = await new_chat(client, user)
    listed = (await client.get("/assistant/chat", headers=user)).json()["chats"]
    assert [c["chatId"] for c in listed] == [second, first]
    assert listed[0]["title"] == "" and isinstance(listed[0]["createdAt"], int)

    stream = await send(client, user, first, "Tell me   about\nRedis streams", slash=False)
    listed = (await client.get("/assistant/chat", headers=user)).json()["chats"]
    assert [c["chatId"] for c in listed] == [first, second]  # most recently updated first
    assert listed[0]["title"] == "Tell me about Redis streams"
    assert listed[0]["updatedAt"] >= listed[0]["createdAt"]

    chat = (await client.get(f"/assistant/chat/{first}", headers=user)).json()
    assert chat["chatId"] == first and isinstance(chat["createdAt"], int)
    assert [(m["role"], m["content"]) for m in chat["messages"]] == [
        ("user", "Tell me   about\nRedis streams"),
        ("assistant", stream.text),
    ]
    assert all(isinstance(m["createdAt"], int) for m in chat["messages"])

    assert (await client.delete(f"/assistant/chat/{first}", headers=user)).json()["message"]
    assert (await client.get(f"/assistant/chat/{first}", headers=user)).status_code == 404
    assert (await client.delete(f"/assistant/chat/{first}", headers=user)).status_code == 404
    assert [c["chatId"] for c in (await client.get("/assistant/chat", headers=user)).json()["chats"]] == [second]


async def test_multi_turn_conversation(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    chat_id = await new_chat(client, user)
    await send(client, user, chat_id, "one")
    second = await send(client, user, chat_id, "two")
    assert second.events[0].id == "2-1"  # a new generation
    assert second.text.startswith("(turn 2)")
    messages = (await client.get(f"/assistant/chat/{chat_id}", headers=user)).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"prompt": ""}',
        b'{"prompt": "   "}',
        b'{"prompt": 42}',
        b'{"prompt": null}',
        b"nope",
        b'{"prompt": "' + b"p" * 8001 + b'"}',
    ],
)
async def test_bad_prompts_are_400(client: httpx.AsyncClient, user: dict[str, str], body: bytes) -> None:
    chat_id = await new_chat(client, user)
    response = await client.post(
        f"/assistant/chat/{chat_id}/", headers={**user, "Content-Type": "application/json"}, content=body
    )
    assert response.status_code == 400
    assert "prompt" in response.json()["message"] or "JSON" in response.json()["message"]
    assert (await client.get(f"/assistant/chat/{chat_id}", headers=user)).json()["messages"] == []


async def test_another_users_chat_is_404_everywhere(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    chat_id = await new_chat(client, user)
    await send(client, user, chat_id, "mine")
    intruder = auth(await dev_login(client))
    for method, path, body in [
        ("GET", f"/assistant/chat/{chat_id}", None),
        ("DELETE", f"/assistant/chat/{chat_id}", None),
        ("POST", f"/assistant/chat/{chat_id}/", {"prompt": "hijack"}),
        ("POST", f"/assistant/chat/{chat_id}", {"prompt": "hijack"}),
        ("GET", f"/assistant/chat/{chat_id}/stream", None),
        ("POST", f"/assistant/chat/{chat_id}/stop", None),
        ("GET", "/assistant/chat/987654321", None),
        ("POST", "/assistant/chat/987654321/", {"prompt": "x"}),
    ]:
        response = await client.request(method, path, headers=intruder, json=body)
        assert response.status_code == 404, (method, path)
        assert response.json()["message"]
    assert (await client.get("/assistant/chat", headers=intruder)).json() == {"chats": []}
    assert len((await client.get(f"/assistant/chat/{chat_id}", headers=user)).json()["messages"]) == 2


async def test_chat_routes_need_auth(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("POST", "/assistant/chat"),
        ("GET", "/assistant/chat"),
        ("GET", "/assistant/chat/1"),
        ("POST", "/assistant/chat/1/"),
        ("GET", "/assistant/chat/1/stream"),
        ("POST", "/assistant/chat/1/stop"),
        ("DELETE", "/assistant/chat/1"),
    ]:
        assert (await client.request(method, path)).status_code == 401, path


async def test_resume_errors(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    chat_id = await new_chat(client, user)
    no_reply = await client.get(f"/assistant/chat/{chat_id}/stream", headers=user)
    assert no_reply.status_code == 404
    await send(client, user, chat_id, "first")
    await send(client, user, chat_id, "second")
    for bad in ("1-3", "2-99999", "garbage", "2-", "-1", "2-x"):
        response = await client.get(f"/assistant/chat/{chat_id}/stream", headers={**user, "Last-Event-ID": bad})
        assert response.status_code == 400, bad
        response = await client.get(f"/assistant/chat/{chat_id}/stream", headers=user, params={"lastEventId": bad})
        assert response.status_code == 400, bad


async def test_finished_reply_is_replayed_and_closed(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    chat_id = await new_chat(client, user)
    original = await send(client, user, chat_id, "replay me")
    async with client.stream("GET", f"/assistant/chat/{chat_id}/stream", headers=user) as response:
        replay = await read(response)
    assert [(e.id, e.event, e.data) for e in replay.events] == [(e.id, e.event, e.data) for e in original.events]
    middle = original.events[10].id
    async with client.stream(
        "GET", f"/assistant/chat/{chat_id}/stream", headers=user, params={"lastEventId": middle}
    ) as response:
        tail = await read(response)
    assert [e.id for e in tail.events] == [e.id for e in original.events[11:]]
    last = original.events[-1].id
    async with client.stream(
        "GET", f"/assistant/chat/{chat_id}/stream", headers={**user, "Last-Event-ID": last}
    ) as response:
        nothing = await read(response)
    assert nothing.events == []


async def test_stop_with_nothing_in_flight_is_409(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    chat_id = await new_chat(client, user)
    assert (await client.post(f"/assistant/chat/{chat_id}/stop", headers=user)).status_code == 409
    await send(client, user, chat_id, "done already")
    assert (await client.post(f"/assistant/chat/{chat_id}/stop", headers=user)).status_code == 409


async def test_many_chats_stream_at_once(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    chat_ids = [await new_chat(client, user) for _ in range(50)]
    streams = await asyncio.gather(*(send(client, user, c, f"prompt number {c}") for c in chat_ids))
    for chat_id, stream in zip(chat_ids, streams, strict=True):
        assert stream.finished and stream.last.event == "done"
        assert_consecutive(stream)
        assert f"prompt number {chat_id}" in stream.text
