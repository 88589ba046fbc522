"""backend/heap.py: start-up's objects leave the collector's passes; its garbage goes first."""

from __future__ import annotations

import gc
import weakref

from backend import heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_startup_objects_are_frozen_and_startup_garbage_is_freed_first() -> None:
    kept = [Node() for _ in range(100)]
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    gc.unfreeze()
    try:
        heap.freeze_startup()
        assert gone() is None  # collected before the freeze, not kept forever
        assert gc.get_freeze_count() >= len(kept)
        frozen = gc.get_freeze_count()
        gc.collect()
        assert gc.get_freeze_count() == frozen  # full collections leave them alone
    finally:
        gc.unfreeze()
