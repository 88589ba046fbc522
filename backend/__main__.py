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
        stop_waiting_for_acks_on_shutdown()
        Sanic.serve(primary=app, app_loader=loader)


def stop_waiting_for_acks_on_shutdown() -> None:
    """Sanic 25.12's manager waits for every worker's start-up acknowledgement before it acts on
    a signal: a SIGTERM while workers still start (a rollout cut short) stops them, then holds the
    pod 30 s until its deadlock guard kills everything. Shutting down counts as acknowledged, so
    the manager goes on to the monitor loop, which ends on the shutdown message."""
    from sanic.worker.manager import WorkerManager

    acked = WorkerManager._all_workers_ack

    def acked_or_shutting_down(self: WorkerManager) -> bool:
        return bool(self._shutting_down) or bool(acked(self))  # type: ignore[no-untyped-call]  # Sanic's own, untyped

    WorkerManager._all_workers_ack = acked_or_shutting_down  # type: ignore[method-assign]  # no hook for it


if __name__ == "__main__":
    main()
