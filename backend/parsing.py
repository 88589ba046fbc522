"""Small helpers at the HTTP edge: JSON bodies into pydantic models, client addresses."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from sanic import Request

from backend.errors import BadRequest

Model = TypeVar("Model", bound=BaseModel)


def parse_body(request: Request, model: type[Model]) -> Model:
    """The body as `model`, or a 400 that names the offending field."""
    try:
        data = orjson.loads(request.body or b"")
    except orjson.JSONDecodeError:
        raise BadRequest("Request body must be valid JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"Invalid field '{field}': {_describe(first)}") from None


def _describe(detail: dict) -> str:
    kind = detail["type"]
    if kind == "missing":
        return "this field is required."
    return detail["msg"].removeprefix("Value error, ") + "."


def client_address(request: Request) -> str:
    return request.remote_addr or request.ip or "unknown"
