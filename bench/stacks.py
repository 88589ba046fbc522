"""python -m bench.stacks FILE [N]: where a py-spy raw (collapsed) profile spent its samples:
the N functions with the most samples of their own (innermost frame), then the N with the most
samples anywhere on the stack (inclusive), each with its share of all samples."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def frames(stack: str) -> list[str]:
    # py-spy writes "thread;outer (file:line);...;inner (file:line) count"
    return [
        frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
        for frame in stack.split(";")
        if " (" in frame
    ]


def main(path: str, top: int = 25) -> None:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        names = frames(stack)
        if names:
            own[names[-1]] += samples
        for name in set(names):
            inclusive[name] += samples
    print(f"{total} samples")
    for title, counter in (("own", own), ("inclusive", inclusive)):
        print(f"-- {title}")
        for name, samples in counter.most_common(top):
            print(f"{100 * samples / max(total, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(n) for n in sys.argv[2:3]))
