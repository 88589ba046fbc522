"""/user/auth-code, /user/auth-callback, /user/logout, /user/info, /user/export, DELETE /user."""

from __future__ import annotations

import math
import secrets
from typing import Annotated

from pydantic import Field
from sanic import Blueprint
from sanic.response import HTTPResponse, json

from backend.admission import limit_rate
from backend.apidoc import MessageResponse, Param, operation
from backend.auth.guard import authenticated
from backend.auth.models import AuthCallbackResponse, AuthResponse, UserExport, UserInfoResponse
from backend.context import ApiRequest
from backend.errors import BadRequest, ServiceUnavailable, Unauthorized
from backend.parsing import address_bucket, client_address
from backend.store.interview import NOT_STARTED, SUCCESS

bp = Blueprint("auth", url_prefix="/user")

LOGINS_FULL = "Too many logins are in progress right now. Please try again shortly."
EXPORTS_PER_MINUTE = 2  # an export reads (and sends) all of a user's data


@bp.get("/auth-code")
@operation(
    "getAuthCode",
    "Start a login: the provider page to send the user to",
    description="A fresh `state` (PKCE S256 verifier kept server-side for 10 minutes) and the provider's "
    "authorize URL. Limited per client address (`RATE_LIMIT_AUTH_PER_MINUTE`; an IPv6 client counts as its /64), "
    "and the whole service holds at most `LOGIN_STATES_MAX` pending logins.",
    responses={
        200: AuthResponse,
        429: "Too many login attempts from this address (or its IPv6 /64): try again after `Retry-After` seconds.",
        503: "Too many logins are pending on the whole service, or Redis is unavailable: try again after "
        "`Retry-After` seconds.",
    },
)
async def auth_code(request: ApiRequest) -> HTTPResponse:
    ctx = request.app.ctx
    bucket = address_bucket(client_address(request))
    await limit_rate(ctx.store.limiter, "auth", bucket, ctx.settings.RATE_LIMIT_AUTH_PER_MINUTE)
    state = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(24)
    login_url = await ctx.provider.authorize_url(state, verifier, nonce)
    wait_ms = await ctx.store.logins.save_state(state, verifier, nonce)
    if wait_ms:
        raise ServiceUnavailable(LOGINS_FULL, headers={"Retry-After": str(math.ceil(wait_ms / 1000))})
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
@operation(
    "logout",
    "Log out: the token stops working at once, on every pod",
    description="With `?all=true`, every session of the user ends (every device is logged out).",
    query=[Param("all", "`true`: end every session of the user, not only this one.", bool, default=False)],
    responses={200: MessageResponse, 400: "`all` is neither `true` nor `false`."},
)
@authenticated
async def logout(request: ApiRequest) -> HTTPResponse:
    every = request.get_args(keep_blank_values=True).getlist("all")
    if len(every) > 1 or (every and every[0] not in ("true", "false")):
        raise BadRequest("Invalid query parameter 'all': true or false.")
    users = request.app.ctx.store.users
    if every == ["true"]:
        ended = await users.logout_all(request.ctx.user_id)
        return json({"message": f"Logged out everywhere ({ended} sessions)."})
    await users.logout(request.ctx.token)
    return json({"message": "Logged out."})


@bp.get("/export")
@operation(
    "exportUser",
    "Everything stored about the user, as one JSON document",
    description="The user, the interview with its questions and answers, every chat with its messages, and "
    f"the sessions' expiries. At most {EXPORTS_PER_MINUTE} per minute.",
    responses={200: UserExport, 429: "Too many exports this minute."},
)
@authenticated
async def export(request: ApiRequest) -> HTTPResponse:
    ctx = request.app.ctx
    user_id = request.ctx.user_id
    await limit_rate(ctx.store.limiter, "export", str(user_id), EXPORTS_PER_MINUTE)
    document = await ctx.store.accounts.export(user_id)
    if document is None:
        raise Unauthorized("Invalid or expired token. Please log in again.")
    return json(document)


@bp.delete("")
@operation(
    "deleteUser",
    "Delete the user and everything stored about them",
    description="Replies in flight are stopped first; then every session, the interview, every chat and "
    "the provider identity go. A later login with the same identity makes a new user.",
    responses={200: MessageResponse},
)
@authenticated
async def delete_user(request: ApiRequest) -> HTTPResponse:
    await request.app.ctx.store.accounts.delete(request.ctx.user_id)
    return json({"message": "Your account and all its data were deleted."})


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
