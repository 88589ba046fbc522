"""Start-up refuses a bad configuration with one line naming the variable."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from pydantic import ValidationError

from config.settings import Settings
from devstack.login import dev_login
from devstack.services import ROOT, _env
from tests.conftest import Processes, isolated_url


def start(module: str, redis_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module], cwd=ROOT, capture_output=True, text=True, timeout=30, env=_env(redis_url, env)
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"ENVIRONMENT": "production"},
            "configuration error: AUTH_PROVIDER: 'dev' is refused when ENVIRONMENT=production",
        ),
        (
            {
                "ENVIRONMENT": "production",
                "AUTH_PROVIDER": "oidc",
                "OAUTH_CLIENT_ID": "x",
                "OIDC_ISSUER": "http://x",
                "OAUTH_REDIRECT_URI": "http://x/cb",
                "LLM_PROVIDER": "fake",
            },
            "configuration error: LLM_PROVIDER: 'fake' is refused when ENVIRONMENT=production",
        ),
        (
            {"PORT": "eighty"},
            "configuration error: PORT: Input should be a valid integer, unable to parse string as an integer",
        ),
        ({"AUTH_PROVIDER": "oidc"}, "configuration error: OAUTH_CLIENT_ID: required when AUTH_PROVIDER=oidc"),
        (
            {"AUTH_PROVIDER": "oidc", "OAUTH_CLIENT_ID": "x", "OAUTH_REDIRECT_URI": "http://x/cb"},
            "configuration error: OIDC_ISSUER: required when AUTH_PROVIDER=oidc",
        ),
        ({"LLM_PROVIDER": "openai"}, "configuration error: OPENAI_API_KEY: required when LLM_PROVIDER=openai"),
        (
            {"REDIS_URL": "localhost:6379"},
            "configuration error: REDIS_URL: must start with redis://, rediss:// or unix://",
        ),
        (
            {"HOST": "0.0.0.0"},
            "configuration error: AUTH_PROVIDER: 'dev' (anyone logs in as anyone) is refused on "
            "HOST=0.0.0.0, not a loopback address: set ALLOW_DEV_LOGIN=true to allow it, or use a real provider",
        ),
        (
            {"HOST": "192.0.2.10", "ENVIRONMENT": "development"},
            "configuration error: AUTH_PROVIDER: 'dev' (anyone logs in as anyone) is refused on "
            "HOST=192.0.2.10, not a loopback address: set ALLOW_DEV_LOGIN=true to allow it, or use a real provider",
        ),
        (
            {"ENVIRONMENT": "production", "ALLOW_DEV_LOGIN": "true"},
            "configuration error: AUTH_PROVIDER: 'dev' is refused when ENVIRONMENT=production",
        ),
        ({"LLM_PROVIDER": "azure"}, "configuration error: AZURE_OPENAI_ENDPOINT: required when LLM_PROVIDER=azure"),
        (
            {
                "LLM_PROVIDER": "azure",
                "AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com",
                "AZURE_OPENAI_API_KEY": "k",
            },
            "configuration error: OPENAI_API_VERSION: required when LLM_PROVIDER=azure",
        ),
        (
            {
                "LLM_PROVIDER": "azure",
                "AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com",
                "AZURE_OPENAI_API_KEY": "k",
                "OPENAI_API_VERSION": "2024/10/21",
            },
            "configuration error: OPENAI_API_VERSION: '2024/10/21' is not an Azure OpenAI API version "
            "(like 2024-10-21 or 2025-04-01-preview)",
        ),
        (
            {"LLM_CONTEXT_TOKENS": "4096", "LLM_MAX_TOKENS": "4000"},
            "configuration error: LLM_CONTEXT_TOKENS: 4096 leaves no room for a prompt beside LLM_MAX_TOKENS=4000 "
            "(it must be at least LLM_MAX_TOKENS + 512)",
        ),
        ({"PROXIES_COUNT": "-1"}, "configuration error: PROXIES_COUNT: Input should be greater than or equal to 0"),
        (
            {"REQUEST_HEAD_TIMEOUT_SECONDS": "60"},
            "configuration error: REQUEST_HEAD_TIMEOUT_SECONDS: Input should be less than or equal to 30",
        ),
    ],
)
@pytest.mark.parametrize("module", ["backend", "workers"])
def test_invalid_configuration_stops_with_one_line(module: str, env: dict[str, str], line: str, redis_url: str) -> None:
    result = start(module, redis_url, **env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line]


@pytest.mark.parametrize(
    "env",
    [
        {"HOST": "0.0.0.0", "ALLOW_DEV_LOGIN": "true"},  # deploy/docker-compose.yml's demo
        {"HOST": "localhost", "ENVIRONMENT": "development"},
    ],
)
async def test_dev_login_runs_on_loopback_or_when_allowed(
    env: dict[str, str], processes: Processes, redis_url: str
) -> None:
    api = processes.api(isolated_url(redis_url), **env)
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await dev_login(http)).count(".") == 1


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("api.example.com", False),
        ("", False),
    ],
)
def test_dev_login_needs_a_loopback_host(host: str, allowed: bool) -> None:
    def make(**extra: object) -> Settings:
        return Settings(
            _env_file=None, HOST=host, AUTH_PROVIDER="dev", ENVIRONMENT="development", LLM_PROVIDER="fake", **extra
        )

    if allowed:
        assert make().AUTH_PROVIDER == "dev"
    else:
        with pytest.raises(ValidationError, match="ALLOW_DEV_LOGIN=true"):
            make()
    assert make(ALLOW_DEV_LOGIN=True).ALLOW_DEV_LOGIN
