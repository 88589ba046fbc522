"""The web playground at / (PLAYGROUND): plain HTML, CSS and JavaScript files of the service, no
build step, no CDN. The page uses only the public API, as a front-end developer would; its
policy allows scripts, styles and connections from this origin alone (no inline code)."""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint
from sanic.response import HTTPResponse, raw

from backend.apidoc import hidden
from backend.context import ApiRequest
from backend.static import StaticFiles

STATIC = Path(__file__).parent / "static"
ASSETS = StaticFiles(STATIC, ["app.js", "style.css", "favicon.png"], "no-cache")
INDEX = (STATIC / "index.html").read_bytes()

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'"
)
# no-cache: revalidated on every load, so a new version shows at once. no-referrer: the page's
# URL carries a login's code and state for a moment.
PAGE_HEADERS = {"Content-Security-Policy": POLICY, "Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"}

bp = Blueprint("playground")


@bp.get("/")
@hidden  # a page of the service, not part of the API
async def page(request: ApiRequest) -> HTTPResponse:
    return raw(INDEX, content_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@bp.get("/playground/<name:str>")
@hidden
async def asset(request: ApiRequest, name: str) -> HTTPResponse:
    return ASSETS.response(name)


@bp.get("/favicon.ico")
@hidden  # browsers ask every page's origin for it (the dev login page, /docs): an icon, not a 404
async def favicon(request: ApiRequest) -> HTTPResponse:
    body, content_type = ASSETS.files["favicon.png"]
    return raw(body, content_type=content_type, headers={"Cache-Control": "public, max-age=86400"})
