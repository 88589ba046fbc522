"""Start-up refuses a bad configuration with one line naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.services import ROOT, _env


def start(module: str, redis_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env=_env(redis_url, env))


@pytest.mark.parametrize(("env", "line"), [
    ({"ENVIRONMENT": "production"}, "configuration error: AUTH_PROVIDER: 'dev' is refused when ENVIRONMENT=production"),
    ({"ENVIRONMENT": "production", "AUTH_PROVIDER": "oidc", "OAUTH_CLIENT_ID": "x", "OIDC_ISSUER": "http://x",
      "OAUTH_REDIRECT_URI": "http://x/cb", "LLM_PROVIDER": "fake"},
     "configuration error: LLM_PROVIDER: 'fake' is refused when ENVIRONMENT=production"),
    ({"PORT": "eighty"},
     "configuration error: PORT: Input should be a valid integer, unable to parse string as an integer"),
    ({"AUTH_PROVIDER": "oidc"}, "configuration error: OAUTH_CLIENT_ID: required when AUTH_PROVIDER=oidc"),
    ({"AUTH_PROVIDER": "oidc", "OAUTH_CLIENT_ID": "x", "OAUTH_REDIRECT_URI": "http://x/cb"},
     "configuration error: OIDC_ISSUER: required when AUTH_PROVIDER=oidc"),
    ({"LLM_PROVIDER": "openai"}, "configuration error: OPENAI_API_KEY: required when LLM_PROVIDER=openai"),
    ({"REDIS_URL": "localhost:6379"}, "configuration error: REDIS_URL: must start with redis://, rediss:// or unix://"),
])
@pytest.mark.parametrize("module", ["backend", "workers"])
def test_invalid_configuration_stops_with_one_line(module: str, env: dict[str, str], line: str, redis_url: str) -> None:
    result = start(module, redis_url, **env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line]
