"""The OpenAPI document (/docs/openapi.json), built from the routes, and the docs page (/docs).

The document is built once, at the first request for it, from `app.router.routes`: each route's
`@operation` (backend/apidoc.py) and the pydantic models it names, plus what the route itself
says (path, method, parameter types, `@authenticated`). Nothing is kept by hand here, so a route
cannot drop out of the document and a model cannot drift from it; tests/test_openapi.py fails
on a route with no documentation, and checks the document with openapi-typescript, tsc and
Schemathesis.

The docs page is Swagger UI from the `swagger-ui-bundle-v2` package (its static distribution,
installed from PyPI): the page, its script and styles are served from here, with a
Content-Security-Policy that names no other origin, so it works offline. Nothing of sanic-ext
is used: no middleware or signal of this module runs on any other route.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema
from sanic import Blueprint
from sanic.response import HTTPResponse, html, raw
from sanic_routing.route import Route
from swagger_ui_bundle import swagger_ui_path

from backend.apidoc import (
    HIDDEN,
    ErrorResponse,
    EventStream,
    Json,
    Operation,
    Other,
    Param,
    Response,
    documentation,
    hidden,
)
from backend.context import ApiRequest, App
from backend.static import StaticFiles

log = logging.getLogger("backend.ops.openapi")

OPENAPI_VERSION = "3.1.0"
TITLE = "AI interview and assistant API"
SCHEMAS = "#/components/schemas/"
SSE_MEDIA_TYPE = "text/event-stream; charset=utf-8"
METHODS_LEFT_OUT = frozenset({"HEAD", "OPTIONS"})
# Blueprint -> tag, where the blueprint's name is not the tag.
TAGS = {"auth": "user", "ops": "operations", "ops_metrics": "operations", "dev_login": "development"}
TAG_DESCRIPTIONS = {
    "user": "Login (OAuth with PKCE), logout, the user's information.",
    "interview": "The skill description and the multiple-choice interview written for it.",
    "assistant": "Chats with the assistant; replies stream as Server-Sent Events and can be resumed on any pod.",
    "operations": "Health, readiness and Prometheus metrics.",
    "development": "The development login provider (AUTH_PROVIDER=dev, never in production).",
}

DESCRIPTION = """\
The API of the AI interview and assistant backend (`api-spec.md` is the contract; this document
is built from the routes themselves).

- **Authentication**: `Authentication: Basic <token>`, the token from `/user/auth-callback`
  (`Authorization: Bearer <token>` is accepted too). A missing, unknown, expired or logged-out token: 401.
- **Errors**: every answer with a status >= 400 is `{"message": "..."}` (`ErrorResponse`), a message
  that can be shown to the user. A body that is not JSON, or of the wrong shape: 400 naming the field;
  a body over 64 KiB: 413 whatever its length in characters; too many requests: 429 with
  `Retry-After`; Redis unavailable or the assistant overloaded: 503 with `Retry-After`; another
  method on a path: 405 with `Allow`; a request head over 8 KiB: 431; a head not sent in time: 408.
- **Length limits** count the text after its leading and trailing whitespace is trimmed.
- **Ids** are positive 64-bit integers; times are Unix milliseconds.
- Every answer carries `X-Request-ID` (the one the client sent, else a new one): quote it when
  reporting a problem.
- **Streams**: a prompt's reply and `GET /assistant/chat/{chatId}/stream` are Server-Sent Events
  (`ReplyEvent`, `ReplyEventData`); resume with `Last-Event-ID`. A browser's `EventSource` (no
  header) uses a stream ticket from `POST /assistant/chat/{chatId}/stream-ticket` as `?ticket=`.
