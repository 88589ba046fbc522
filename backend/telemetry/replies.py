"""`ai_replies_total{outcome}`: the replies ended, counted once each by the process that ended them.

The objective on replies ending `done` (README, Observability) reads it. The API ends its users'
stops, replies whose job could not be queued and replies it reaps; the workers the rest. Both
count here (backend/store/replies.py's on_finish), one definition for one series name: a process
that loads both sides (the tests) must not register it twice.
"""

from __future__ import annotations

from prometheus_client import Counter

OUTCOMES = ("done", "error", "fail", "reap", "stopped")
REPLIES = Counter("ai_replies_total", "Replies ended, by how (done, error, fail, reap, stopped)", ["outcome"])
for _outcome in OUTCOMES:
    REPLIES.labels(_outcome)  # every series exists from the start: rate() sees the first reply


def count_reply(outcome: str) -> None:
    REPLIES.labels(outcome).inc()
