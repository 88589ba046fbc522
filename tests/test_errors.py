"""Every error is JSON {"message"} with the right status; nothing a client sends gives 500."""

from __future__ import annotations

import httpx


async def test_unknown_route_is_404_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"message": "Not found."}


async def test_wrong_method_is_405_json(client: httpx.AsyncClient) -> None:
    response = await client.delete("/user/info")
    assert response.status_code == 405
    assert isinstance(response.json()["message"], str)


async def test_body_over_64_kib_is_413(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    response = await client.post(
        "/user/skill-description", headers=user, content=b'{"description": "' + b"x" * 70_000 + b'"}'
    )
    assert response.status_code == 413
    assert "64 KiB" in response.json()["message"]


async def test_invalid_json_and_wrong_shapes_are_400_naming_the_field(
    client: httpx.AsyncClient, user: dict[str, str]
) -> None:
    cases = [
        (b"{not json", "valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{}", "'description'"),
        (b'{"description": 5}', "'description'"),
        (b'{"description": "   "}', "'description'"),
        (b'{"description": "' + b"y" * 4001 + b'"}', "'description'"),
        (b"", "valid JSON"),
    ]
    for body, expected in cases:
        response = await client.post(
            "/user/skill-description", headers={**user, "Content-Type": "application/json"}, content=body
        )
        assert response.status_code == 400, body
        assert expected in response.json()["message"], (body, response.json())


async def test_hostile_inputs_never_give_500(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    requests = [
        ("GET", "/user/questions/abc/answer", None),
        ("POST", "/user/questions/99999999999999999999999999/answer", b'{"answer": 1}'),
        ("POST", "/user/questions/-1/answer", b'{"answer": 1}'),
        ("GET", "/assistant/chat/not-a-number", None),
        ("GET", "/assistant/chat/99999999999999999999999999", None),
        ("POST", "/assistant/chat/1/", b"\xff\xfe"),
        ("GET", "/user/auth-callback?code=%00&state=%ff", None),
        ("GET", "/assistant/chat/1/stream?lastEventId=%00", None),
    ]
    for method, path, body in requests:
        response = await client.request(method, path, headers=user, content=body)
        assert response.status_code < 500, (method, path, response.status_code, response.text)
        assert isinstance(response.json()["message"], str)


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    """A client's X-Request-ID is kept only when it is [A-Za-z0-9._-]{1,64} (PRODUCT.md, Operations)."""
    for kept in ("trace-123", "a", "A.b_C-9" * 9 + "x", "x" * 64):
        given = await client.get("/health", headers={"X-Request-ID": kept})
        assert given.headers["X-Request-ID"] == kept
    made = await client.get("/health")
    assert len(made.headers["X-Request-ID"]) == 32
    for replaced in ("x" * 65, "two words", "a/b", "a:b", '{"x":1}', "id\tx", "café", "%41"):
        answer = await client.get("/health", headers={"X-Request-ID": replaced.encode()})
        assert answer.status_code == 200
        made_id = answer.headers["X-Request-ID"]
        assert made_id != replaced and len(made_id) == 32 and all(c in "0123456789abcdef" for c in made_id)