"""

HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id: the client's own `X-Request-ID`, else a new one.",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "format": "int64", "minimum": 1},
    },
    "Allow": {"description": "The methods this path answers.", "required": True, "schema": {"type": "string"}},
}
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "token": {
        "type": "apiKey",
        "in": "header",
        "name": "Authentication",
        "description": "`Basic <token>`, the token from /user/auth-callback.",
    },
    "bearer": {"type": "http", "scheme": "bearer", "description": "The same token as `Authorization: Bearer <token>`."},
    "ticket": {
        "type": "apiKey",
        "in": "query",
        "name": "ticket",
        "description": "A stream ticket (POST /assistant/chat/{chatId}/stream-ticket), on that chat's stream "
        "route only: for a browser's EventSource, which can send no header.",
    },
}
# Statuses every route of a kind can answer, unless the route describes them itself.
UNAUTHORIZED = "The token is missing, malformed, unknown, expired or logged out."
BAD_BODY = "The body is not JSON, not an object, or a field is missing or invalid (the message names it)."
TOO_LARGE = "The body is over 64 KiB."
UNAVAILABLE = "Redis is unavailable (or the service is overloaded): try again after `Retry-After` seconds."
NOT_FOUND = "Not found."
COMMON_RESPONSES: dict[str, dict[str, Any]] = {
    "MethodNotAllowed": {
        "description": "Another method on this path: `Allow` lists those it answers.",
        "headers": {"Allow": {"$ref": "#/components/headers/Allow"}},
        "content": {"application/json": {"schema": {"$ref": SCHEMAS + "ErrorResponse"}}},
    },
    "RequestHeaderFieldsTooLarge": {
        "description": "The request line and headers are over 8 KiB (a very long URL, too).",
        "content": {"application/json": {"schema": {"$ref": SCHEMAS + "ErrorResponse"}}},
    },
}


class DocumentationError(ValueError):
    """A route's `@operation` does not fit the route."""


def _schema_of(annotation: Any) -> dict[str, Any]:
    schema: dict[str, Any] = _clean(TypeAdapter(annotation).json_schema(ref_template=SCHEMAS + "{model}"))
    return schema


def _clean(node: Any, in_properties: bool = False) -> Any:
    """Pydantic's JSON schema as the API behaves: no titles, and an optional field is left out
    rather than null (`anyOf [X, null]` becomes X, with no `default: null`)."""
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    if in_properties:
        return {name: _clean(value) for name, value in node.items()}
    if "anyOf" in node and {"type": "null"} in node["anyOf"]:
        rest = [option for option in node["anyOf"] if option != {"type": "null"}]
        merged = {k: v for k, v in node.items() if k != "anyOf"}
        if merged.get("default", 0) is None:
            del merged["default"]
        if len(rest) == 1 and "$ref" in rest[0] and merged:
            node = {"allOf": rest, **merged}  # keep the description next to the reference
        elif len(rest) == 1:
            node = {**rest[0], **merged}
        else:
            node = {"anyOf": rest, **merged}
    return {
        key: _clean(value, in_properties=key in ("properties", "$defs"))
        for key, value in node.items()
        if key != "title"
    }


