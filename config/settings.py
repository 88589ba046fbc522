"""All configuration, read once from the environment (and `.env` when present)."""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Azure OpenAI's dated API versions (2024-10-21, 2025-04-01-preview) and its undated ones.
API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?|v1|preview|latest")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    REDIS_CLUSTER: bool = False
    REDIS_TIMEOUT_SECONDS: float = Field(2.0, gt=0, le=60)
    # Sentinel: the master named REDIS_SENTINEL_MASTER is found through these Sentinels (host:port,
    # comma-separated) and found again after a failover; REDIS_URL then gives only the user,
    # password, database and TLS options.
    REDIS_SENTINELS: Annotated[list[str], NoDecode] = []
    REDIS_SENTINEL_MASTER: str = Field("mymaster", min_length=1)
    REDIS_SENTINEL_PASSWORD: str = ""

    HOST: str = "127.0.0.1"
    PORT: int = Field(8000, ge=1, le=65535)
    API_WORKERS: int = Field(1, ge=1, le=64)
    # Base URL the browser uses to reach this API; the dev login page and its callback live here.
    PUBLIC_URL: str = ""
    # Trusted proxies in front of the API, handed to Sanic's own settings of the same names:
    # request.remote_addr (the per-address limits) honours X-Forwarded-For only through them.
    PROXIES_COUNT: int = Field(0, ge=0, le=16)
    REAL_IP_HEADER: str = ""
    # Longest time a client may take to send a request's line and headers (Sanic's own
    # REQUEST_TIMEOUT restarts on every byte; see backend/protocol.py).
    REQUEST_HEAD_TIMEOUT_SECONDS: float = Field(10.0, gt=0, le=30)
    # Longest time from a request's head to the end of its body (a body trickled byte by byte).
    REQUEST_BODY_TIMEOUT_SECONDS: float = Field(30.0, gt=0, le=300)

    # /metrics on this port instead of PORT (0 or empty: on PORT), so an ingress never exposes it.
    METRICS_PORT: int = Field(0, ge=0, le=65535)

    WORKER_CONCURRENCY: int = Field(8, ge=1, le=10_000)
    WORKER_METRICS_PORT: int = Field(0, ge=0, le=65535)
    WORKER_SHUTDOWN_GRACE_SECONDS: float = Field(20.0, ge=0)

    ENVIRONMENT: Literal["development", "production", "test"] = "development"
    CORS_ORIGINS: Annotated[list[str], NoDecode] = []
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    OPENAPI_DOCS: bool = True
    PLAYGROUND: bool | None = None  # the web playground at /; unset: on when ENVIRONMENT=development

    AUTH_PROVIDER: Literal["dev", "github", "oidc"] = "dev"
    ALLOW_DEV_LOGIN: bool = False  # the dev provider on a HOST that is not a loopback address
    OAUTH_CLIENT_ID: str = ""
    OAUTH_CLIENT_SECRET: str = ""
    OAUTH_REDIRECT_URI: str = ""
    OIDC_ISSUER: str = ""
    OAUTH_SCOPES: str = ""
    GITHUB_URL: str = "https://github.com"
    GITHUB_API_URL: str = "https://api.github.com"
    OAUTH_TIMEOUT_SECONDS: float = Field(10.0, gt=0)
    SESSION_TTL_SECONDS: int = Field(2_592_000, ge=1)

    LLM_PROVIDER: Literal["openai", "azure", "fake", ""] = ""
    OPENAI_API_KEY: str = ""
    OPENAI_BASE_URL: str = ""
    # Azure OpenAI, under the openai package's own names; LLM_MODEL is then the deployment.
    AZURE_OPENAI_ENDPOINT: str = ""
    AZURE_OPENAI_API_KEY: str = ""
    OPENAI_API_VERSION: str = ""
    LLM_MODEL: str = "gpt-4o-mini"
    LLM_TIMEOUT_SECONDS: float = Field(60.0, gt=0)
    FAKE_LLM_TOKEN_DELAY_MS: float = Field(50.0, ge=0)
    FAKE_LLM_REPLY_WORDS: int = Field(60, ge=1)
    QUESTION_COUNT: int = Field(5, ge=1, le=50)
    LLM_MAX_TOKENS: int = Field(1024, ge=1, le=1_000_000)  # longest reply the LLM may write
    LLM_CONTEXT_TOKENS: int = Field(128_000, ge=1024, le=100_000_000)  # the model's context window

    # Caps per user (see README, Configuration).
    CHATS_PER_USER_MAX: int = Field(1000, ge=1, le=1_000_000)
    CHAT_HISTORY_MAX_MESSAGES: int = Field(200, ge=2, le=100_000)  # at least one prompt and its reply
    STREAMS_PER_USER_MAX: int = Field(10, ge=1, le=100_000)
    USER_STORAGE_MAX_BYTES: int = Field(20_000_000, ge=1)  # bytes of the prompts and replies kept (as stored)
    SESSIONS_PER_USER_MAX: int = Field(20, ge=1, le=1000)  # a new login drops the oldest
    CHAT_RETENTION_DAYS: int = Field(0, ge=0, le=100_000)  # chats nobody wrote to for this long go; 0: kept
    # Pending logins (auth-code states not yet used) of the whole service; past it, 503.
    LOGIN_STATES_MAX: int = Field(100_000, ge=1)

    QUEUE_MAX_WAIT_SECONDS: float = Field(10.0, gt=0)  # older waiting jobs: new work gets 503 (shedding)
    JOB_LEASE_SECONDS: float = Field(15.0, ge=1)
    JOB_MAX_ATTEMPTS: int = Field(3, ge=1, le=10)
    JOB_RETRY_BASE_SECONDS: float = Field(0.5, ge=0)
    REPLY_LOG_TTL_SECONDS: int = Field(3600, ge=60)
    SSE_PING_SECONDS: float = Field(15.0, gt=0, le=15)

    RATE_LIMIT_CHAT_PER_MINUTE: int = Field(30, ge=0)
    RATE_LIMIT_INTERVIEW_PER_MINUTE: int = Field(10, ge=0)
    RATE_LIMIT_AUTH_PER_MINUTE: int = Field(60, ge=0)
    RATE_LIMIT_STREAM_PER_MINUTE: int = Field(120, ge=0)

    @field_validator("METRICS_PORT", "WORKER_METRICS_PORT", mode="before")
    @classmethod
    def _empty_port_is_off(cls, value: object) -> object:
        return 0 if isinstance(value, str) and not value.strip() else value

    @field_validator("CORS_ORIGINS", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("REDIS_SENTINELS", mode="before")
    @classmethod
    def _split_sentinels(cls, value: object) -> object:
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        if isinstance(value, list):
            for sentinel in value:
                _host_port(str(sentinel))
        return value

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs."""
        return [_host_port(sentinel) for sentinel in self.REDIS_SENTINELS]

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if not self.LLM_PROVIDER:
            self.LLM_PROVIDER = "openai" if self.OPENAI_API_KEY else "fake"
        if not self.PUBLIC_URL:
            host = "127.0.0.1" if self.HOST in ("0.0.0.0", "::") else self.HOST
            self.PUBLIC_URL = f"http://{host}:{self.PORT}"
        self.PUBLIC_URL = self.PUBLIC_URL.rstrip("/")
        if self.PLAYGROUND is None:
            self.PLAYGROUND = self.ENVIRONMENT == "development"
        if not self.OAUTH_REDIRECT_URI and self.AUTH_PROVIDER == "dev":
            # The dev provider lands on the playground, which finishes the login; else on its own page.
            self.OAUTH_REDIRECT_URI = f"{self.PUBLIC_URL}/" if self.PLAYGROUND else f"{self.PUBLIC_URL}/dev/callback"
        prod = self.ENVIRONMENT == "production"
        if prod and self.AUTH_PROVIDER == "dev":
            raise ValueError("AUTH_PROVIDER: 'dev' is refused when ENVIRONMENT=production")
        if self.AUTH_PROVIDER == "dev" and not (_is_loopback(self.HOST) or self.ALLOW_DEV_LOGIN):
            # Production is refused above; ENVIRONMENT=test (the test suite) counts as development.
            raise ValueError(
                f"AUTH_PROVIDER: 'dev' (anyone logs in as anyone) is refused on HOST={self.HOST}, "
                "not a loopback address: set ALLOW_DEV_LOGIN=true to allow it, or use a real provider"
            )
        if prod and self.LLM_PROVIDER == "fake":
            raise ValueError("LLM_PROVIDER: 'fake' is refused when ENVIRONMENT=production")
        if self.AUTH_PROVIDER in ("github", "oidc"):
            for name in ("OAUTH_CLIENT_ID", "OAUTH_REDIRECT_URI"):
                if not getattr(self, name):
                    raise ValueError(f"{name}: required when AUTH_PROVIDER={self.AUTH_PROVIDER}")
        if self.AUTH_PROVIDER == "oidc" and not self.OIDC_ISSUER:
            raise ValueError("OIDC_ISSUER: required when AUTH_PROVIDER=oidc")
        if self.LLM_PROVIDER == "openai" and not self.OPENAI_API_KEY:
            raise ValueError("OPENAI_API_KEY: required when LLM_PROVIDER=openai")
        if self.LLM_PROVIDER == "azure":
            self._check_azure()
        if self.LLM_CONTEXT_TOKENS < self.LLM_MAX_TOKENS + 512:
            raise ValueError(
                f"LLM_CONTEXT_TOKENS: {self.LLM_CONTEXT_TOKENS} leaves no room for a prompt beside "
                f"LLM_MAX_TOKENS={self.LLM_MAX_TOKENS} (it must be at least LLM_MAX_TOKENS + 512)"
            )
        if self.METRICS_PORT and self.METRICS_PORT == self.PORT:
            raise ValueError("METRICS_PORT: must differ from PORT (or be empty: /metrics on PORT)")
        if not self.REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL: must start with redis://, rediss:// or unix://")
        if self.REDIS_SENTINELS and self.REDIS_CLUSTER:
            raise ValueError(
                "REDIS_SENTINELS: cannot be used with REDIS_CLUSTER=true (choose one: a Cluster fails over by itself)"
            )
        if self.REDIS_SENTINELS and self.REDIS_URL.startswith("unix://"):
            raise ValueError("REDIS_URL: must be redis:// or rediss:// with REDIS_SENTINELS (its host is not used)")
        return self

    def _check_azure(self) -> None:
        for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "OPENAI_API_VERSION"):
            if not getattr(self, name):
                raise ValueError(f"{name}: required when LLM_PROVIDER=azure")
        if not self.AZURE_OPENAI_ENDPOINT.startswith(("https://", "http://")):
            raise ValueError("AZURE_OPENAI_ENDPOINT: must be the resource's URL, https://<resource>.openai.azure.com")
        if not API_VERSION.fullmatch(self.OPENAI_API_VERSION):
            raise ValueError(
                f"OPENAI_API_VERSION: {self.OPENAI_API_VERSION!r} is not an Azure OpenAI API version "
                "(like 2024-10-21 or 2025-04-01-preview)"
            )

    @property
    def scopes(self) -> str:
        if self.OAUTH_SCOPES:
            return self.OAUTH_SCOPES
        return {"github": "read:user", "oidc": "openid profile email"}.get(self.AUTH_PROVIDER, "profile")


def _host_port(text: str) -> tuple[str, int]:
    """`host:port` or `[v6 address]:port` as a pair; ValueError naming the entry otherwise."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def describe_error(error: ValidationError) -> str:
    """One line naming the offending variable, for start-up failures."""
    first = error.errors()[0]
    name = ".".join(str(p) for p in first["loc"]) if first["loc"] else ""
    message = first["msg"].removeprefix("Value error, ")
    if name:
        return f"configuration error: {name}: {message}"
    return f"configuration error: {message}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process; exits with one clear line when they are invalid."""
    try:
        return Settings()
    except ValidationError as error:
        print(describe_error(error), file=sys.stderr)
        raise SystemExit(2) from None


def prompt_path(name: str) -> str:
    return os.path.join(os.path.dirname(__file__), "prompts", name)
