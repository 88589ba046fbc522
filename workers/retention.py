"""The CHAT_RETENTION_DAYS sweep (backend/store/retention.py), run by one worker at a time."""

from __future__ import annotations

import asyncio
import logging

from backend.store import StoreUnavailable
from backend.store.datastore import Store
from backend.store.retention import SWEEP_SECONDS

log = logging.getLogger("workers.retention")

LEASE = "retention-sweep"


async def sweep_forever(store: Store, holder: str, every: float = SWEEP_SECONDS) -> None:
    """Every `every` seconds, the worker holding the lease sweeps; the others wait their turn. The
    lease lasts one period, so a sweep runs about once a period whichever worker lives."""
    while True:
        try:
            if await store.queue.hold_lease(LEASE, holder, every):
                deleted = await store.retention.sweep()
                log.info("retention sweep done", extra={"chats_deleted": deleted})
        except StoreUnavailable as error:
            log.warning("retention sweep failed, next period retries", extra={"error": str(error)})
        await asyncio.sleep(every)
