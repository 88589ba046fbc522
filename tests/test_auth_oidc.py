"""The whole login flow against a real OIDC provider process (oauth2-mock-server), made to
misbehave through its control API (tests/support/oidc_provider.mjs).

An id_token that does not verify (expired, no exp, an algorithm the provider does not advertise,
unsigned, a bad signature) answers 400, like every other failed login at /user/auth-callback
(unknown state, a code the provider refuses, a PKCE mismatch): this login attempt is over, start
a new one. 401 stays the answer of a missing or dead session token on authenticated routes, so a
client never mistakes a failed login for a lost session. A provider that answers but not as OIDC
says (not JSON, a field missing, another issuer) is 502; one that does not answer in time, 503.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlparse

import httpx
import pytest
import redis as sync_redis

from backend.auth.providers import OidcProvider
from backend.errors import BadGateway
from config.settings import Settings
from devstack.login import auth
from devstack.ports import free_port
from tests.conftest import Processes

REDIRECT = "http://127.0.0.1:9/client/callback"  # the client's page; the test plays the browser
CLIENT = {
    "OAUTH_CLIENT_ID": "backend-client",
    "OAUTH_CLIENT_SECRET": "test-secret",
    "OAUTH_REDIRECT_URI": REDIRECT,
    "OAUTH_TIMEOUT_SECONDS": "2",
}
DISCOVERY = "/.well-known/openid-configuration"


class ProviderControl:
    """The control API of the test provider: behaviours, key rotation, request counts."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.http = httpx.Client(base_url=issuer, timeout=5)

    def set(self, **behaviour: object) -> None:
        self.http.post("/_control", json=behaviour).raise_for_status()

    def rotate(self, alg: str = "RS256") -> str:
        response = self.http.post("/_control/rotate", json={"alg": alg})
        response.raise_for_status()
        return response.json()["kid"]

    def reset(self) -> None:
        self.http.post("/_control/reset").raise_for_status()

    def count(self, path: str) -> int:
        return self.http.get("/_control").json()["counts"].get(path, 0)


@pytest.fixture
def provider(oidc_issuer: str) -> Iterator[ProviderControl]:
    control = ProviderControl(oidc_issuer)
    control.reset()
    yield control
    control.reset()
    control.http.close()


@pytest.fixture
def oidc_api(processes: Processes, redis_url: str, provider: ProviderControl):
    return processes.api(redis_url, AUTH_PROVIDER="oidc", OIDC_ISSUER=provider.issuer, **CLIENT)


def new_subject() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


async def provider_redirect(login_url: str, subject: str) -> dict[str, str]:
    """What the browser does at the provider: authorize, get redirected back with code and state."""
    async with httpx.AsyncClient() as browser:
        response = await browser.get(login_url + "&login_hint=" + subject)
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT)
    return dict(parse_qsl(urlparse(location).query))


async def login(http: httpx.AsyncClient, subject: str) -> httpx.Response:
    """The whole flow for `subject`; the response of /user/auth-callback."""
    auth_code = await http.get("/user/auth-code")
    assert auth_code.status_code == 200, auth_code.text
    back = await provider_redirect(auth_code.json()["loginUrl"], subject)
    return await http.get("/user/auth-callback", params=back)


async def login_user_id(http: httpx.AsyncClient, subject: str) -> int:
    callback = await login(http, subject)
    assert callback.status_code == 200, callback.text
    return (await http.get("/user/info", headers=auth(callback.json()["token"]))).json()["userId"]


