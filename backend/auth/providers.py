"""Login providers behind one small interface: build the authorize URL, turn a code into an
identity. `oidc` and `github` talk to the real provider through authlib; `dev` is served by
this backend itself (backend/auth/dev.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx2
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from backend.errors import BadGateway, BadRequest, ServiceUnavailable
from backend.store.logins import Logins
from config.settings import Settings


@dataclass(frozen=True)
class Identity:
    subject: str
    username: str


class Provider(Protocol):
    name: str

    async def authorize_url(self, state: str, code_verifier: str, nonce: str) -> str: ...

    async def identify(self, code: str, code_verifier: str, nonce: str) -> Identity: ...


def code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class _ProviderCalls:
    """Maps what can go wrong talking to a provider onto clear 4xx/5xx errors."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def client(self) -> AsyncOAuth2Client:
        s = self.settings
        return AsyncOAuth2Client(
            client_id=s.OAUTH_CLIENT_ID, client_secret=s.OAUTH_CLIENT_SECRET or None, scope=s.scopes,
            redirect_uri=s.OAUTH_REDIRECT_URI, code_challenge_method="S256", timeout=s.OAUTH_TIMEOUT_SECONDS,
        )

    async def guarded(self, coroutine: Any) -> Any:
        try:
            return await asyncio.wait_for(coroutine, self.settings.OAUTH_TIMEOUT_SECONDS + 1)
        except OAuthError as error:
            raise BadRequest(f"Login failed: the provider rejected the code ({error.error}).") from None
        except (TimeoutError, httpx2.TimeoutException):
            raise ServiceUnavailable("Login failed: the login provider did not answer in time.") from None
        except httpx2.TransportError:
            raise ServiceUnavailable("Login failed: the login provider is unreachable.") from None
        except httpx2.HTTPStatusError as error:
            status = error.response.status_code
            if 400 <= status < 500 and status not in (401, 403):
                raise BadRequest("Login failed: the provider rejected the code.") from None
            raise BadGateway(f"Login failed: the login provider answered {status}.") from None
        except ValueError:
            # authlib raises ValueError-derived errors for unparsable provider answers
            raise BadGateway("Login failed: the login provider sent an invalid answer.") from None


class OidcProvider(_ProviderCalls):
    """Any OpenID Connect provider with discovery."""

    name = "oidc"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._metadata: dict[str, Any] | None = None
        self._keyset: KeySet | None = None

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.settings.OIDC_ISSUER.rstrip("/") + "/.well-known/openid-configuration"
            self._metadata = await self.guarded(self._get_json(url))
        return self._metadata

    async def _get_json(self, url: str) -> Any:
        async with httpx2.AsyncClient(timeout=self.settings.OAUTH_TIMEOUT_SECONDS) as http:
            response = await http.get(url)
            response.raise_for_status()
            return response.json()

    async def keyset(self, refresh: bool = False) -> KeySet:
        if self._keyset is None or refresh:
            jwks = await self.guarded(self._get_json((await self.metadata())["jwks_uri"]))
            self._keyset = KeySet.import_key_set(jwks)
        return self._keyset

    async def authorize_url(self, state: str, code_verifier: str, nonce: str) -> str:
        endpoint = (await self.metadata())["authorization_endpoint"]
        url, _ = self.client().create_authorization_url(endpoint, state=state, code_verifier=code_verifier,
                                                        nonce=nonce)
        return url

    async def identify(self, code: str, code_verifier: str, nonce: str) -> Identity:
        meta = await self.metadata()
        async with self.client() as client:
            token = await self.guarded(client.fetch_token(meta["token_endpoint"], code=code,
                                                          code_verifier=code_verifier))
            claims = await self.verify_id_token(token.get("id_token"), nonce)
            response = await self.guarded(client.get(meta["userinfo_endpoint"]))
        if response.status_code >= 400:
            raise BadGateway(f"Login failed: the login provider answered {response.status_code}.")
        profile = response.json()
        subject = str(profile.get("sub") or claims.get("sub") or "")
        if not subject or (claims.get("sub") and str(claims["sub"]) != subject):
            raise BadGateway("Login failed: the login provider sent an inconsistent profile.")
        username = (profile.get("preferred_username") or profile.get("name") or profile.get("email")
                    or subject)
        return Identity(subject=subject, username=str(username))

    async def verify_id_token(self, id_token: str | None, nonce: str) -> dict[str, Any]:
        if not id_token:
            raise BadGateway("Login failed: the login provider sent no id_token.")
        try:
            try:
                decoded = jwt.decode(id_token, await self.keyset())
            except JoseError:
                decoded = jwt.decode(id_token, await self.keyset(refresh=True))  # keys rotated
            issuer = (await self.metadata())["issuer"]
            jwt.JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": issuer},
                aud={"essential": True, "value": self.settings.OAUTH_CLIENT_ID},
                nonce={"essential": True, "value": nonce},
                sub={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError):
            raise BadRequest("Login failed: the id_token did not verify.") from None
        return dict(decoded.claims)


class GithubProvider(_ProviderCalls):
    name = "github"

    async def authorize_url(self, state: str, code_verifier: str, nonce: str) -> str:
        url, _ = self.client().create_authorization_url(
            f"{self.settings.GITHUB_URL}/login/oauth/authorize", state=state, code_verifier=code_verifier
        )
        return url

    async def identify(self, code: str, code_verifier: str, nonce: str) -> Identity:
        async with self.client() as client:
            client.headers["Accept"] = "application/json"
            await self.guarded(client.fetch_token(f"{self.settings.GITHUB_URL}/login/oauth/access_token",
                                                  code=code, code_verifier=code_verifier))
            response = await self.guarded(client.get(f"{self.settings.GITHUB_API_URL}/user"))
        if response.status_code >= 400:
            raise BadGateway(f"Login failed: GitHub answered {response.status_code}.")
        profile = response.json()
        return Identity(subject=str(profile["id"]), username=str(profile["login"]))


class DevProvider:
    """A provider served by this backend (development only): a page asks for a user name and
    redirects back with a one-time code, bound to the PKCE challenge like a real provider."""

    name = "dev"

    def __init__(self, settings: Settings, logins: Logins) -> None:
        self.settings = settings
        self.logins = logins

    async def authorize_url(self, state: str, code_verifier: str, nonce: str) -> str:
        query = urlencode({
            "client_id": self.settings.OAUTH_CLIENT_ID or "dev", "redirect_uri": self.settings.OAUTH_REDIRECT_URI,
            "scope": self.settings.scopes, "state": state, "code_challenge": code_challenge(code_verifier),
            "code_challenge_method": "S256", "response_type": "code",
        })
        return f"{self.settings.PUBLIC_URL}/dev/login?{query}"

    async def issue_code(self, username: str, challenge: str) -> str:
        code = secrets.token_urlsafe(24)
        await self.logins.save_dev_code(code, username, challenge)
        return code

    async def identify(self, code: str, code_verifier: str, nonce: str) -> Identity:
        grant = await self.logins.take_dev_code(code)
        if grant is None:
            raise BadRequest("Login failed: the provider rejected the code (invalid_grant).")
        username, challenge = grant
        if challenge != code_challenge(code_verifier):
            raise BadRequest("Login failed: the PKCE verifier does not match.")
        return Identity(subject=username.lower(), username=username)


def make_provider(settings: Settings, logins: Logins) -> Provider:
    if settings.AUTH_PROVIDER == "oidc":
        return OidcProvider(settings)
    if settings.AUTH_PROVIDER == "github":
        return GithubProvider(settings)
    return DevProvider(settings, logins)
