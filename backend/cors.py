"""CORS for the origins in CORS_ORIGINS (none when empty; `*` allows any)."""

from __future__ import annotations

from sanic import Request, Sanic
from sanic.response import HTTPResponse, empty

from backend.headers import add_vary

ALLOWED_HEADERS = "Authentication, Authorization, Content-Type, Last-Event-ID, X-Request-ID"
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
EXPOSED_HEADERS = "X-Request-ID, Retry-After"


def install(app: Sanic, origins: list[str]) -> None:
    if not origins:
        return
    allowed = set(origins)

    def allows(origin: str | None) -> bool:
        return bool(origin) and ("*" in allowed or origin in allowed)

    @app.on_request(priority=90)
    async def preflight(request: Request) -> HTTPResponse | None:
        if request.method != "OPTIONS" or "access-control-request-method" not in request.headers:
            return None
        origin = request.headers.get("origin")
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

    @app.on_response(priority=90)
    async def allow_origin(request: Request, response: HTTPResponse) -> None:
        origin = request.headers.get("origin")
        if allows(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            add_vary(response.headers, "Origin")
