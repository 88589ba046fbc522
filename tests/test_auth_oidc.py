"""The whole login flow against a real OIDC provider process (oauth2-mock-server)."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlparse

import httpx
import pytest

from devstack.login import auth
from devstack.ports import free_port
from tests.conftest import Processes

REDIRECT = "http://127.0.0.1:9/client/callback"  # the client's page; the test plays the browser


@pytest.fixture
def oidc_api(processes: Processes, redis_url: str, oidc_issuer: str):
    return processes.api(redis_url, AUTH_PROVIDER="oidc", OIDC_ISSUER=oidc_issuer, OAUTH_CLIENT_ID="backend-client",
                         OAUTH_CLIENT_SECRET="test-secret", OAUTH_REDIRECT_URI=REDIRECT, OAUTH_TIMEOUT_SECONDS="2")


async def provider_redirect(login_url: str, subject: str) -> dict[str, str]:
    """What the browser does at the provider: authorize, get redirected back with code and state."""
    async with httpx.AsyncClient() as browser:
        response = await browser.get(login_url + "&login_hint=" + subject)
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT)
    return dict(parse_qsl(urlparse(location).query))


async def test_oidc_login_flow(oidc_api) -> None:
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        auth_code = (await http.get("/user/auth-code")).json()
        query = dict(parse_qsl(urlparse(auth_code["loginUrl"]).query))
        assert query["client_id"] == "backend-client" and query["redirect_uri"] == REDIRECT
        assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
        assert query["state"] == auth_code["state"] and query["nonce"] and "openid" in query["scope"]
        back = await provider_redirect(auth_code["loginUrl"], "carol")
        # The provider checks the PKCE verifier against the challenge: success proves it was sent.
        callback = await http.get("/user/auth-callback", params=back)
        assert callback.status_code == 200, callback.text
        info = (await http.get("/user/info", headers=auth(callback.json()["token"]))).json()
        assert info["username"] == "carol"

        again = await provider_redirect((await http.get("/user/auth-code")).json()["loginUrl"], "carol")
        token = (await http.get("/user/auth-callback", params=again)).json()["token"]
        assert (await http.get("/user/info", headers=auth(token))).json()["userId"] == info["userId"]


async def test_oidc_wrong_code_is_400(oidc_api) -> None:
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        state = (await http.get("/user/auth-code")).json()["state"]
        response = await http.get("/user/auth-callback", params={"code": "forged", "state": state})
        assert response.status_code == 400
        assert "Login failed" in response.json()["message"]


async def test_oidc_state_replay_is_400(oidc_api) -> None:
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        back = await provider_redirect((await http.get("/user/auth-code")).json()["loginUrl"], "dave")
        assert (await http.get("/user/auth-callback", params=back)).status_code == 200
        assert (await http.get("/user/auth-callback", params=back)).status_code == 400


async def test_provider_down_is_a_clear_503_without_hanging(processes: Processes, redis_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    api = processes.api(redis_url, AUTH_PROVIDER="oidc", OIDC_ISSUER=dead, OAUTH_CLIENT_ID="c",
                        OAUTH_REDIRECT_URI=REDIRECT, OAUTH_TIMEOUT_SECONDS="2")
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        started = time.monotonic()
        response = await http.get("/user/auth-code")
        assert response.status_code == 503
        assert "login provider" in response.json()["message"]
        assert time.monotonic() - started < 5