class Builder:
    """One document from one app's routes."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.paths: dict[str, dict[str, Any]] = {}
        self.models: dict[type[BaseModel], str] = {ErrorResponse: "serialization"}
        self.security_used: set[str] = set()
        self.tags: set[str] = set()
        self.operation_ids: dict[str, str] = {}
        self.undocumented: list[str] = []

    # ---- the walk over the routes ---------------------------------------------------------

    def build(self) -> dict[str, Any]:
        for route in sorted(self.app.router.routes, key=lambda r: (r.path, r.name)):
            found = documentation(route.handler)
            if found == HIDDEN:
                continue
            if found is None:
                self.undocumented.append(f"{'/'.join(sorted(route.methods))} /{route.path} ({route.name})")
                continue
            assert isinstance(found, Operation)
            for method in sorted(route.methods - METHODS_LEFT_OUT):
                self._add(route, method, found)
        return self._document()

    def _add(self, route: Route, method: str, op: Operation) -> None:
        if op.operation_id in self.operation_ids:
            raise DocumentationError(f"operationId {op.operation_id!r} is used twice ({route.name})")
        self.operation_ids[op.operation_id] = route.name
        path, path_parameters = self._path(route, op)
        handler = route.handler
        authenticated = bool(getattr(handler, "authenticated", False))
        blueprint = route.name.split(".")[1] if route.name.count(".") >= 2 else "default"
        tag = op.tag or TAGS.get(blueprint, blueprint)
        self.tags.add(tag)
        operation: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [tag]}
        if op.description:
            operation["description"] = op.description
        parameters = path_parameters + [self._parameter(p, "query") for p in op.query]
        parameters += [self._parameter(p, "header") for p in op.headers]
        if parameters:
            operation["parameters"] = parameters
        if op.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": self._ref(op.body, "validation")}},
            }
        elif op.form is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": self._ref(op.form, "validation")}},
            }
        if authenticated:
            schemes = ("token", "bearer", *(op.security or ()))
            self.security_used.update(schemes)
            operation["security"] = [{scheme: []} for scheme in schemes]
        else:
            operation["security"] = []
        operation["responses"] = self._responses(op, authenticated, bool(path_parameters))
        self.paths.setdefault(path, {})[method.lower()] = operation

    def _path(self, route: Route, op: Operation) -> tuple[str, list[dict[str, Any]]]:
        """The path as the document writes it (`{chatId}`), and its parameters' definitions."""
        params = {p.name: p for p in route.params.values()}
        if set(params) != set(op.path):
            raise DocumentationError(f"{route.name}: path parameters {sorted(params)}, documented {sorted(op.path)}")
        definitions = []
        for name, param in params.items():
            documented = op.path[name]
            if param.cast is int:
                schema: dict[str, Any] = {"type": "integer", "format": "int64", "minimum": 1}
            elif param.cast is str:
                schema = {"type": "string"}
            else:
                raise DocumentationError(f"{route.name}: no schema for a path parameter of type {param.cast}")
            definitions.append(
                {
                    "name": documented.name,
                    "in": "path",
                    "required": True,
                    "description": documented.description,
                    "schema": schema,
                }
            )

        def rename(match: re.Match[str]) -> str:
            return "{" + op.path[match[1]].name + "}"

        path = "/" + re.sub(r"<([^:>]+)(?::[^>]*)?>", rename, route.path)
        return path, definitions

    def _parameter(self, param: Param, where: str) -> dict[str, Any]:
        schema = _schema_of(param.type)
        if param.default is not None:
            schema["default"] = param.default
        definition: dict[str, Any] = {
            "name": param.name,
            "in": where,
            "required": param.required,
            "description": param.description,
            "schema": schema,
        }
        if param.example is not None:
            definition["example"] = param.example
        return definition

    def _ref(self, model: type[BaseModel], mode: str) -> dict[str, str]:
        if self.models.setdefault(model, mode) != mode:
            raise DocumentationError(f"{model.__name__} is used both as a body and as an answer")
        return {"$ref": SCHEMAS + model.__name__}

    # ---- answers ----------------------------------------------------------------------------

    def _responses(self, op: Operation, authenticated: bool, has_path_params: bool) -> dict[str, Any]:
        given: dict[int, Response] = dict(op.responses)
        if authenticated:
            given.setdefault(401, UNAUTHORIZED)
        if op.body is not None or op.form is not None:
            given.setdefault(400, BAD_BODY)
            given.setdefault(413, TOO_LARGE)
        if has_path_params:
            given.setdefault(404, NOT_FOUND)
        if op.store:
            given.setdefault(503, UNAVAILABLE)
        responses = {str(status): self._response(status, given[status]) for status in sorted(given)}
        responses["405"] = {"$ref": "#/components/responses/MethodNotAllowed"}
        responses["431"] = {"$ref": "#/components/responses/RequestHeaderFieldsTooLarge"}
        return responses

    def _response(self, status: int, response: Response) -> dict[str, Any]:
        headers: dict[str, Any] = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
        if isinstance(response, str):  # an error
            if status in (429, 503):
                headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
            return {
                "description": response,
                "headers": headers,
                "content": {"application/json": {"schema": self._ref(ErrorResponse, "serialization")}},
            }
        if isinstance(response, type) and issubclass(response, BaseModel):
            response = Json(response)
        if isinstance(response, Json):
            for name, description in response.headers.items():
                headers[name] = {"description": description, "schema": {"type": "string"}}
            description = response.description or _first_line(response.model.__doc__) or "OK"
            answer: dict[str, Any] = {
                "description": description,
                "headers": headers,
                "content": {"application/json": {"schema": self._ref(response.model, "serialization")}},
            }
            if response.links:
                answer["links"] = {
                    operation_id: {"operationId": operation_id, "parameters": dict(parameters)}
                    for operation_id, parameters in response.links.items()
                }
            return answer
        if isinstance(response, EventStream):
            headers["Cache-Control"] = {"description": "`no-cache, no-transform`", "schema": {"type": "string"}}
            headers["X-Accel-Buffering"] = {
                "description": "`no`: proxies pass each event on at once",
                "schema": {"type": "string"},
            }
            for model in response.also:
                self._ref(model, "serialization")
            # The schema of one event, as OpenAPI before 3.2 reads `schema` of an event stream.
            return {
                "description": response.description,
                "headers": headers,
                "content": {SSE_MEDIA_TYPE: {"schema": self._ref(response.event, "serialization")}},
            }
        assert isinstance(response, Other)
        for name, description in response.headers.items():
            headers[name] = {"description": description, "required": True, "schema": {"type": "string"}}
        answer = {"description": response.description, "headers": headers}
        if response.media_type:
            answer["content"] = {response.media_type: {"schema": {"type": "string"}}}
        return answer

    # ---- the whole ----------------------------------------------------------------------------

    def _document(self) -> dict[str, Any]:
        models = sorted(self.models.items(), key=lambda item: item[0].__name__)
        _, top = models_json_schema(
            # pydantic takes (model or dataclass, mode) pairs; a list of models is one, but lists are invariant
            [(model, mode) for model, mode in models],  # type: ignore[misc]
            ref_template=SCHEMAS + "{model}",
        )
        schemas = _clean(top.get("$defs", {}), in_properties=True)
        for model, _ in models:
            if model.__name__ not in schemas:
                raise DocumentationError(f"two models named {model.__name__}")
        return {
            "openapi": OPENAPI_VERSION,
            "info": {"title": TITLE, "version": _version(), "description": DESCRIPTION},
            "tags": [{"name": tag, "description": TAG_DESCRIPTIONS.get(tag, "")} for tag in sorted(self.tags)],
            "paths": dict(sorted(self.paths.items())),
            "components": {
                "schemas": dict(sorted(schemas.items())),
                "responses": COMMON_RESPONSES,
                "headers": HEADERS,
                "securitySchemes": {
                    name: scheme for name, scheme in SECURITY_SCHEMES.items() if name in self.security_used
                },
            },
        }


