"""python -m backend: run the API (HOST, PORT, API_WORKERS)."""

from __future__ import annotations

import os
import tempfile


def main() -> None:
    from config.settings import get_settings

    settings = get_settings()  # exits with one clear line when the configuration is invalid
    if settings.API_WORKERS > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Must be set before prometheus_client is imported, in this process and the workers.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="api-metrics-")

    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from backend.app import create_app
    from backend.protocol import HeadDeadlineProtocol

    loader = AppLoader(factory=create_app)
    app = loader.load()
    app.prepare(
        host=settings.HOST,
        port=settings.PORT,
        workers=settings.API_WORKERS,
        single_process=settings.API_WORKERS == 1,
        access_log=False,
        motd=False,
        backlog=4096,  # many clients (re)connect at once after a pod restart
        protocol=HeadDeadlineProtocol,  # a total deadline for request heads (slow senders)
    )
    if settings.API_WORKERS == 1:
        Sanic.serve_single(primary=app)  # no manager process: signals reach the server directly
    else:
        Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
