"""The one backoff (backend/backoff.py) and the job runner's retry delays (workers/runner.py)."""

from __future__ import annotations

import random
from typing import cast

import pytest

from backend.backoff import Backoff, equal_jitter
from backend.store.queue import JobQueue
from config.settings import Settings
from workers.errors import AttemptFailed
from workers.llm.base import LLMError
from workers.runner import Runner

DRAWS = 300


def test_equal_jitter_doubles_within_half_and_full() -> None:
    random.seed(7)
    for failures in range(1, 7):
        nominal = 0.1 * 2 ** (failures - 1)
        draws = [equal_jitter(0.1, failures) for _ in range(DRAWS)]
        assert all(nominal / 2 <= d <= nominal for d in draws)
        assert max(draws) - min(draws) > nominal / 4  # jittered, not one value for every process


def test_backoff_caps_and_resets() -> None:
    backoff = Backoff(0.05, cap=1.0)
    waits = [backoff.next() for _ in range(10)]
    assert 0.025 <= waits[0] <= 0.05 and all(0.5 <= w <= 1.0 for w in waits[5:])  # 0.05 * 2**5 > 1: capped
    backoff.reset()
    assert backoff.next() <= 0.05


class Unbound:
    """The one thing Runner's constructor asks of its queue; retry_delay never reaches Redis."""

    def bind(self, consumer: str) -> None:
        self.consumer = consumer


def runner(base: float) -> Runner:
    settings = Settings(_env_file=None, JOB_RETRY_BASE_SECONDS=base)
    return Runner(cast(JobQueue, Unbound()), settings, {}, "unit")


def test_retry_delay_backs_off_from_the_base() -> None:
    jobs = runner(0.5)
    for attempt in (1, 2, 3, 4):
        nominal = 0.5 * 2 ** (attempt - 1)
        assert all(nominal / 2 <= jobs.retry_delay(attempt, None) <= nominal for _ in range(DRAWS))


def test_retry_delay_is_never_sooner_than_the_providers_retry_after() -> None:
    jobs = runner(0.5)
    assert jobs.retry_delay(1, 7.0) == 7.0
    assert 2.0 <= jobs.retry_delay(4, 0.1) <= 4.0  # a shorter Retry-After does not cut the backoff
    assert runner(0).retry_delay(3, None) == 0.0  # JOB_RETRY_BASE_SECONDS=0: at once (tests)


def test_the_llms_errors_are_attempt_failures_the_runner_reads() -> None:
    error = LLMError("bad key", retryable=False, retry_after=None, user_message="Check the key.")
    assert isinstance(error, AttemptFailed) and not error.retryable and error.user_message == "Check the key."
    assert LLMError("slow down", retry_after=3.0).retry_after == 3.0 and LLMError("x").retryable


@pytest.mark.parametrize("base", [0.05, 1.0])
def test_backoff_never_exceeds_its_cap(base: float) -> None:
    backoff = Backoff(base, cap=2.0)
    assert max(backoff.next() for _ in range(40)) <= 2.0
