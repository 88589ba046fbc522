"""The development login provider's pages (never mounted when ENVIRONMENT=production).

/dev/login behaves like a provider's authorize page; /dev/callback is the default
OAUTH_REDIRECT_URI: it finishes the login by calling /user/auth-callback and shows the token.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, html, redirect

from backend.errors import BadRequest
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

CALLBACK_SCRIPT = """
const q = new URLSearchParams(location.search);
fetch('/user/auth-callback?' + new URLSearchParams({code: q.get('code') || '', state: q.get('state') || ''}))
  .then(r => r.json().then(b => [r.status, b]))
  .then(([status, b]) => {
    document.querySelector('h1').textContent = status === 200 ? 'Logged in' : 'Login failed';
    document.getElementById('out').textContent = status === 200
      ? 'token: ' + b.token + '\\n\\ncurl -H "Authentication: Basic ' + b.token + '" ' + location.origin + '/user/info'
      : b.message;
  });
"""

CALLBACK = f"""<h1>Logging in…</h1><pre id="out"></pre>
<script>{CALLBACK_SCRIPT}</script>"""
CALLBACK_POLICY = page_policy(scripts=[CALLBACK_SCRIPT], styles=[STYLE])

FORWARDED = ("state", "code_challenge", "redirect_uri")


@bp.get("/login")
async def login_page(request: Request) -> HTTPResponse:
    missing = [name for name in FORWARDED if not request.args.get(name)]
    if missing:
        raise BadRequest(f"Missing query parameter '{missing[0]}'.")
    hidden = "\n".join(
        f'<input type="hidden" name="{name}" value="{escape(request.args.get(name))}">' for name in FORWARDED
    )
    # The form posts here, then is redirected to OAUTH_REDIRECT_URI: both are form targets.
    redirect_origin = origin(request.app.ctx.settings.OAUTH_REDIRECT_URI)
    policy = page_policy(styles=[STYLE], form_action=[redirect_origin] if redirect_origin else [])
    return html(PAGE.format(title="Development login", style=STYLE, body=LOGIN_FORM.format(hidden=hidden)),
                headers={"Content-Security-Policy": policy})


@bp.post("/login")
async def login_submit(request: Request) -> HTTPResponse:
    form = request.form or {}
    values = {name: (form.get(name) or "").strip() for name in (*FORWARDED, "username")}
    if not all(values.values()):
        raise BadRequest("Fields 'username', 'state', 'code_challenge' and 'redirect_uri' are required.")
    if len(values["username"]) > 64:
        raise BadRequest("Invalid field 'username': at most 64 characters.")
    ctx = request.app.ctx
    if values["redirect_uri"] != ctx.settings.OAUTH_REDIRECT_URI:
        raise BadRequest("Invalid redirect_uri.")
    code = await ctx.provider.issue_code(values["username"], values["code_challenge"])
    separator = "&" if "?" in values["redirect_uri"] else "?"
    return redirect(values["redirect_uri"] + separator + urlencode({"code": code, "state": values["state"]}),
                    status=303)


@bp.get("/callback")
async def callback_page(request: Request) -> HTTPResponse:
    return html(PAGE.format(title="Logging in", style=STYLE, body=CALLBACK),
                headers={"Content-Security-Policy": CALLBACK_POLICY})
