"""What a job handler raises to tell the runner how its failed attempt may be retried."""

from __future__ import annotations


class AttemptFailed(Exception):
    """A job attempt failed, and the handler knows whether another can succeed.

    `retryable` is False when no attempt can (a bad request, a bad key, an unknown model): the
    job ends at once. `retry_after` is the soonest another attempt makes sense (a provider's
    Retry-After), when known. Any other exception is retried with backoff (workers/runner.py).
    """

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
