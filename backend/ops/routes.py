"""/health (process alive) and /ready (Redis answers)."""

from __future__ import annotations

from typing import Literal

from sanic import Blueprint
from sanic.response import HTTPResponse, json

from backend.apidoc import Answer, operation
from backend.context import ApiRequest
from backend.errors import ServiceUnavailable

bp = Blueprint("ops")


class HealthResponse(Answer):
    status: Literal["ok"]


class ReadyResponse(Answer):
    status: Literal["ready"]


@bp.get("/health")
@operation(
    "getHealth", "The process is alive (200 even while Redis is down)", store=False, responses={200: HealthResponse}
)
async def health(request: ApiRequest) -> HTTPResponse:
    return json({"status": "ok"})


@bp.get("/ready")
@operation(
    "getReady",
    "Ready for traffic: Redis answers",
    responses={200: ReadyResponse, 503: "Redis does not answer: try again after `Retry-After` seconds."},
)
async def ready(request: ApiRequest) -> HTTPResponse:
    if not await request.app.ctx.store.ping():
        raise ServiceUnavailable("Redis is not reachable.")
    return json({"status": "ready"})
