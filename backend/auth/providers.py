"""Login providers behind one small interface: build the authorize URL, turn a code into an
identity. `oidc` and `github` talk to the real provider through authlib; `dev` is served by
this backend itself (backend/auth/dev.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx2
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from backend.errors import BadGateway, BadRequest, ServiceUnavailable
from backend.store.logins import Logins
from config.settings import Settings

log = logging.getLogger("backend.auth")

METADATA_TTL_SECONDS = 3600.0
METADATA_RETRY_SECONDS = 60.0  # a failed refresh is retried this often; the last good document serves meanwhile
ID_TOKEN_LEEWAY_SECONDS = 60  # clock skew allowed on exp / iat / nbf
# userinfo_endpoint too: the profile is always read there
REQUIRED_METADATA = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint")


@dataclass(frozen=True)
class Identity:
    subject: str
    username: str
    issuer: str | None = None  # oidc: identities are keyed by issuer and subject


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
            client_id=s.OAUTH_CLIENT_ID,
            client_secret=s.OAUTH_CLIENT_SECRET or None,
            scope=s.scopes,
            redirect_uri=s.OAUTH_REDIRECT_URI,
            code_challenge_method="S256",
            timeout=s.OAUTH_TIMEOUT_SECONDS,
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
    """Any OpenID Connect provider with discovery.

    The discovery document is re-read every `metadata_ttl` seconds; while the provider fails to
    answer, the last good document keeps being used (retried every `retry_after_error` seconds).
    Its keys (JWKS) are re-read with it, and once more when an id_token names a key id that is
    not in the set held (the provider rotated its keys), never on any other error.
    """

    name = "oidc"

    def __init__(
        self,
        settings: Settings,
        metadata_ttl: float = METADATA_TTL_SECONDS,
        retry_after_error: float = METADATA_RETRY_SECONDS,
    ) -> None:
        super().__init__(settings)
        self.issuer = settings.OIDC_ISSUER.rstrip("/")
        self.metadata_ttl = metadata_ttl
        self.retry_after_error = retry_after_error
        self._metadata: dict[str, Any] | None = None
        self._algorithms: list[str] = []
        self._fresh_until = 0.0  # time.monotonic()
        self._keyset: KeySet | None = None
        self._metadata_lock = asyncio.Lock()  # one refresh at a time; the others wait for its result
        self._keys_lock = asyncio.Lock()

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is not None and time.monotonic() < self._fresh_until:
            return self._metadata
        async with self._metadata_lock:
            if self._metadata is not None and time.monotonic() < self._fresh_until:
                return self._metadata  # refreshed by another request meanwhile
            try:
                document = await self._load_metadata()
            except (BadGateway, ServiceUnavailable) as error:
                if self._metadata is None:
                    raise
                log.warning("oidc discovery failed, using the previous document", extra={"error": str(error)})
                self._fresh_until = time.monotonic() + self.retry_after_error
                return self._metadata
            self._metadata, self._algorithms = document, id_token_algorithms(document)
            self._keyset = None  # re-read with the document: keys the provider dropped are dropped here too
            self._fresh_until = time.monotonic() + self.metadata_ttl
            return document

    async def _load_metadata(self) -> dict[str, Any]:
        document = await self._get_json(self.issuer + "/.well-known/openid-configuration")
        missing = [name for name in REQUIRED_METADATA if not isinstance(document.get(name), str) or not document[name]]
        if missing:
            log.warning("oidc discovery document incomplete", extra={"missing": missing})
            raise BadGateway("Login failed: the login provider's configuration is incomplete.")
        if document["issuer"].rstrip("/") != self.issuer:
            log.warning("oidc issuer mismatch", extra={"configured": self.issuer, "advertised": document["issuer"]})
            raise BadGateway("Login failed: the login provider's configuration names another issuer.")
        id_token_algorithms(document)  # raises when no usable algorithm is advertised
        return document

    async def _get_json(self, url: str) -> dict[str, Any]:
        """A provider document (discovery, JWKS): unreachable or too slow 503, anything but a JSON object 502."""
        async with httpx2.AsyncClient(timeout=self.settings.OAUTH_TIMEOUT_SECONDS) as http:
            response = await self.guarded(http.get(url))
        if response.status_code != 200:
            raise BadGateway(f"Login failed: the login provider answered {response.status_code}.")
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise BadGateway("Login failed: the login provider sent an invalid answer.")
        return document

    async def keyset(self, stale: KeySet | None = None) -> KeySet:
        """The provider's signing keys. Passing the set a token's key id was not found in re-reads
        them, once: concurrent callers with the same stale set share one fetch."""
        if self._keyset is not None and self._keyset is not stale:
            return self._keyset
        async with self._keys_lock:
            if self._keyset is not None and self._keyset is not stale:
                return self._keyset
            jwks = await self._get_json((await self.metadata())["jwks_uri"])
            try:
                # The provider's JSON, checked by joserfc itself (its errors are caught below).
                self._keyset = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            except (JoseError, KeyError, TypeError, ValueError):
                raise BadGateway("Login failed: the login provider sent invalid signing keys.") from None
            return self._keyset

    async def authorize_url(self, state: str, code_verifier: str, nonce: str) -> str:
        endpoint = (await self.metadata())["authorization_endpoint"]
        url, _ = self.client().create_authorization_url(endpoint, state=state, code_verifier=code_verifier, nonce=nonce)
        return str(url)

    async def identify(self, code: str, code_verifier: str, nonce: str) -> Identity:
        meta = await self.metadata()
        async with self.client() as client:
            token = await self.guarded(
                client.fetch_token(meta["token_endpoint"], code=code, code_verifier=code_verifier)
            )
            if not isinstance(token.get("access_token"), str):
                raise BadGateway("Login failed: the login provider sent no access token.")
            claims = await self.verify_id_token(token.get("id_token"), nonce, token["access_token"])
            response = await self.guarded(client.get(meta["userinfo_endpoint"]))
        if response.status_code >= 400:
            raise BadGateway(f"Login failed: the login provider answered {response.status_code}.")
        try:
            profile = response.json()
        except ValueError:
            profile = None
        # OIDC Core 5.3.2: the userinfo `sub` is always present and must be the id_token's.
        if not isinstance(profile, dict) or profile.get("sub") != claims["sub"]:
            raise BadGateway("Login failed: the login provider sent an invalid or inconsistent profile.")
        subject = claims["sub"]
        username = next(
            (
                value
                for name in ("preferred_username", "name", "email")
                if isinstance(value := profile.get(name), str) and value.strip()
            ),
            subject,
        )
        return Identity(subject=subject, username=username, issuer=self.issuer)

    async def verify_id_token(self, id_token: Any, nonce: str, access_token: str | None = None) -> dict[str, Any]:
        """The id_token's claims, checked with authlib's `CodeIDToken`: signature by a key of the
        provider's JWKS with an algorithm it advertises (never `none`), iss, aud, nonce, exp, iat."""
        if not isinstance(id_token, str) or not id_token:
            raise BadGateway("Login failed: the login provider sent no id_token.")
        meta = await self.metadata()
        registry = JWSRegistry(algorithms=self._algorithms, strict_check_header=False)
        try:
            keys = await self.keyset()
            try:
                decoded = jwt.decode(id_token, keys, registry=registry)
            except InvalidKeyIdError:  # a key id not in the set held: the provider rotated its keys
                decoded = jwt.decode(id_token, await self.keyset(stale=keys), registry=registry)
            options: dict[str, Any] = {
                "iss": {"essential": True, "value": meta["issuer"]},
                "aud": {"essential": True, "value": self.settings.OAUTH_CLIENT_ID},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "nonce": {"essential": True, "value": nonce},
            }
            params = {"nonce": nonce, "client_id": self.settings.OAUTH_CLIENT_ID, "access_token": access_token}
            claims = CodeIDToken(decoded.claims, decoded.header, options, params)
            claims.validate(now=int(time.time()), leeway=ID_TOKEN_LEEWAY_SECONDS)
        except (JoseError, ValueError) as error:
            reason = getattr(error, "error", "") or "invalid"
            log.warning("oidc id_token refused", extra={"reason": reason, "error": str(error)})
            raise BadRequest(f"Login failed: the id_token was refused ({reason}).") from None
        return dict(claims)


