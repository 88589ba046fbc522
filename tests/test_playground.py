"""The web playground's files and how they are served: on only when configured, plain files with
no inline code and nothing from another host, a strict policy. (The whole flow in a real browser:
tests/test_playground_browser.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from devstack.services import Api
from tests.conftest import Processes, isolated_url

STATIC = Path(__file__).resolve().parents[1] / "backend" / "playground" / "static"


@pytest.fixture(scope="module")
def playground(session_processes: Processes, redis_url: str) -> Api:
    return session_processes.api(isolated_url(redis_url), PLAYGROUND="true")


def directives(policy: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in policy.split(";")) if d}


async def test_the_page_has_a_strict_policy_and_no_inline_code(playground: Api) -> None:
    async with httpx.AsyncClient(base_url=playground.url, timeout=10) as http:
        page = await http.get("/")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        policy = directives(page.headers["content-security-policy"])
        assert policy["default-src"] == ["'self'"] and policy["script-src"] == ["'self'"]
        assert policy["style-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
        assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
        assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"  # the URL holds a login code for a moment
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page.text, re.S)
        assert scripts and all('src="/playground/' in attrs and not body.strip() for attrs, body in scripts)
        assert not re.search(r"\son[a-z]+\s*=|\sstyle\s*=|<style", page.text, re.I)  # no inline handlers or styles

        for name, content_type in (
            ("app.js", "text/javascript"),
            ("style.css", "text/css"),
            ("favicon.png", "image/png"),
        ):
            asset = await http.get(f"/playground/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(content_type), name
            assert asset.content == (STATIC / name).read_bytes()
        assert (await http.get("/favicon.ico")).headers["content-type"] == "image/png"
        for missing in ("/playground/nope.js", "/playground/..%2F..%2Fconfig%2Fsettings.py", "/playground/"):
            response = await http.get(missing)
            assert response.status_code == 404 and response.json()["message"], missing


def test_the_files_ask_for_nothing_from_another_host() -> None:
    for path in STATIC.glob("*"):
        if path.suffix in (".html", ".js", ".css"):
            text = path.read_text()
            assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name  # no CDN, no font host
            assert "innerHTML" not in text and "eval(" not in text, path.name  # text goes in as text


async def test_off_unless_configured(client: httpx.AsyncClient) -> None:
    """The suite's shared API runs with ENVIRONMENT=test: no playground, `/` is an unknown route."""
    for path in ("/", "/playground/app.js"):
        response = await client.get(path)
        assert response.status_code == 404 and response.json()["message"]


@pytest.mark.parametrize(
    ("env", "playground", "redirect"),
    [
        ({"ENVIRONMENT": "development"}, True, "http://127.0.0.1:8000/"),
        ({"ENVIRONMENT": "development", "PLAYGROUND": "false"}, False, "http://127.0.0.1:8000/dev/callback"),
        ({"ENVIRONMENT": "test"}, False, "http://127.0.0.1:8000/dev/callback"),
        (
            {"ENVIRONMENT": "test", "PLAYGROUND": "true", "PUBLIC_URL": "http://127.0.0.1:9/"},
            True,
            "http://127.0.0.1:9/",
        ),
        (
            {"ENVIRONMENT": "development", "OAUTH_REDIRECT_URI": "http://127.0.0.1:8000/dev/callback"},
            True,
            "http://127.0.0.1:8000/dev/callback",
        ),  # the dev callback page still works when asked for
    ],
)
def test_the_dev_provider_lands_on_the_playground_when_it_is_on(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], playground: bool, redirect: str
) -> None:
    for name in ("PLAYGROUND", "PUBLIC_URL", "OAUTH_REDIRECT_URI", "HOST", "PORT", "AUTH_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.PLAYGROUND is playground and settings.OAUTH_REDIRECT_URI == redirect
