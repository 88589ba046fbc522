"""`python -m workers` with a small sampling profiler, for B7's split of the worker's CPU.

Every millisecond of the process's CPU (ITIMER_PROF) the interrupted Python stack is put in one
of four parts by its innermost frame that belongs to one:
- client: the LLM client (openai, httpx2, httpcore, h11, anyio, workers/llm/);
- writes: the Redis writes (redis-py, hiredis, backend/store/);
- own: the rest of the worker's own code (workers/, backend/);
- loop: the event loop itself, with no task of ours on the stack (uvloop, asyncio's machinery).
The client's samples are also counted by package (`client /httpcore/` ...), at the innermost
frame of the client. Time spent in C is counted at the Python frame that called it (signals are
handled between bytecodes: a long C call counts once, so C-heavy parts are undercounted).
SIGUSR2 writes the counts so far to BENCH_PROFILE_FILE as JSON.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from types import FrameType

CLIENT = ("/openai/", "/httpx2/", "/httpx/", "/httpcore/", "/h11/", "/anyio/", "/sniffio/", "/workers/llm/")
WRITES = ("/redis/", "/hiredis/", "/backend/store/")
OWN = ("/workers/", "/backend/")
BOUNDARY = ("/workers/__main__.py", "/asyncio/runners.py", "/asyncio/base_events.py", "/asyncio/events.py", "uvloop")

counts: Counter[str] = Counter()
parts: dict[str, str] = {}  # file name -> part ("" when it belongs to none: look further out)


def part_of(filename: str) -> str:
    found = parts.get(filename)
    if found is None:
        found = ""
        for name, fragments in (("loop", BOUNDARY), ("client", CLIENT), ("writes", WRITES), ("own", OWN)):
            matched = next((fragment for fragment in fragments if fragment in filename), None)
            if matched is not None:
                found = f"client {matched}" if name == "client" else name
                break
        parts[filename] = found
    return found


def sample(signum: int, frame: FrameType | None) -> None:
    while frame is not None:
        found = part_of(frame.f_code.co_filename)
        if found:
            if found.startswith("client"):
                counts["client"] += 1
            counts[found] += 1
            return
        frame = frame.f_back
    counts["loop"] += 1


def dump(signum: int, frame: FrameType | None) -> None:
    with open(os.environ["BENCH_PROFILE_FILE"], "w") as file:
        json.dump(dict(counts), file)


def main() -> None:
    signal.signal(signal.SIGPROF, sample)
    signal.signal(signal.SIGUSR2, dump)
    signal.setitimer(signal.ITIMER_PROF, 0.001, 0.001)
    from workers.__main__ import main as worker_main

    worker_main()


if __name__ == "__main__":
    main()
