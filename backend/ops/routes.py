"""/health (process alive) and /ready (Redis answers)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

bp = Blueprint("ops")



@bp.get("/health")
async def health(request: Request) -> HTTPResponse:
    return json({"status": "ok"})


@bp.get("/ready")
async def ready(request: Request) -> HTTPResponse:
    if not await request.app.ctx.store.ping():
        return json({"message": "Redis is not reachable."}, status=503)
    return json({"status": "ready"})
