"""/health (process alive) and /ready (Redis answers)."""

from __future__ import annotations

import asyncio

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from backend.store.redis import UNAVAILABLE

bp = Blueprint("ops")



@bp.get("/health")
async def health(request: Request) -> HTTPResponse:
    return json({"status": "ok"})


@bp.get("/ready")
async def ready(request: Request) -> HTTPResponse:
    try:
        async with asyncio.timeout(2):
            await request.app.ctx.redis.ping()
    except (*UNAVAILABLE, TimeoutError):
        return json({"message": "Redis is not reachable."}, status=503)
    return json({"status": "ready"})
