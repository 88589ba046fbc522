"""The development login provider's pages (never mounted when ENVIRONMENT=production).

/dev/login behaves like a provider's authorize page. The default OAUTH_REDIRECT_URI is the web
playground (/) when it is on, else /dev/callback: opened in a browser it starts a login, and back
from /dev/login it finishes that login (only that one: its state must match) by calling
/user/auth-callback and shows the token (it stays available either way).
"""

from __future__ import annotations

from html import escape
from typing import Annotated
from urllib.parse import urlencode

from pydantic import BaseModel, Field
from sanic import Blueprint
from sanic.request import RequestParameters
from sanic.response import HTTPResponse, html, redirect

from backend.apidoc import Other, Param, operation
from backend.auth.providers import DevProvider
from backend.context import ApiRequest
from backend.errors import BadRequest, NotFound
from backend.headers import origin, page_policy

bp = Blueprint("dev_login", url_prefix="/dev")

# The pages' only inline code; their Content-Security-Policy allows exactly these texts by hash.
STYLE = """body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}
input,button{font-size:1rem;padding:.4rem}
pre{background:#f3f3f3;padding:.2rem;word-break:break-all;white-space:pre-wrap}"""

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>{style}</style>
</head><body>{body}</body></html>"""

LOGIN_FORM = """<h1>Development login</h1>
<p>This stands in for an OAuth provider while developing. Pick any user name.</p>
<form method="post" action="/dev/login">
{hidden}
<label>User name <input name="username" required maxlength="64" autofocus></label>
<button type="submit">Log in</button></form>"""

# Opened without ?code it starts a login (keeping its state in this tab); back from the provider,
# it finishes only the login it started, as the playground does: a code sent here by another
# page (login CSRF: someone else's code) is refused before it reaches /user/auth-callback.
CALLBACK_SCRIPT = """
const KEY = 'devCallback.loginState';
const q = new URLSearchParams(location.search);
const show = (title, text) => {
  document.querySelector('h1').textContent = title;
  document.getElementById('out').textContent = text;
};
if (!q.has('code') && !q.has('error')) {
  fetch('/user/auth-code').then(r => r.json()).then(b => {
    sessionStorage.setItem(KEY, b.state);
    location.assign(b.loginUrl);
  });
} else {
  const expected = sessionStorage.getItem(KEY);
  sessionStorage.removeItem(KEY);
  history.replaceState(null, '', location.pathname);
  if (q.get('error')) {
    show('Login failed', 'The login provider said: ' + (q.get('error_description') || q.get('error')));
  } else if (!expected || expected !== q.get('state')) {
    show('Login failed', 'This login was not started from this page. Open it again to log in.');
  } else {
    fetch('/user/auth-callback?' + new URLSearchParams({code: q.get('code') || '', state: q.get('state') || ''}))
      .then(r => r.json().then(b => [r.status, b]))
      .then(([status, b]) => show(status === 200 ? 'Logged in' : 'Login failed', status !== 200 ? b.message
        : 'token: ' + b.token + '\\n\\ncurl -H "Authentication: Basic ' + b.token + '" '
          + location.origin + '/user/info'));
  }
}
"""

CALLBACK = f"""<h1>Logging in…</h1><pre id="out"></pre>
<script>{CALLBACK_SCRIPT}</script>"""
CALLBACK_POLICY = page_policy(scripts=[CALLBACK_SCRIPT], styles=[STYLE])

FORWARDED = ("state", "code_challenge", "redirect_uri")


class DevLoginForm(BaseModel):
    """The development login form (POST /dev/login), as the page sends it."""

    username: str = Field(min_length=1, max_length=64, description="Any user name: it logs in as that user.")
    state: str = Field(min_length=1)
    code_challenge: str = Field(min_length=1)
    redirect_uri: str = Field(min_length=1, description="Must be OAUTH_REDIRECT_URI.")


HTML_PAGE = Other("An HTML page.", "text/html; charset=utf-8")


@bp.get("/login")
@operation(
    "devLoginPage",
    "The development provider's login page (the `loginUrl` of /user/auth-code)",
    store=False,
    query=[Param(name, "From `loginUrl`.", Annotated[str, Field(min_length=1)], required=True) for name in FORWARDED],
    responses={200: HTML_PAGE, 400: "A query parameter is missing."},
)
async def login_page(request: ApiRequest) -> HTTPResponse:
    missing = [name for name in FORWARDED if not request.args.get(name)]
    if missing:
        raise BadRequest(f"Missing query parameter '{missing[0]}'.")
    hidden = "\n".join(
        f'<input type="hidden" name="{name}" value="{escape(request.args.get(name))}">' for name in FORWARDED
    )
    # The form posts here, then is redirected to OAUTH_REDIRECT_URI: both are form targets.
    redirect_origin = origin(request.app.ctx.settings.OAUTH_REDIRECT_URI)
    policy = page_policy(styles=[STYLE], form_action=[redirect_origin] if redirect_origin else [])
    return html(
        PAGE.format(title="Development login", style=STYLE, body=LOGIN_FORM.format(hidden=hidden)),
        headers={"Content-Security-Policy": policy},
    )


@bp.post("/login")
@operation(
    "devLogin",
    "Log in as any user name: redirects to OAUTH_REDIRECT_URI with `code` and `state`",
    form=DevLoginForm,
    responses={
        303: Other("To OAUTH_REDIRECT_URI with `code` and `state`.", headers={"Location": "Where to go."}),
        400: "A field is missing or too long, or `redirect_uri` is not OAUTH_REDIRECT_URI.",
    },
)
async def login_submit(request: ApiRequest) -> HTTPResponse:
    form = request.form or RequestParameters()
    values = {name: (form.get(name) or "").strip() for name in (*FORWARDED, "username")}
    if not all(values.values()):
        raise BadRequest("Fields 'username', 'state', 'code_challenge' and 'redirect_uri' are required.")
    if len(values["username"]) > 64:
        raise BadRequest("Invalid field 'username': at most 64 characters.")
    ctx = request.app.ctx
    if values["redirect_uri"] != ctx.settings.OAUTH_REDIRECT_URI:
        raise BadRequest("Invalid redirect_uri.")
    if not isinstance(ctx.provider, DevProvider):  # the routes exist only with AUTH_PROVIDER=dev
        raise NotFound("Not found.")
    code = await ctx.provider.issue_code(values["username"], values["code_challenge"])
    separator = "&" if "?" in values["redirect_uri"] else "?"
    return redirect(
        values["redirect_uri"] + separator + urlencode({"code": code, "state": values["state"]}), status=303
    )


@bp.get("/callback")
@operation(
    "devCallbackPage",
    "The development redirect page: starts a login, finishes that one and shows the token",
    store=False,
    responses={200: HTML_PAGE},
)
async def callback_page(request: ApiRequest) -> HTTPResponse:
    return html(
        PAGE.format(title="Logging in", style=STYLE, body=CALLBACK),
        headers={"Content-Security-Policy": CALLBACK_POLICY},
    )
