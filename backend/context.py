"""The typed contexts of the Sanic application: what `app.ctx` and `request.ctx` hold.

Sanic 25 types both (`Sanic[Config, Ctx]`, `Request[Sanic, ReqCtx]`); every handler takes an
`ApiRequest`, so `request.app.ctx.store` and `request.ctx.user_id` are checked by mypy like any
other attribute. The classes stay SimpleNamespaces (Sanic and its plugins may add attributes);
the annotations say what this project puts there and when.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeAlias

from sanic import Request, Sanic
from sanic.config import Config

if TYPE_CHECKING:  # the annotations only: these modules import this one
    from backend.admission import Admission, QueueWatch
    from backend.assistant.relay import ReplyRelay
    from backend.auth.providers import Provider
    from backend.store.datastore import Store
    from config.settings import Settings


class AppContext(SimpleNamespace):
    settings: Settings  # from create_app()
    store: Store  # the rest from before_server_start (backend/app.py)
    provider: Provider
    relay: ReplyRelay
    queue_watch: QueueWatch
    metrics_server: asyncio.Server | None  # METRICS_PORT (backend/ops/metrics_server.py)


class RequestContext(SimpleNamespace):
    request_id: str  # every request (backend/app.py)
    started: float
    token: str  # @authenticated routes (backend/auth/guard.py); user_id also with a stream ticket
    user: dict[str, str]
    user_id: int
    admission: Admission  # @admitted routes (backend/admission.py)
    span: Any  # with tracing on: the request's OpenTelemetry span (backend/ops/tracing.py)


App: TypeAlias = Sanic[Config, AppContext]


class ApiRequest(Request[App, RequestContext]):
    """Sanic's Request with this project's typed context (`create_app`'s request_class)."""

    @staticmethod
    def make_context() -> RequestContext:
        return RequestContext()
