"""/user/auth-code, /user/auth-callback, /user/logout, /user/info."""

from __future__ import annotations

import secrets
from typing import Annotated

from pydantic import Field
from sanic import Blueprint
from sanic.response import HTTPResponse, json

from backend.admission import limit_rate
from backend.apidoc import MessageResponse, Param, operation
from backend.auth.guard import authenticated
from backend.auth.models import AuthCallbackResponse, AuthResponse, UserInfoResponse
from backend.context import ApiRequest
from backend.errors import BadRequest
from backend.parsing import client_address
from backend.store.interview import NOT_STARTED, SUCCESS

bp = Blueprint("auth", url_prefix="/user")


@bp.get("/auth-code")
@operation(
    "getAuthCode",
    "Start a login: the provider page to send the user to",
    description="A fresh `state` (PKCE S256 verifier kept server-side for 10 minutes) and the provider's "
    "authorize URL. Limited per client address (`RATE_LIMIT_AUTH_PER_MINUTE`).",
    responses={200: AuthResponse, 429: "Too many login attempts from this address."},
)
async def auth_code(request: ApiRequest) -> HTTPResponse:
    ctx = request.app.ctx
    await limit_rate(ctx.store.limiter, "auth", client_address(request), ctx.settings.RATE_LIMIT_AUTH_PER_MINUTE)
    state = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(24)
    login_url = await ctx.provider.authorize_url(state, verifier, nonce)
    await ctx.store.logins.save_state(state, verifier, nonce)
    return json({"loginUrl": login_url, "state": state})


@bp.get("/auth-callback")
@operation(
    "authCallback",
    "Finish a login: exchange the provider's code and the state for a token",
    query=[
        Param(
            "code",
            "The code the provider sent to the redirect URI.",
            Annotated[str, Field(min_length=1, max_length=2048)],
            required=True,
        ),
        Param(
            "state",
            "The `state` of /user/auth-code, also sent back by the provider.",
            Annotated[str, Field(min_length=1, max_length=256)],
            required=True,
        ),
    ],
    responses={
        200: AuthCallbackResponse,
        400: "`code` or `state` missing; the state unknown, expired or used already; or the provider refused the code.",
        502: "The login provider answered with an error or something invalid.",
        503: "Redis or the login provider did not answer in time: try again after `Retry-After` seconds.",
    },
)
async def auth_callback(request: ApiRequest) -> HTTPResponse:
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
    _, token = await ctx.store.users.login(
        ctx.provider.name, identity.subject, identity.username, issuer=identity.issuer
    )
    return json({"token": token})


@bp.post("/logout")
@operation("logout", "Log out: the token stops working at once, on every pod", responses={200: MessageResponse})
@authenticated
async def logout(request: ApiRequest) -> HTTPResponse:
    await request.app.ctx.store.users.logout(request.ctx.token)
    return json({"message": "Logged out."})


@bp.get("/info")
@operation("getUserInfo", "The user's information and interview status", responses={200: UserInfoResponse})
@authenticated
async def info(request: ApiRequest) -> HTTPResponse:
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
