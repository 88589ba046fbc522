"""What a hostile client can send over a bare socket: never a 5xx, always JSON {"message"} for >= 400.

Every request here is written byte by byte (tests/support/rawhttp.py), so nothing between the
test and the server cleans it up: non-ASCII digits and bytes that are not UTF-8 in tokens and
event ids, numbers past Python's int-conversion limit, 4 KB method names, an oversized head, a
client trickling its head, made-up methods and paths against the metrics, and a property-based
test (hypothesis) that puts arbitrary bytes into every header and path parameter the API reads.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import Settings
from devstack.login import auth, dev_login
from devstack.services import Api
from tests.conftest import Processes, eventually, isolated_url
from tests.support.rawhttp import Reply, request_bytes, send, send_sync
from tests.test_chat import new_chat
from tests.test_chat import send as send_prompt

LONG_NUMBER = b"9" * 5000  # past Python's 4,300-digit int-conversion limit
TOKENS = [
    b"Basic \xc2\xb2" + b"a" * 43,  # '²': str.isdigit() is true, int() fails
    b"Basic \xc2\xb2." + b"a" * 43,
    b"Basic \xd9\xa3." + b"a" * 43,  # an Arabic-Indic digit: int() takes it
    b"Basic 1." + b"\xff" * 43,  # not UTF-8
    b"Basic \xff\xfe." + b"a" * 43,
    b"Bearer " + LONG_NUMBER + b"." + b"a" * 43,
    b"Basic -1." + b"a" * 43,
    b"Basic " + b"\x00\x01\x7f" + b"a" * 43,
    b"Basic",
    b"\xff\xff",
]
EVENT_IDS = [
    b"\xc2\xb2-1",
    b"1-\xc2\xb2",
    b"\xd9\xa3-1",
    b"\xff-1",
    LONG_NUMBER,
    LONG_NUMBER + b"-1",
    b"1-" + LONG_NUMBER,
    b"-1--1",
    b"1-1-1",
]


def assert_json_error(reply: Reply, status: int | None = None) -> None:
    assert reply.status < 500, (reply.status, reply.body[:200])
    if status is not None:
        assert reply.status == status, (reply.status, reply.body[:200])
    assert reply.status >= 400 and reply.headers["content-type"].startswith("application/json")
    message = reply.json()["message"]
    assert isinstance(message, str) and message


async def finished_chat(client: httpx.AsyncClient, user: dict[str, str]) -> tuple[int, str]:
    """A chat whose reply has finished, and one of its event ids."""
    chat_id = await new_chat(client, user)
    stream = await send_prompt(client, user, chat_id, "hello")
    assert stream.finished
    return chat_id, stream.events[0].id


async def test_hostile_tokens_are_401(stack: Api) -> None:
    for header in (b"Authentication", b"Authorization"):
        for token in TOKENS:
            reply = await send(stack.port, request_bytes(b"GET", b"/user/info", [(header, token)]))
            assert_json_error(reply, 401)
            reply = await send(stack.port, request_bytes(b"POST", b"/assistant/chat", [(header, token)]))
            assert_json_error(reply, 401)


async def test_hostile_event_ids_are_400(stack: Api, client: httpx.AsyncClient, user: dict[str, str]) -> None:
    chat_id, _ = await finished_chat(client, user)
    token = user["Authentication"].encode()
    target = f"/assistant/chat/{chat_id}/stream".encode()
    for event_id in EVENT_IDS:
        headers = [(b"Authentication", token), (b"Last-Event-ID", event_id)]
        assert_json_error(await send(stack.port, request_bytes(b"GET", target, headers)), 400)
        query = b"?lastEventId=" + quote(event_id, safe="").encode()
        reply = await send(stack.port, request_bytes(b"GET", target + query, [(b"Authentication", token)]))
        assert_json_error(reply, 400)


async def test_hostile_ids_in_paths_are_4xx(stack: Api, user: dict[str, str]) -> None:
    token = user["Authentication"].encode()
    segments = [b"%C2%B2", b"%D9%A3", b"%FF", LONG_NUMBER, b"-1", b"0", b"1e3", b"0x10", b"%00", b"\xc2\xb2"]
    for segment in segments:
        for method, path, body in [
            (b"GET", b"/assistant/chat/" + segment, b""),
            (b"DELETE", b"/assistant/chat/" + segment, b""),
            (b"POST", b"/assistant/chat/" + segment + b"/stop", b""),
            (b"GET", b"/assistant/chat/" + segment + b"/stream", b""),
            (b"POST", b"/user/questions/" + segment + b"/answer", b'{"answer": 0}'),
        ]:
            reply = await send(stack.port, request_bytes(method, path, [(b"Authentication", token)], body))
            assert_json_error(reply)
            assert reply.status in (400, 404, 409), (method, path[:60], reply.status)


async def test_4kb_method_names_are_405_with_allow(stack: Api) -> None:
    for method in (b"X" * 4096, b"G" * 4000 + b"ET", b"get", b"PROPFIND", b"\xffGET"):
        for path, allowed in ((b"/health", {"GET"}), (b"/assistant/chat/1", {"GET", "POST", "DELETE"})):
            reply = await send(stack.port, request_bytes(method, path))
            assert_json_error(reply, 405)
            assert {m.strip() for m in reply.headers["allow"].split(",")} == allowed


async def test_405_on_a_dynamic_path_carries_allow(stack: Api) -> None:
    cases = [
        (b"PUT", b"/assistant/chat/1", {"GET", "POST", "DELETE"}),
        (b"PATCH", b"/assistant/chat/1/", {"GET", "POST", "DELETE"}),  # trailing slash: the same routes
        (b"PUT", b"/user/questions/1/answer", {"POST"}),
        (b"GET", b"/assistant/chat/1/stop", {"POST"}),
        (b"DELETE", b"/user/info", {"GET"}),
    ]
    for method, path, allowed in cases:
        reply = await send(stack.port, request_bytes(method, path))
        assert_json_error(reply, 405)
        assert {m.strip() for m in reply.headers["allow"].split(",")} == allowed, (method, path)


async def test_oversized_head_is_431(stack: Api) -> None:
    reply = await send(stack.port, request_bytes(b"GET", b"/health", [(b"X-Padding", b"a" * 9000)]))
    assert_json_error(reply, 431)
    many = [(f"X-H{i}".encode(), b"b" * 100) for i in range(100)]  # many small headers: the same limit
    assert_json_error(await send(stack.port, request_bytes(b"GET", b"/health", many)), 431)
    assert (await send(stack.port, request_bytes(b"GET", b"/health", [(b"X-Padding", b"a" * 7000)]))).status == 200


async def trickle(port: int, data: bytes, every: float) -> tuple[float, bytes]:
    """Send `data` one byte every `every` seconds; (seconds until the server answered, its answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        answer = asyncio.ensure_future(reader.read())
        await trickle_into(writer, data, every, answer)
        return time.monotonic() - started, await asyncio.wait_for(answer, 30)
    finally:
        writer.close()


async def trickle_into(
    writer: asyncio.StreamWriter, data: bytes, every: float, answer: asyncio.Future | None = None
) -> None:
    for byte in data:
        if answer is not None and answer.done():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(every)


async def test_a_trickling_client_is_cut_at_the_head_deadline(processes: Processes, redis_url: str) -> None:
    """REQUEST_HEAD_TIMEOUT_SECONDS (default 10, at most 30) lowered to 2 s to keep this test short."""
    api = processes.api(isolated_url(redis_url), REQUEST_HEAD_TIMEOUT_SECONDS="2")
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    seconds, answer = await trickle(api.port, head, every=0.1)  # a byte every 0.1 s: Sanic's idle timer never fires
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'{"message":' in answer and b"connection: close" in answer.lower()
    assert 1.8 <= seconds < 4, seconds
    # A head that is slow but complete inside the deadline is served.
    seconds, answer = await trickle(
        api.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", every=0.02
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    # On a keep-alive connection each head has its own deadline: the first head's (t0 + 2 s) does not
    # cut the second head (sent from t0 + 1 s to t0 + 2.5 s), and idle time between requests does not count.
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    t0 = time.monotonic()

    async def at(offset: float, data: bytes) -> None:
        await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))
        writer.write(data)

    await at(0, b"GET /health HTTP/1.1\r\n")
    await at(0.9, b"Host: x\r\n\r\n")
    first = await reader.readuntil(b'{"status":"ok"}')
    assert first.startswith(b"HTTP/1.1 200 ")
    await at(1.0, b"GET /health HTTP/1.1\r\n")
    await at(2.5, b"Host: x\r\n\r\n")
    second = await reader.readuntil(b'{"status":"ok"}')
    assert second.startswith(b"HTTP/1.1 200 "), second[:200]
    await at(5.0, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    third = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert third.startswith(b"HTTP/1.1 200 "), third[:200]


async def test_a_body_trickled_byte_by_byte_is_cut_at_the_body_deadline(processes: Processes, redis_url: str) -> None:
    """REQUEST_BODY_TIMEOUT_SECONDS (default 30) lowered to 2 s: counted from the head, whatever the pace."""
    api = processes.api(isolated_url(redis_url), REQUEST_BODY_TIMEOUT_SECONDS="2")
    body = b'{"code": "' + b"a" * 300 + b'"}'
    for target in (b"/user/skill-description", b"/no/such/route"):  # a route, and a 404 whose body is drained
        head = b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        started = time.monotonic()
        writer.write(head)
        answer = asyncio.ensure_future(reader.read())
        await trickle_into(writer, body, 0.1, answer)  # 30 s of body at this pace: never idle for long
        data = await asyncio.wait_for(answer, 30)
        seconds = time.monotonic() - started
        writer.close()
        assert 1.8 <= seconds < 4, (target, seconds)
        if target == b"/user/skill-description":
            assert data.startswith(b"HTTP/1.1 408 "), data[:200]
            assert b'{"message":' in data and b"connection: close" in data.lower()
        else:  # answered 404 at once, then the connection is closed at the deadline
            assert data.startswith(b"HTTP/1.1 404 "), data[:200]
    # A body sent slowly but complete inside the deadline is served (401: no login, after reading it).
    head = b"POST /user/skill-description HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    short = b'{"description": "x"}'
    head += b"Content-Type: application/json\r\nContent-Length: " + str(len(short)).encode() + b"\r\n\r\n"
    seconds, answer = await trickle(api.port, head + short, every=0.01)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


def test_body_deadline_default_is_30_seconds() -> None:
    assert Settings.model_fields["REQUEST_BODY_TIMEOUT_SECONDS"].default == 30


async def test_bytes_that_are_not_utf8_in_method_and_path_still_get_their_access_line(
    processes: Processes, redis_url: str
) -> None:
    api = processes.api(isolated_url(redis_url), LOG_LEVEL="INFO")
    for method, target in ((b"GET", b"/health/\xff\xfe"), (b"G\xc3\x28T", b"/\xe2\x82"), (b"\xff", b"/health")):
        assert_json_error(await send(api.port, request_bytes(method, target)))
    await send(api.port, request_bytes(b"GET", b"/health", [(b"X-Request-ID", b"last-one")]))

    def lines() -> list[dict]:
        return [json.loads(line) for line in api.output().splitlines() if line.startswith("{")]

    await eventually(lambda: any(line.get("request_id") == "last-one" for line in lines()), within=10)
    output = api.output()
    assert "Traceback" not in output and "Error" not in output, output[-3000:]
    assert all(line.startswith("{") for line in output.splitlines() if line.strip()), output[-3000:]
    access = [
        line for line in lines() if line.get("logger") == "backend.access" and line.get("request_id") != "last-one"
    ]
    assert len(access) == 3, access  # one line each, whatever Sanic could make of the head
    assert {line["path"] for line in access} == {"/health/\\xff\\xfe", "/\\xe2\\x82", "/health"}, access
    assert "\\udcff" in {line["method"] for line in access}, access  # the byte, escaped, not a traceback
    assert all(isinstance(line["status"], int) and 400 <= line["status"] < 500 for line in access)


def test_head_deadline_default_is_within_30_seconds() -> None:
    field = Settings.model_fields["REQUEST_HEAD_TIMEOUT_SECONDS"]
    assert field.default <= 30 and any(getattr(m, "le", None) == 30 for m in field.metadata)


async def test_made_up_methods_and_paths_leave_metrics_flat(stack: Api) -> None:
    async def junk(count: int) -> None:
        for _ in range(count // 20):
            await asyncio.gather(
                *(
                    send(
                        stack.port,
                        request_bytes(
                            secrets.token_hex(secrets.randbelow(2000) + 1).upper().encode(),
                            ("/" + secrets.token_hex(8) + "/" + secrets.token_hex(secrets.randbelow(200) + 1)).encode()
                            if secrets.randbelow(2)
                            else b"/assistant/chat/" + str(secrets.randbelow(10**6)).encode(),
                        ),
                    )
                    for _ in range(20)
                )
            )

    async def scrape() -> str:
        async with httpx.AsyncClient(base_url=stack.url) as http:
            return (await http.get("/metrics")).text

    def series(text: str) -> set[str]:
        return {line.rpartition(" ")[0] for line in text.splitlines() if line.startswith("ai_http_")}

    await junk(20)  # the folded series exist from here on, and /metrics's own after one scrape
    await scrape()
    before = await scrape()
    await junk(300)
    after = await scrape()
    assert series(after) == series(before)
    assert len(after) - len(before) < 512, (len(before), len(after))  # counters gain digits, nothing more


# Property-based: arbitrary bytes in every header and path parameter the API reads.


def header_value() -> st.SearchStrategy[bytes]:
    # Mostly without CR/LF (so the header stays one header); sometimes raw, which splits the head.
    clean = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
    interesting = st.sampled_from([b"\xc2\xb2-1", LONG_NUMBER, b"9" * 4301 + b"-1", b"\xff" * 64, b"1-1", b"0-0"])
    return st.one_of(clean, interesting, st.binary(max_size=40))


def path_segment() -> st.SearchStrategy[bytes]:
    encoded = st.binary(max_size=60).map(lambda b: quote(b, safe="").encode())
    digits = st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=30).map(
        lambda t: quote(t.encode(), safe="").encode()
    )
    return st.one_of(encoded, digits, st.sampled_from([LONG_NUMBER, b"1", b"0", b"-5", b"%C2%B2"]))


async def test_arbitrary_bytes_in_headers_and_path_parameters(stack: Api, client: httpx.AsyncClient) -> None:
    user = auth(await dev_login(client))
    chat_id, event_id = await finished_chat(client, user)
    valid_token = user["Authentication"].removeprefix("Basic ").encode()
    port = stack.port

    routes = [
        (b"GET", b"/assistant/chat/{id}/stream", b""),
        (b"GET", b"/assistant/chat/{id}", b""),
        (b"POST", b"/assistant/chat/{id}/stop", b""),
        (b"POST", b"/user/questions/{id}/answer", b'{"answer": 1}'),
        (b"GET", b"/user/info", b""),
        (b"GET", b"/user/auth-callback", b""),
        (b"DELETE", b"/assistant/chat/{id}/x", b""),
    ]

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        route=st.sampled_from(routes),
        segment=st.one_of(st.just(str(chat_id).encode()), path_segment()),
        scheme=st.sampled_from([b"Basic ", b"Bearer ", b"", b"basic  "]),
        token=st.one_of(st.just(valid_token), header_value()),
        token_header=st.sampled_from([b"Authentication", b"Authorization"]),
        last_event_id=st.one_of(st.none(), st.just(event_id.encode()), header_value()),
        query_event_id=st.one_of(st.none(), st.binary(max_size=80)),
        code=st.binary(max_size=80),
        state=st.binary(max_size=80),
        request_id=st.one_of(st.none(), header_value()),
        origin=st.one_of(st.none(), header_value()),
    )
    def probe(
        route: tuple[bytes, bytes, bytes],
        segment: bytes,
        scheme: bytes,
        token: bytes,
        token_header: bytes,
        last_event_id: bytes | None,
        query_event_id: bytes | None,
        code: bytes,
        state: bytes,
        request_id: bytes | None,
        origin: bytes | None,
    ) -> None:
        calls.append(1)
        method, template, body = route
        target = template.replace(b"{id}", segment)
        query = [b"code=" + quote(code, safe="").encode(), b"state=" + quote(state, safe="").encode()]
        if query_event_id is not None:
            query.append(b"lastEventId=" + quote(query_event_id, safe="").encode())
        target += b"?" + b"&".join(query)
        headers = [(token_header, scheme + token)]
        for name, value in ((b"Last-Event-ID", last_event_id), (b"X-Request-ID", request_id), (b"Origin", origin)):
            if value is not None:
                headers.append((name, value))
        reply = send_sync(port, request_bytes(method, target, headers, body))
        assert reply.status < 500, (reply.status, method, target[:100], headers, reply.body[:200])
        if reply.status == 200 and reply.is_event_stream:
            return
        assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
        data = reply.json()
        if reply.status >= 400:
            assert isinstance(data["message"], str) and data["message"]  # type: ignore[index]

    calls: list[int] = []
    started = time.monotonic()
    await asyncio.to_thread(probe)
    assert len(calls) >= 150 and time.monotonic() - started < 30, (len(calls), time.monotonic() - started)
