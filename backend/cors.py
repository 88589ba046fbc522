"""CORS for the origins in CORS_ORIGINS (none when empty; `*` allows any)."""

from __future__ import annotations

from sanic.response import BaseHTTPResponse, HTTPResponse, empty

from backend.context import ApiRequest, App
from backend.headers import add_vary

ALLOWED_HEADERS = "Authentication, Authorization, Content-Type, Last-Event-ID, X-Request-ID"
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
EXPOSED_HEADERS = "X-Request-ID, Retry-After"


def install(app: App, origins: list[str]) -> None:
    if not origins:
        return
    allowed = set(origins)

    def allows(origin: str | None) -> bool:
        return bool(origin) and ("*" in allowed or origin in allowed)

    async def preflight(request: ApiRequest) -> HTTPResponse | None:
        if request.method != "OPTIONS" or "access-control-request-method" not in request.headers:
            return None
        origin: str = request.headers.get("origin") or ""
        if not allows(origin):
            return empty(status=204)  # no CORS headers: the browser refuses the real request
        return empty(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )

    async def allow_origin(request: ApiRequest, response: BaseHTTPResponse) -> None:
        origin = request.headers.get("origin")
        if allows(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            add_vary(response.headers, "Origin")

    app.middleware(preflight, "request", priority=90)
    app.middleware(allow_origin, "response", priority=90)
