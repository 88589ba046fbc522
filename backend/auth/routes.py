"""/user/auth-code, /user/auth-callback, /user/logout, /user/info."""

from __future__ import annotations

import secrets

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from backend.auth.guard import authenticated
from backend.errors import BadRequest, TooManyRequests
from backend.parsing import client_address
from backend.store.interview import NOT_STARTED, SUCCESS

bp = Blueprint("auth", url_prefix="/user")


@bp.get("/auth-code")
async def auth_code(request: Request) -> HTTPResponse:
    ctx = request.app.ctx
    wait = await ctx.store.limiter.retry_after("auth", client_address(request),
                                               ctx.settings.RATE_LIMIT_AUTH_PER_MINUTE)
    if wait:
        raise TooManyRequests(wait)
    state = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(24)
    login_url = await ctx.provider.authorize_url(state, verifier, nonce)
    await ctx.store.logins.save_state(state, verifier, nonce)
    return json({"loginUrl": login_url, "state": state})


@bp.get("/auth-callback")
async def auth_callback(request: Request) -> HTTPResponse:
    code = request.args.get("code", "")
    state = request.args.get("state", "")
    if not code or not state:
        raise BadRequest("Query parameters 'code' and 'state' are required.")
    if len(state) > 256 or len(code) > 2048:
        raise BadRequest("Unknown or expired login state. Please start the login again.")
    ctx = request.app.ctx
    grant = await ctx.store.logins.take_state(state)  # consumed exactly once
    if grant is None:
        raise BadRequest("Unknown or expired login state. Please start the login again.")
    verifier, nonce = grant
    identity = await ctx.provider.identify(code, verifier, nonce)
    _, token = await ctx.store.users.login(ctx.provider.name, identity.subject, identity.username,
                                           issuer=identity.issuer)
    return json({"token": token})


@bp.post("/logout")
@authenticated
async def logout(request: Request) -> HTTPResponse:
    await request.app.ctx.store.users.logout(request.ctx.token)
    return json({"message": "Logged out."})


@bp.get("/info")
@authenticated
async def info(request: Request) -> HTTPResponse:
    user = request.ctx.user
    status = user.get("status", NOT_STARTED)
    body = {
        "userId": int(user["userId"]),
        "username": user["username"],
        "createdAt": int(user["createdAt"]),
        "skillDescription": user.get("skillDescription", ""),
        "doneInterview": status == SUCCESS,
        "interviewQuestionStatus": status,
    }
    if status == SUCCESS:
        body["interviewScore"] = int(user.get("score", 0))
    return json(body)
