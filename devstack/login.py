"""The dev provider's login flow, done the way a browser does it."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qsl, urlparse

import httpx


async def dev_login(http: httpx.AsyncClient, username: str | None = None) -> str:
    """The dev provider's whole flow; returns the token."""
    username = username or f"user-{uuid.uuid4().hex[:10]}"
    code, state = await dev_code(http, username)
    response = await http.get("/user/auth-callback", params={"code": code, "state": state})
    assert response.status_code == 200, response.text
    return response.json()["token"]


async def dev_code(http: httpx.AsyncClient, username: str) -> tuple[str, str]:
    auth_code = (await http.get("/user/auth-code")).json()
    query = dict(parse_qsl(urlparse(auth_code["loginUrl"]).query))
    form = {
        "username": username,
        "state": query["state"],
        "code_challenge": query["code_challenge"],
        "redirect_uri": query["redirect_uri"],
    }
    response = await http.post("/dev/login", data=form)
    assert response.status_code == 303, response.text
    back = dict(parse_qsl(urlparse(response.headers["location"]).query))
    assert back["state"] == auth_code["state"]
    return back["code"], back["state"]


def auth(token: str) -> dict[str, str]:
    return {"Authentication": f"Basic {token}"}
