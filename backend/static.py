"""Fixed sets of files the service serves itself (the playground, the docs page's assets): read
once at start-up, so a path parameter can name nothing else."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from sanic.response import HTTPResponse, raw

from backend.errors import NotFound


def content_type(name: str) -> str:
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") or kind.endswith("javascript") else kind


class StaticFiles:
    def __init__(self, directory: Path, names: list[str], cache_control: str) -> None:
        self.files = {name: ((directory / name).read_bytes(), content_type(name)) for name in names}
        self.cache_control = cache_control

    def add(self, name: str, body: bytes) -> None:
        self.files[name] = (body, content_type(name))

    def response(self, name: str) -> HTTPResponse:
        found = self.files.get(name)
        if found is None:
            raise NotFound("Not found.")
        body, kind = found
        return raw(body, content_type=kind, headers={"Cache-Control": self.cache_control})
