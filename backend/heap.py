"""Full garbage collections without the objects of start-up.

Once its modules are imported a process tracks about 120,000 objects (Sanic, pydantic,
redis-py, the `openai` package); a full (generation 2) collection walks every one of them:
30-90 ms on this project's machine, during which the event loop serves nothing: live frames,
session checks and chunk writes all wait (it was most of B2's latency tail; README,
Performance). None of those objects is garbage, so once a process has started they are moved
out of the collector's reach with `gc.freeze()`; the objects made afterwards (requests,
streams, replies) are collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup() -> None:
    """Call once start-up is over (modules imported, clients built), before serving."""
    gc.collect()  # start-up's own garbage first: frozen, it would never be freed
    gc.freeze()


def collect_young_rarely() -> None:
    """For a process with thousands of live futures (a worker): the default thresholds (700
    allocations) scan the young generations many times a second; 100,000 makes that rare."""
    gc.set_threshold(100_000, 50, 50)