def refused(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["message"]
    assert message.startswith("Login failed") and all(word in message for word in words), message


async def test_oidc_login_flow(oidc_api) -> None:
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        auth_code = (await http.get("/user/auth-code")).json()
        query = dict(parse_qsl(urlparse(auth_code["loginUrl"]).query))
        assert query["client_id"] == "backend-client" and query["redirect_uri"] == REDIRECT
        assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
        assert query["state"] == auth_code["state"] and query["nonce"]
        assert query["scope"] == "openid profile email"  # the usual scopes, OAUTH_SCOPES unset
        back = await provider_redirect(auth_code["loginUrl"], "carol")
        # The provider checks the PKCE verifier against the challenge: success proves it was sent.
        callback = await http.get("/user/auth-callback", params=back)
        assert callback.status_code == 200, callback.text
        info = (await http.get("/user/info", headers=auth(callback.json()["token"]))).json()
        assert info["username"] == "carol"

        again = await provider_redirect((await http.get("/user/auth-code")).json()["loginUrl"], "carol")
        token = (await http.get("/user/auth-callback", params=again)).json()["token"]
        assert (await http.get("/user/info", headers=auth(token))).json()["userId"] == info["userId"]


async def test_oauth_scopes_are_what_the_login_asks_for(
    processes: Processes, redis_url: str, provider: ProviderControl
) -> None:
    """OAUTH_SCOPES replaces the provider's usual scopes (`openid profile email` for oidc, seen above)."""
    api = processes.api(
        redis_url, AUTH_PROVIDER="oidc", OIDC_ISSUER=provider.issuer, OAUTH_SCOPES="openid email", **CLIENT
    )
    async with httpx.AsyncClient(base_url=api.url) as http:
        login_url = (await http.get("/user/auth-code")).json()["loginUrl"]
    assert dict(parse_qsl(urlparse(login_url).query))["scope"] == "openid email"
    back = await provider_redirect(login_url, new_subject())
    assert back["code"]  # the provider takes it


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


# --- identities: issuer and subject ---------------------------------------------------------------


async def test_identities_are_keyed_by_issuer_and_subject(
    processes: Processes, redis_url: str, provider: ProviderControl, redis_client: sync_redis.Redis
) -> None:
    # configured with a trailing slash: the same issuer as the provider's, and the same key
    api = processes.api(redis_url, AUTH_PROVIDER="oidc", OIDC_ISSUER=provider.issuer + "/", **CLIENT)
    subject = new_subject()
    async with httpx.AsyncClient(base_url=api.url) as http:
        user_id = await login_user_id(http, subject)
    port = urlparse(provider.issuer).port
    assert redis_client.get(f"ai:identity:oidc:http%3A//127.0.0.1%3A{port}:{subject}") == str(user_id)
    assert redis_client.get(f"ai:identity:oidc:{subject}") is None  # no key without the issuer any more


async def test_user_from_before_issuer_keys_is_found_again(
    oidc_api, provider: ProviderControl, redis_client: sync_redis.Redis
) -> None:
    subject = new_subject()
    port = urlparse(provider.issuer).port
    new_key, old_key = f"ai:identity:oidc:http%3A//127.0.0.1%3A{port}:{subject}", f"ai:identity:oidc:{subject}"
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        user_id = await login_user_id(http, subject)
        # As the user was before this change: the identity keyed by the subject alone.
        redis_client.delete(new_key)
        redis_client.set(old_key, user_id)
        # Two first logins after the upgrade at once: both find the same user again.
        found = await asyncio.gather(login_user_id(http, subject), login_user_id(http, subject))
        assert found == [user_id, user_id]
        assert redis_client.get(new_key) == str(user_id)
        assert redis_client.get(old_key) == str(user_id)  # left as it was: a rollback still finds the user
        # Another subject of the same issuer is another user.
        assert await login_user_id(http, new_subject()) != user_id


# --- the id_token ---------------------------------------------------------------------------------


async def test_expired_id_token_is_refused(oidc_api, provider: ProviderControl) -> None:
    now = int(time.time())
    provider.set(claims={"exp": now - 600, "iat": now - 4200, "nbf": now - 4200})  # beyond the 60 s leeway
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        refused(await login(http, new_subject()), 400, "id_token", "expired")
        provider.reset()
        assert (await login(http, new_subject())).status_code == 200


async def test_id_token_without_exp_is_refused(oidc_api, provider: ProviderControl) -> None:
    provider.set(claims={"exp": None})
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        refused(await login(http, new_subject()), 400, "id_token", "missing_claim")


async def test_id_token_with_a_wrong_audience_or_issuer_is_refused(oidc_api, provider: ProviderControl) -> None:
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        provider.set(claims={"aud": "another-client"})
        refused(await login(http, new_subject()), 400, "id_token")
        provider.set(claims={"iss": "http://evil.example"})
        refused(await login(http, new_subject()), 400, "id_token")


async def test_id_token_alg_not_advertised_by_the_provider_is_refused(oidc_api, provider: ProviderControl) -> None:
    # The provider signs with RS256 but its metadata lists ES256 only.
    provider.set(metadata={"id_token_signing_alg_values_supported": ["ES256"]})
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        refused(await login(http, new_subject()), 400, "id_token", "unsupported_algorithm")


async def test_id_token_signed_with_a_key_of_another_alg_is_refused(oidc_api, provider: ProviderControl) -> None:
    # The default metadata lists nothing but RS256; the provider now signs with an ES256 key.
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        assert (await login(http, new_subject())).status_code == 200
        provider.rotate("ES256")
        refused(await login(http, new_subject()), 400, "id_token", "unsupported_algorithm")
        assert provider.count("/jwks") == 1  # refused on its algorithm, before any key is looked up


async def test_unsigned_id_token_is_refused_even_when_advertised(oidc_api, provider: ProviderControl) -> None:
    provider.set(metadata={"id_token_signing_alg_values_supported": ["none", "RS256"]}, idToken="unsigned")
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        refused(await login(http, new_subject()), 400, "id_token", "unsupported_algorithm")


async def test_key_rotation_refetches_the_jwks_once(oidc_api, provider: ProviderControl) -> None:
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        assert (await login(http, new_subject())).status_code == 200
        assert provider.count("/jwks") == 1
        provider.rotate()  # a new key id; the old key is no longer published
        assert (await login(http, new_subject())).status_code == 200
        assert provider.count("/jwks") == 2
        assert (await login(http, new_subject())).status_code == 200
        assert provider.count("/jwks") == 2


async def test_bad_signature_with_a_known_kid_does_not_refetch_the_jwks(oidc_api, provider: ProviderControl) -> None:
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        assert (await login(http, new_subject())).status_code == 200
        provider.set(idToken="tampered")  # a claim changed after signing, same kid
        refused(await login(http, new_subject()), 400, "id_token", "bad_signature")
        assert provider.count("/jwks") == 1


# --- the provider failing -------------------------------------------------------------------------


async def test_provider_metadata_not_json_or_incomplete_is_502(oidc_api, provider: ProviderControl) -> None:
    faults: list[dict[str, object]] = [
        {"discovery": "text"},
        {"discovery": "error"},
        *(
            {"metadata": {name: None}}
            for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint")
        ),
        {"metadata": {"jwks_uri": 42}},
        {"metadata": {"issuer": "http://another-issuer.example"}},
        {"metadata": {"id_token_signing_alg_values_supported": ["none"]}},
        {"metadata": {"id_token_signing_alg_values_supported": ["HS256"]}},
        {"metadata": {"id_token_signing_alg_values_supported": "RS256"}},
    ]
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        for fault in faults:
            provider.reset()
            provider.set(**fault)
            response = await http.get("/user/auth-code")
            assert response.status_code == 502, (fault, response.text)
            assert "login provider" in response.json()["message"], fault
        provider.reset()
        provider.set(metadata={"issuer": provider.issuer + "/"})  # a trailing slash is the same issuer
        assert (await http.get("/user/auth-code")).status_code == 200


async def test_provider_answers_during_the_callback_that_are_not_oidc_are_502(
    oidc_api, provider: ProviderControl
) -> None:
    faults: list[dict[str, object]] = [
        {"jwks": "text"},
        {"jwks": "error"},
        {"token": "text"},
        {"token": "error"},
        {"userinfo": "text"},
        {"userinfo": "error"},
        {"idToken": "absent"},
    ]
    async with httpx.AsyncClient(base_url=oidc_api.url) as http:
        for fault in faults:
            provider.reset()
            provider.set(**fault)
            refused(await login(http, new_subject()), 502, "login provider")
        provider.reset()
        assert (await login(http, new_subject())).status_code == 200


async def test_provider_down_is_a_clear_503_without_hanging(processes: Processes, redis_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    api = processes.api(
        redis_url,
        AUTH_PROVIDER="oidc",
        OIDC_ISSUER=dead,
        OAUTH_CLIENT_ID="c",
        OAUTH_REDIRECT_URI=REDIRECT,
        OAUTH_TIMEOUT_SECONDS="2",
    )
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        started = time.monotonic()
        response = await http.get("/user/auth-code")
        assert response.status_code == 503
        assert "login provider" in response.json()["message"]
        assert time.monotonic() - started < 5


async def test_provider_that_does_not_answer_is_503_within_the_timeout(oidc_api, provider: ProviderControl) -> None:
    async with httpx.AsyncClient(base_url=oidc_api.url, timeout=10) as http:
        provider.set(discovery="hang")
        started = time.monotonic()
        response = await http.get("/user/auth-code")
        assert response.status_code == 503 and "login provider" in response.json()["message"]
        assert time.monotonic() - started < 4  # OAUTH_TIMEOUT_SECONDS=2
        provider.reset()
        for endpoint in ("token", "jwks", "userinfo"):
            provider.set(**{endpoint: "hang"})
            started = time.monotonic()
            refused(await login(http, new_subject()), 503, "login provider")
            assert time.monotonic() - started < 4, endpoint
            provider.reset()


async def test_metadata_is_refreshed_on_a_ttl_and_kept_while_the_provider_fails(provider: ProviderControl) -> None:
    settings = Settings(
        _env_file=None,
        AUTH_PROVIDER="oidc",
        OIDC_ISSUER=provider.issuer,  # type: ignore[call-arg]
        OAUTH_CLIENT_ID="backend-client",
        OAUTH_REDIRECT_URI=REDIRECT,
        OAUTH_TIMEOUT_SECONDS=2,
    )
    oidc = OidcProvider(settings, metadata_ttl=1.0, retry_after_error=1.0)
    first = await oidc.metadata()
    keys = await oidc.keyset()
    assert await oidc.metadata() is first and await oidc.keyset() is keys
    assert provider.count(DISCOVERY) == 1 and provider.count("/jwks") == 1  # cached within the TTL
    # Logins that all met an unknown key id at once share one re-read of the keys.
    assert len({id(k) for k in await asyncio.gather(*(oidc.keyset(stale=keys) for _ in range(5)))}) == 1
    assert provider.count("/jwks") == 2

    provider.set(metadata={"authorization_endpoint": provider.issuer + "/authorize?v=2"})
    await asyncio.sleep(1.1)
    assert (await oidc.metadata())["authorization_endpoint"].endswith("?v=2")  # refreshed after the TTL
    assert provider.count(DISCOVERY) == 2
    await oidc.keyset()
    assert provider.count("/jwks") == 3  # the keys are re-read with the document

    provider.set(discovery="text")
    await asyncio.sleep(1.1)
    stale = await oidc.metadata()  # the refresh fails: the last good document is kept
    assert stale["authorization_endpoint"].endswith("?v=2") and provider.count(DISCOVERY) == 3
    await oidc.metadata()
    assert provider.count(DISCOVERY) == 3  # and not asked again on every call

    provider.reset()
    await asyncio.sleep(1.1)
    assert await oidc.metadata() == first  # the provider is back: its document again
    assert provider.count(DISCOVERY) == 1

    provider.set(discovery="text")
    with pytest.raises(BadGateway):  # with no good document yet, the failure is the answer
        await OidcProvider(settings).metadata()
