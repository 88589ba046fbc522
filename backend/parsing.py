"""Small helpers at the HTTP edge: JSON bodies into pydantic models, client addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from backend.context import ApiRequest
from backend.errors import BadRequest

Model = TypeVar("Model", bound=BaseModel)


def parse_body(request: ApiRequest, model: type[Model]) -> Model:
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


def _describe(detail: Mapping[str, Any]) -> str:
    """One of pydantic's error details (its ErrorDetails)."""
    if detail["type"] == "missing":
        return "this field is required."
    return str(detail["msg"]).removeprefix("Value error, ") + "."


def client_address(request: ApiRequest) -> str:
    """The client's IP address for per-address limits.

    `remote_addr` is what Sanic reads from the proxy headers through PROXIES_COUNT / REAL_IP_HEADER
    (FORWARDED_SECRET for `Forwarded`) and nothing else: with none configured it is empty and the
    TCP peer counts, so a client cannot pick its own bucket with a header. A value that is not an
    IP address (a misconfigured proxy) counts as the proxy's own address, so keys stay bounded.
    """
    forwarded = request.remote_addr
    if forwarded:
        try:
            return ipaddress.ip_address(forwarded.strip("[]")).compressed
        except ValueError:
            pass
    return request.ip or "unknown"


def address_bucket(address: str) -> str:
    """The per-address limits' bucket of a client address: an IPv6 client is its /64 (one
    subscriber's LAN: changing the low 64 bits buys no new bucket), the plain IPv4 of an
    IPv4-mapped address, an IPv4 address itself. Anything else (never an address) as is."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.compressed
        return ipaddress.IPv6Network((ip, 64), strict=False).compressed
    return ip.compressed
