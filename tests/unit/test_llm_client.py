"""Which HTTP transport the workers' `openai` client gets: ours for a plain-HTTP server, httpx2's
own (the one the package is tested with) for a TLS server such as OpenAI or Azure."""

from __future__ import annotations

import pytest

from config.settings import Settings
from workers.llm.openai import make_client
from workers.llm.transport import Http1Transport


def transport_of(**env: str) -> object:
    client = make_client(Settings(_env_file=None, **env))  # type: ignore[arg-type]
    return client._client._transport  # the package's httpx2 client


@pytest.mark.parametrize(
    ("env", "ours"),
    [
        ({"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://vllm:8000/v1"}, True),
        ({"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "k"}, False),  # api.openai.com, over TLS
        ({"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "https://gw.example/v1"}, False),
        (
            {
                "LLM_PROVIDER": "azure",
                "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
                "AZURE_OPENAI_API_KEY": "k",
                "OPENAI_API_VERSION": "2024-10-21",
            },
            False,
        ),
    ],
)
def test_own_transport_only_for_plain_http(env: dict[str, str], ours: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    assert isinstance(transport_of(**env), Http1Transport) is ours
