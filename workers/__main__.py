"""python -m workers: one worker process (WORKER_CONCURRENCY jobs at once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket

from backend import heap
from backend.logs import configure_logging
from backend.store.datastore import Store
from backend.telemetry import tracing
from config.settings import Settings, get_settings
from workers import observe
from workers.health import LoopHeartbeat, serve_health
from workers.jobs.chat import ChatJob
from workers.jobs.questions import QuestionsJob
from workers.llm import make_llm
from workers.observe import ObservedLLM
from workers.retention import sweep_forever
from workers.runner import JobHandler, Runner

log = logging.getLogger("workers")


async def serve(settings: Settings, heartbeat: LoopHeartbeat | None = None) -> None:
    observe.start_tracing()  # only with OTEL_EXPORTER_OTLP_ENDPOINT set
    pulse = asyncio.create_task((heartbeat or LoopHeartbeat()).run())  # /healthz: the loop turns
    store = Store(settings, worker=True)
    store.replies.on_finish = observe.reply_ended
    llm = ObservedLLM(make_llm(settings), settings.LLM_MODEL if settings.LLM_PROVIDER != "fake" else "fake")
    chat = ChatJob(store, llm, settings.LLM_CONTEXT_TOKENS, settings.LLM_MAX_TOKENS, settings.JOB_LEASE_SECONDS)
    handlers: dict[str, JobHandler] = {"questions": QuestionsJob(store, llm, settings.QUESTION_COUNT), "chat": chat}
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    runner = Runner(store.queue, settings, handlers, consumer)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.request_stop)
    stops = asyncio.create_task(store.control.listen(chat.stop))  # a user's stop, from any API pod
    tasks = [stops, pulse]
    if settings.CHAT_RETENTION_DAYS > 0:
        tasks.append(asyncio.create_task(sweep_forever(store, consumer)))
    log.info(
        "worker started",
        extra={"consumer": consumer, "concurrency": settings.WORKER_CONCURRENCY, "llm": settings.LLM_PROVIDER},
    )
    heap.freeze_startup()
    try:
        await runner.run()
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await llm.aclose()
        await store.close()
        tracing.shutdown()  # the spans still buffered
        log.info("worker stopped", extra={"consumer": consumer})


def main() -> None:
    settings = get_settings()
    heap.collect_young_rarely()  # and start-up's objects frozen out of full collections in serve()
    configure_logging(settings.LOG_LEVEL)
    heartbeat = LoopHeartbeat()
    if settings.WORKER_METRICS_PORT:  # /metrics, and /healthz for the liveness probe
        serve_health(settings.HOST, settings.WORKER_METRICS_PORT, heartbeat)
    try:
        import uvloop

        uvloop.run(serve(settings, heartbeat))
    except ImportError:
        asyncio.run(serve(settings, heartbeat))


if __name__ == "__main__":
    main()