def _first_line(text: str | None) -> str:
    return " ".join((text or "").split("\n\n")[0].split())


def _version() -> str:
    try:
        return importlib.metadata.version("ai-interview-backend")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def build_document(app: App) -> tuple[dict[str, Any], list[str]]:
    """The document of the app's routes, and the routes that have no documentation (call once
    the router is finalized, i.e. from a request or after `app.router.finalize()`)."""
    builder = Builder(app)
    return builder.build(), builder.undocumented


# ---- the docs page ----------------------------------------------------------------------------

SWAGGER_UI = Path(swagger_ui_path)
SWAGGER_UI_VERSION = SWAGGER_UI.name.removeprefix("swagger-ui-")
ASSETS = f"/docs/assets/{SWAGGER_UI_VERSION}"  # versioned: the files can be cached for good
# The files of the distribution the page uses, served as they are.
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "index.css", "favicon-32x32.png", "favicon-16x16.png")

INIT_SCRIPT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/docs/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    defaultModelsExpandDepth: 0,
  });
});
"""

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{TITLE}</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
<link rel="stylesheet" href="{ASSETS}/index.css">
<link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="{ASSETS}/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="{ASSETS}/docs.js"></script>
</body>
</html>
"""

# Only this service's own origin. Swagger UI sets style attributes (React), hence 'unsafe-inline'
# for styles alone; it needs no eval and no other origin (its validator badge is off).
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": PAGE_POLICY, "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}


def load_assets() -> StaticFiles:
    """What the page loads, read once; versioned paths, so cached for good."""
    assets = StaticFiles(SWAGGER_UI, list(ASSET_FILES), "public, max-age=31536000, immutable")
    assets.add("docs.js", INIT_SCRIPT.encode())
    return assets


def references(page: str) -> list[str]:
    """The URLs a page loads (scripts, styles, icons)."""
    return re.findall(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)""", page)


def blueprint() -> Blueprint:
    bp = Blueprint("openapi", url_prefix="/docs")
    document: list[bytes] = []
    assets = load_assets()

    @bp.get("/openapi.json")
    @hidden
    async def spec(request: ApiRequest) -> HTTPResponse:
        if not document:
            built, undocumented = build_document(request.app)
            if undocumented:
                log.warning("routes with no OpenAPI documentation", extra={"routes": undocumented})
            document.append(orjson.dumps(built))
        return raw(document[0], content_type="application/json", headers={"Cache-Control": "no-cache"})

    @bp.get("/")
    @hidden
    async def page(request: ApiRequest) -> HTTPResponse:
        return html(PAGE, headers=PAGE_HEADERS)

    @bp.get(f"/assets/{SWAGGER_UI_VERSION}/<name:str>")
    @hidden
    async def asset(request: ApiRequest, name: str) -> HTTPResponse:
        return assets.response(name)

    return bp


def install(app: App) -> None:
    """Serve /docs, its assets and /docs/openapi.json (call after the other blueprints)."""
    app.blueprint(blueprint())
