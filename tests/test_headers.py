"""Security headers (PRODUCT.md, Errors and bad input): nosniff everywhere; no-store and Vary on
authenticated JSON (not on SSE); CSP and frame protection on HTML pages; Vary merged with CORS."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx

from devstack.login import auth, dev_login
from tests.conftest import Processes, isolated_url
from tests.test_chat import new_chat


def vary(response: httpx.Response) -> set[str]:
    return {v.strip().lower() for v in response.headers.get("vary", "").split(",") if v.strip()}


def directives(policy: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in policy.split(";")) if d}


async def test_nosniff_on_every_response(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    responses = [
        await client.get("/health"),
        await client.get("/no/such/route"),
        await client.delete("/user/info"),
        await client.get("/user/info"),
        await client.get("/user/info", headers=user),
        await client.get("/metrics"),
        await client.get("/docs/openapi.json"),
        await client.get("/dev/callback"),
    ]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response.url


async def test_authenticated_json_is_no_store_and_varies_on_the_token(
    client: httpx.AsyncClient, user: dict[str, str]
) -> None:
    chat_id = await new_chat(client, user)
    for response in (
        await client.get("/user/info", headers=user),
        await client.get("/user/info"),  # the 401 depends on the header too
        await client.get("/assistant/chat", headers=user),
        await client.get(f"/assistant/chat/{chat_id}", headers=user),
        await client.get("/assistant/chat/999999999", headers=user),
        await client.post("/user/logout", headers=auth("no-such-token")),
    ):
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["cache-control"] == "no-store", response.url
        assert {"authentication", "authorization"} <= vary(response), response.url
    token_answer = await client.get("/user/auth-code")
    assert token_answer.headers["cache-control"] == "no-store"  # a one-time login state
    public = await client.get("/health")
    assert "cache-control" not in public.headers and "authentication" not in vary(public)


async def test_sse_keeps_its_own_cache_control(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    chat_id = await new_chat(client, user)
    async with client.stream("POST", f"/assistant/chat/{chat_id}", headers=user, json={"prompt": "hi"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"].startswith("no-cache")
        assert response.headers["x-content-type-options"] == "nosniff"
        await response.aread()


async def test_html_pages_have_a_csp_without_unsafe_inline_scripts(client: httpx.AsyncClient) -> None:
    login_url = (await client.get("/user/auth-code")).json()["loginUrl"]
    for response in (await client.get(login_url), await client.get("/dev/callback"), await client.get("/docs")):
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert response.headers["x-frame-options"] == "DENY"
        policy = directives(response.headers["content-security-policy"])
        assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
        assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
        assert "*" not in policy["script-src"]


async def test_dev_pages_allow_exactly_their_inline_code(client: httpx.AsyncClient) -> None:
    callback = await client.get("/dev/callback")
    policy = directives(callback.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"] and policy["connect-src"] == ["'self'"]
    inline_scripts = re.findall(r"<script>(.*?)</script>", callback.text, re.S)
    assert len(inline_scripts) == 1
    assert [s for s in policy["script-src"] if s.startswith("'sha256-")] == [sha256(inline_scripts[0])]
    inline_styles = re.findall(r"<style>(.*?)</style>", callback.text, re.S)
    assert [s for s in policy["style-src"] if s.startswith("'sha256-")] == [sha256(inline_styles[0])]
    login_url = (await client.get("/user/auth-code")).json()["loginUrl"]
    login = directives((await client.get(login_url)).headers["content-security-policy"])
    assert [s for s in login["script-src"] if s.startswith("'sha256-")] == []  # no script at all
    assert "'self'" in login["form-action"] and str(client.base_url).rstrip("/") in login["form-action"]


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def test_vary_merges_with_cors(processes: Processes, redis_url: str) -> None:
    api = processes.api(isolated_url(redis_url), CORS_ORIGINS="https://app.example")
    async with httpx.AsyncClient(base_url=api.url) as http:
        user = auth(await dev_login(http))
        response = await http.get("/user/info", headers={**user, "Origin": "https://app.example"})
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert vary(response) == {"origin", "authentication", "authorization"}
        assert response.headers["cache-control"] == "no-store"
        error = await http.get("/user/info", headers={"Origin": "https://app.example"})
        assert error.status_code == 401 and vary(error) == {"origin", "authentication", "authorization"}
