"""One JSON line per log event, for the API and the workers.

Fields passed with `extra=` become keys of the line. The request id of the request (API) or
job (worker) being served is carried by a context variable into every line logged on its
behalf. Nothing here logs request bodies, query strings or headers, so tokens, codes and
secrets never reach the logs.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar

import orjson

# Set per request (backend/app.py) and per job (workers/runner.py); each runs in its own task.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            line["request_id"] = current
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(line, default=str).decode()
        except orjson.JSONEncodeError:
            # A str holding lone surrogates: Sanic decodes a head's bytes that are not UTF-8
            # (method, path) with surrogateescape, which orjson refuses. Such bytes show as \udcXX.
            return orjson.dumps({k: _printable(v) for k, v in line.items()}, default=str).decode()


def _printable(value: object) -> object:
    return value.encode("utf-8", "backslashreplace").decode() if isinstance(value, str) else value


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("sanic.root", "sanic.error", "sanic.access", "sanic.server", "sanic.websockets"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
