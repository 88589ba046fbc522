"""The job runner's retry delay: backoff with jitter, an LLM server's Retry-After honoured up to 60 s."""

from __future__ import annotations

from types import SimpleNamespace

from workers.runner import RETRY_AFTER_MAX_SECONDS, Runner


def delay(attempt: int, retry_after: float | None, base: float = 0.5) -> float:
    return Runner.retry_delay(SimpleNamespace(retry_base=base), attempt, retry_after)  # type: ignore[arg-type]


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    assert RETRY_AFTER_MAX_SECONDS == 60
    assert 7 <= delay(1, 7.0) <= 7.0 + 0.75  # never sooner than the server asked
    for huge in (61.0, 3600.0, 86_400.0, 1e12):  # one answer cannot park a worker slot for a day
        assert delay(1, huge) == 60.0


def test_backoff_without_retry_after() -> None:
    samples = [delay(3, None) for _ in range(200)]  # 0.5 * 2**2 = 2 s, jitter 0.5x to 1.5x
    assert all(1.0 <= s <= 3.0 for s in samples) and max(samples) - min(samples) > 0.5