def id_token_algorithms(document: dict[str, Any]) -> list[str]:
    """The id_token signing algorithms to accept: those the provider advertises (RS256 when it
    says nothing, as OIDC Discovery specifies), verified with its JWKS: never `none`, and not the
    HS* algorithms, whose key would be the client secret."""
    advertised = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    if not isinstance(advertised, list) or not all(isinstance(alg, str) for alg in advertised):
        raise BadGateway("Login failed: the login provider's configuration is invalid.")
    usable = [alg for alg in advertised if alg in JWSRegistry.algorithms and alg != "none" and not alg.startswith("HS")]
    if not usable:
        log.warning("oidc provider advertises no usable id_token algorithm", extra={"advertised": advertised})
        raise BadGateway("Login failed: the login provider signs id_tokens with no algorithm this service accepts.")
    return usable


class GithubProvider(_ProviderCalls):
    name = "github"

    async def authorize_url(self, state: str, code_verifier: str, nonce: str) -> str:
        url, _ = self.client().create_authorization_url(
            f"{self.settings.GITHUB_URL}/login/oauth/authorize", state=state, code_verifier=code_verifier
        )
        return str(url)

    async def identify(self, code: str, code_verifier: str, nonce: str) -> Identity:
        async with self.client() as client:
            client.headers["Accept"] = "application/json"
            await self.guarded(
                client.fetch_token(
                    f"{self.settings.GITHUB_URL}/login/oauth/access_token", code=code, code_verifier=code_verifier
                )
            )
            response = await self.guarded(client.get(f"{self.settings.GITHUB_API_URL}/user"))
        if response.status_code >= 400:
            raise BadGateway(f"Login failed: GitHub answered {response.status_code}.")
        try:
            profile = response.json()
        except ValueError:
            profile = None
        if not isinstance(profile, dict) or profile.get("id") is None or not profile.get("login"):
            raise BadGateway("Login failed: GitHub sent an invalid profile.")
        return Identity(subject=str(profile["id"]), username=str(profile["login"]))


class DevProvider:
    """A provider served by this backend (development only): a page asks for a user name and
    redirects back with a one-time code, bound to the PKCE challenge like a real provider."""

    name = "dev"

    def __init__(self, settings: Settings, logins: Logins) -> None:
        self.settings = settings
        self.logins = logins

    async def authorize_url(self, state: str, code_verifier: str, nonce: str) -> str:
        query = urlencode(
            {
                "client_id": self.settings.OAUTH_CLIENT_ID or "dev",
                "redirect_uri": self.settings.OAUTH_REDIRECT_URI,
                "scope": self.settings.scopes,
                "state": state,
                "code_challenge": code_challenge(code_verifier),
                "code_challenge_method": "S256",
                "response_type": "code",
            }
        )
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
