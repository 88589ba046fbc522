"""Every error a client can see is JSON {"message": ...} with a status it can act on."""

from __future__ import annotations

import logging

from sanic.exceptions import PayloadTooLarge, SanicException
from sanic.response import HTTPResponse, json

from backend.context import ApiRequest, App
from backend.store import StoreUnavailable

log = logging.getLogger("backend.errors")


class ApiError(SanicException):
    """Base of the errors our handlers raise; `message` is shown to the user as is."""

    status_code = 400
    quiet = True

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, status_code=self.status_code, headers=headers)


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    status_code = 401


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class Gone(ApiError):
    status_code = 410


class TooManyRequests(ApiError):
    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many requests. Try again in {retry_after} seconds.", headers={"Retry-After": str(retry_after)}
        )


class BadGateway(ApiError):
    status_code = 502


class ServiceUnavailable(ApiError):
    """503, always with `Retry-After` (1 s unless the raiser knows better)."""

    status_code = 503

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers={"Retry-After": "1", **(headers or {})})


UNAVAILABLE_MESSAGE = "The service is temporarily unavailable. Please retry shortly."

# Sanic's own wording for its built-in errors, made readable for a user.
_SANIC_MESSAGES = {
    404: "Not found.",
    405: "Method not allowed for this URL.",
    413: "Request body too large (the limit is 64 KiB).",
    408: "Request timed out.",
    400: "Bad request.",
}


# Sanic's Http1 raises PayloadTooLarge with this text for a request head over REQUEST_MAX_HEADER_SIZE
# (sanic/http/http1.py); the client is told 431, not "body too large".
HEAD_TOO_LARGE = "Request header exceeds the size limit"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> HTTPResponse:
    return json({"message": message}, status=status, headers=headers)


def install(app: App) -> None:
    @app.exception(Exception)
    async def handle(request: ApiRequest, exception: Exception) -> HTTPResponse:
        if isinstance(exception, ApiError):
            return error_response(exception.status_code, str(exception), dict(exception.headers or {}))
        if isinstance(exception, PayloadTooLarge) and str(exception) == HEAD_TOO_LARGE:
            return error_response(431, "Request headers too large (the limit is 8 KiB).")
        if isinstance(exception, SanicException):
            status = exception.status_code
            message = _SANIC_MESSAGES.get(status) or "Request failed."
            return error_response(status, message, dict(exception.headers or {}))
        if isinstance(exception, StoreUnavailable):
            log.warning(
                "redis unavailable",
                extra={
                    "error": str(exception),
                    "path": request.path,
                    "request_id": getattr(request.ctx, "request_id", None),
                },
            )
            return error_response(503, UNAVAILABLE_MESSAGE, {"Retry-After": "1"})
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal server error.")
