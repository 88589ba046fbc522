"""/metrics' own families (backend/ops/metrics.py) go through prometheus_client, which escapes
label values; this pod's shedding view reads back as the numbers it holds."""

from __future__ import annotations

import asyncio
from typing import cast

from prometheus_client.core import GaugeMetricFamily

from backend.admission import QueueWatch
from backend.ops.metrics import render, shedding_families
from backend.store.queue import Backlog, Capacity, JobQueue
from tests.support.prom import sample


def test_label_values_are_escaped() -> None:
    family = GaugeMetricFamily("ai_test", "A gauge", labels=["type"])
    hostile = 'a"b\\c\nd'
    family.add_metric([hostile], 1)
    text = render([family]).decode()
    assert 'ai_test{type="a\\"b\\\\c\\nd"} 1.0\n' in text
    assert sample(text, "ai_test", type=hostile) == 1.0  # and it reads back as it was


async def test_shedding_families() -> None:
    watch = QueueWatch(cast(JobQueue, None), 10.0)
    watch.backlog = Backlog(12.5, {"chat": 1}, 3, Capacity(8, 1.0, 4.25))
    watch.refreshed_at = asyncio.get_running_loop().time()
    text = render(shedding_families(watch)).decode()
    assert "# TYPE ai_api_shedding gauge" in text
    assert sample(text, "ai_api_shedding") == 1  # the oldest job waited 12.5 s > 10 s
    assert sample(text, "ai_api_queue_wait_seconds") == 12.5
    assert sample(text, "ai_api_worker_slots") == 8 and sample(text, "ai_api_worker_slots_free") == 4
    assert sample(text, "ai_api_worker_job_seconds") == 4.25
    watch.backlog = Backlog(0.0, {}, 0, Capacity(0, None, None))
    text = render(shedding_families(watch)).decode()
    assert sample(text, "ai_api_shedding") == 0 and sample(text, "ai_api_worker_job_seconds") is None
